# `make demo` runs the whole system locally; `make test` runs the suite against real Redis,
# PostgreSQL and Celery worker processes. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed

.PHONY: install demo test test-fast lint typecheck worker web clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m sagaproject.demo

test: install
	$(BIN)/python -m pytest

# Unit tests only: no worker processes.
test-fast: install
	$(BIN)/python -m pytest -m "not worker"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy sagas participants

typecheck: install
	$(BIN)/mypy sagas participants

worker: install
	$(BIN)/celery -A sagaproject worker -P prefork -c 2 -l INFO

web: install
	$(BIN)/python manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache staticfiles .demo
