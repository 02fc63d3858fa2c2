"""App configuration of the hotels service."""

from __future__ import annotations

from django.apps import AppConfig


class HotelsConfig(AppConfig):
    name = "participants.hotels"
    label = "hotels"
    verbose_name = "Hotels"
