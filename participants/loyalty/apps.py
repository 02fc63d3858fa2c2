"""App configuration of the loyalty service."""

from __future__ import annotations

from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "participants.loyalty"
    label = "loyalty"
    verbose_name = "Loyalty"
