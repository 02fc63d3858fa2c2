"""Settings of the throughput benchmark's processes: the project's own (Celery settings included), with the
bench's no-op app instead of the example participant apps.

The example apps are left out because their receivers subscribe to every saga's end (participants/analytics
listens to ``*.completed``), which would add an outbox row and a receiver task to every measured run: the
cost of those subscribers, not of the framework. A project without such receivers pays neither.
"""

from sagaproject.settings import *  # noqa: F403
from sagaproject.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if not app.startswith("participants.")] + ["bench.noop"]
