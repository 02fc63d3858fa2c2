"""App configuration of the orders service."""

from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "participants.orders"
    label = "orders"
    verbose_name = "Orders"
