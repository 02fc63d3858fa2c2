"""App configuration of the inventory service."""

from __future__ import annotations

from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "participants.inventory"
    label = "inventory"
    verbose_name = "Inventory"
