"""App configuration of the airline service."""

from __future__ import annotations

from django.apps import AppConfig


class AirlineConfig(AppConfig):
    name = "participants.airline"
    label = "airline"
    verbose_name = "Airline"
