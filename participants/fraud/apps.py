"""App configuration of the fraud service."""

from __future__ import annotations

from django.apps import AppConfig


class FraudConfig(AppConfig):
    name = "participants.fraud"
    label = "fraud"
    verbose_name = "Fraud screening"
