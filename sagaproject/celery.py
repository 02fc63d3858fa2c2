"""The Celery application: configured from Django settings under the ``CELERY_`` namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sagaproject.settings")

app = Celery("sagaproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Saga step tasks are registered when saga classes are defined, which happens when the
# sagas app autodiscovers ``sagas.py`` modules during django.setup(); this covers plain tasks.
app.autodiscover_tasks()
