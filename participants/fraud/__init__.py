"""The fraud service: screens a traveller against the blocked list before anything is booked."""
