"""The airline service: holds seats on flights for travellers and releases them."""
