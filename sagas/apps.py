"""App config: registers saga tasks, autodiscovers ``sagas.py`` modules and syncs definitions on migrate."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import tasks  # noqa: F401  registers saga tasks as saga classes appear

        # Web and worker processes both run this, so both know every saga of every installed app.
        autodiscover_modules("sagas")
        post_migrate.connect(sync_definitions, sender=self)


def sync_definitions(*, using: str = "default", **kwargs: Any) -> None:
    """Store (or check) the definition row of every registered saga after migrations."""
    from sagas import services
    from sagas.registry import all_sagas

    for saga in all_sagas():
        services.definition_sync(saga=saga)
