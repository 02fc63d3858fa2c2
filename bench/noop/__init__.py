"""No-op sagas, bare Celery tasks and SQL counters that `python -m bench` measures (not for production)."""
