"""The loyalty service: awards customers points for their completed orders."""
