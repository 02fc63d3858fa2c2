# `make demo` runs the whole system locally; `make test` runs the suite against real Redis,
# PostgreSQL and Celery worker processes. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed

.PHONY: install machine demo test test-session test-matrix test-rabbitmq test-rabbitmq-suites rabbitmq-answers test-portable test-faults-eager test-fast test-faults chaos chaos-infra test-chaos-infra bench-rebuild bench-purge lint typecheck worker web clean

# The runtime pins (requirements.txt, all the Dockerfile installs) and the test and tooling ones on top.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m sagaproject.demo

# Installs (as root, where missing) and starts what the suite needs: Chromium, Redis, PostgreSQL, RabbitMQ.
machine:
	bash scripts/setup-machine.sh

# The suite's tests mostly wait (a worker starting, a countdown, a poll), so more pytest-xdist workers than cores pay;
# each has its own test database, queue and Redis keys, and the tests that kill workers or restart servers keep a
# lane of their own (tests/conftest.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 4
PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# One session with every test, the service tests on both write paths (tests/sagas/conftest.py) and the faults both
# chained and eager (tests/faults/conftest.py), and beside it the RabbitMQ passes (each one's output once it ends).
test: install machine
	$(MAKE) --no-print-directory -j2 --output-sync=target test-session test-rabbitmq TEST_WORKERS_RABBITMQ=2

test-session: install
	$(BIN)/python -m pytest $(PARALLEL)

# The service tests on the portable write path alone (the ORM's statements instead of PostgreSQL's one statement;
# part of `make test`).
test-portable: install
	$(BIN)/python -m pytest $(PARALLEL) tests/sagas -k portable

# The fault-injection suite with every sequence eager alone (sagas/eager.py; part of `make test`).
test-faults-eager: install
	$(BIN)/python -m pytest $(PARALLEL) -m faults -k eager

# RabbitMQ as the broker (Redis keeps the breakers and leases: docs/rabbitmq.md), part of `make test`: the
# circuit-breaker scenarios, the worker-kill faults (a pool process and the whole worker SIGKILLed mid-step, a kill
# between commit and ack, a poison message), then quorum queues (their delivery limit; countdowns in the broker).
RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672//
RABBITMQ_KILL_FAULTS := sigkill or kill_after_the_step or poison_message
TEST_WORKERS_RABBITMQ ?= $(TEST_WORKERS)
test-rabbitmq: install rabbitmq-answers
	TEST_BROKER_URL='$(RABBITMQ_URL)' $(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS_RABBITMQ)),,-n \
		$(TEST_WORKERS_RABBITMQ) --dist loadgroup) tests/integration/test_breakers.py \
		tests/faults/test_faults.py -k 'not test_faults.py or $(RABBITMQ_KILL_FAULTS)'
	CELERY_QUEUE_TYPE=quorum TEST_BROKER_URL='$(RABBITMQ_URL)' $(BIN)/python -m pytest \
		tests/integration/test_rabbitmq_quorum.py tests/integration/test_retries.py

# The whole integration and fault suites again on RabbitMQ (about 12 minutes; CI runs it after `make test`).
test-rabbitmq-suites: install rabbitmq-answers
	TEST_BROKER_URL='$(RABBITMQ_URL)' $(BIN)/python -m pytest $(PARALLEL) tests/integration tests/faults

rabbitmq-answers:
	@$(BIN)/python -c 'import kombu, sys; kombu.Connection(sys.argv[1], connect_timeout=5).ensure_connection(max_retries=1)' \
		'$(RABBITMQ_URL)' 2>/dev/null || { echo "RabbitMQ does not answer at $(RABBITMQ_URL): install and start it \
	(Debian: apt-get install rabbitmq-server; service rabbitmq-server start), or set RABBITMQ_URL."; exit 1; }

# The suite on the lowest and on the newest versions of Django, Celery and the framework's other dependencies
# that pyproject.toml allows (noxfile.py; each in its own .nox/ environment): about 25 minutes. NOX_ARGS, e.g.
# `-s lowest -- -m "not browser"`, picks a session and passes pytest options.
test-matrix: install machine
	$(BIN)/nox -f noxfile.py $(NOX_ARGS)

# The inner loop: the tests that start no worker processes (a few minutes; `make test` is the whole suite).
test-fast: install
	$(BIN)/python -m pytest $(PARALLEL) -m "not worker and not faults"

# The fault-injection suite alone (part of `make test`).
test-faults: install
	$(BIN)/python -m pytest $(PARALLEL) -m faults

# The full chaos soak: 1,000 runs for 5 minutes while workers are killed (`make test` runs a short one).
chaos: install
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

# The infrastructure soak: PlaceOrder and BookTrip, 10,000 runs over 30 minutes, while a seeded scheduler kills
# workers, restarts PostgreSQL and Redis (servers of its own), terminates backends and slows, stalls or cuts the
# workers' connections; then the history checker (bench/README.md). CHAOS_ARGS="--seed N" replays a run.
chaos-infra: install
	$(BIN)/python -m bench.chaos --infra $(CHAOS_ARGS)

# Its short version alone (part of `make test`: about 4 minutes), with the regression tests of what it found.
test-chaos-infra: install
	$(BIN)/python -m pytest tests/faults/test_chaos_infra.py tests/faults/test_receivers.py \
		tests/faults/test_unrecorded_effects.py

# Rebuild of a 1,000-event run from its latest snapshot versus a fold of its whole log.
bench-rebuild: install
	$(BIN)/python -m bench.rebuild $(REBUILD_ARGS)

# Purge of 100,000 finished runs while a saga runs, timing the saga's writes: see bench/README.md.
bench-purge: install
	$(BIN)/python -m bench.purge $(PURGE_ARGS)

# Throughput and latency of our sagas (default and eager mode) against bare Celery chains and DBOS Transact: see
# bench/README.md. It first installs the peers (bench/requirements-peers.txt: DBOS) into the venv; BENCH_PEERS=0
# neither installs nor measures them.
.PHONY: bench bench-peers bench-soak
BENCH_PEERS ?= 1
bench: install
ifneq ($(BENCH_PEERS),0)
	$(BIN)/python -m pip install --quiet -r bench/requirements-peers.txt
	$(BIN)/python -m bench $(BENCH_ARGS)
else
	$(BIN)/python -m bench --no-dbos $(BENCH_ARGS)
endif

# Worker memory over 10,000 sagas (100 warm-up + 3 rounds of 3,300), next to the bare chain: about 8 minutes.
bench-soak: install
	$(BIN)/python -m bench --only saga3,chain3 --warmup 100 --runs 3300 --rounds 3 --solo 0 $(BENCH_ARGS)

# What `make bench` does by default (it used to be the only target that installed the peers).
bench-peers: bench

# mypy's Django plugin loads the settings: the development ones, as the other development targets do.
lint: install
	$(BIN)/ruff check .
	DJANGO_DEBUG=1 $(BIN)/mypy sagas participants

typecheck: install
	DJANGO_DEBUG=1 $(BIN)/mypy sagas participants

# Development processes: debug settings (a fixed key, DEBUG on), stated here because the default is production.
worker: install
	DJANGO_DEBUG=1 $(BIN)/celery -A sagaproject worker -P prefork -c 2 -l INFO

web: install
	DJANGO_DEBUG=1 $(BIN)/python manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) .nox .pytest_cache .ruff_cache .mypy_cache staticfiles .demo .chaos
