"""The REST API: start runs by saga name, read runs with their steps and events, retry, cancel and resolve them."""
