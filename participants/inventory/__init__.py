"""The inventory service: holds stock and reserves it for orders."""
