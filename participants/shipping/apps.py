"""App configuration of the shipping service."""

from __future__ import annotations

from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "participants.shipping"
    label = "shipping"
    verbose_name = "Shipping"
