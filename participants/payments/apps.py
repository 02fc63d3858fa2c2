"""App configuration of the payments service."""

from __future__ import annotations

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "participants.payments"
    label = "payments"
    verbose_name = "Payments"
