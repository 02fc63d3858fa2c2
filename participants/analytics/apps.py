"""App configuration of the analytics service."""

from __future__ import annotations

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "participants.analytics"
    label = "analytics"
    verbose_name = "Analytics"
