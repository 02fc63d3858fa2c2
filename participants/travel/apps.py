"""App config of the travel orchestrator."""

from django.apps import AppConfig


class TravelConfig(AppConfig):
    name = "participants.travel"
    label = "travel"
    verbose_name = "Travel"
