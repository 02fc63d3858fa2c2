"""The notifications service: sends (here: records) messages to customers."""
