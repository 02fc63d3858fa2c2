"""The shipping service: schedules shipments to the countries it delivers to."""
