"""Tests of the example participant services."""
