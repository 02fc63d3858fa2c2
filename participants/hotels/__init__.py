"""The hotels service: books rooms for travellers and cancels those bookings."""
