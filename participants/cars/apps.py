"""App configuration of the car rental service."""

from __future__ import annotations

from django.apps import AppConfig


class CarsConfig(AppConfig):
    name = "participants.cars"
    label = "cars"
    verbose_name = "Car rental"
