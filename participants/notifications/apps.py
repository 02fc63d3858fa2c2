"""App configuration of the notifications service."""

from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "participants.notifications"
    label = "notifications"
    verbose_name = "Notifications"
