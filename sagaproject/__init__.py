"""Django project that hosts the saga framework and its example participant services."""

from sagaproject.celery import app as celery_app

__all__ = ["celery_app"]
