"""The car rental service: rents cars of a class to travellers and takes them back."""
