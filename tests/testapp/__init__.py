"""A Django app that exists only for the test suite: sagas with controllable failures."""
