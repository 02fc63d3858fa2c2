# One image for every process of the saga project: web (gunicorn), Celery worker, beat, Flower and the
# one-shot migrate job. docker-compose.yml chooses the command; the default is the web server.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DJANGO_SETTINGS_MODULE=sagaproject.settings

# The processes run as this user. It gets a home directory because gunicorn keeps its control socket
# in ~/.gunicorn; the code and collected static files stay owned by root, so the app cannot rewrite them.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first, so editing the code does not reinstall them: the runtime pins only (the test and
# tooling ones are in requirements-dev.txt). Every pin in requirements.txt ships a manylinux wheel for
# CPython 3.11 on x86_64 and arm64, so the slim image needs no compiler.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# collectstatic runs with the production settings (DEBUG off), which refuse to start without a key.
# This key exists only for this build step: it is not in the image's environment, and every container
# gets its real DJANGO_SECRET_KEY at run time. chmod: a checkout made under umask 077 would otherwise be
# unreadable by the app user.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret \
        python manage.py collectstatic --noinput \
    && python -m compileall -q sagaproject sagas participants \
    && chmod -R a+rX /app

# Numeric, so a runtime that enforces runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000 5555

# /dev/shm keeps gunicorn's worker heartbeat files off the container's overlay filesystem.
CMD ["gunicorn", "sagaproject.wsgi", "--bind", "0.0.0.0:8000", "--worker-tmp-dir", "/dev/shm", "--access-logfile", "-"]
