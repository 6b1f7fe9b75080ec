# auditlog: `make run` serves on SQLite at http://127.0.0.1:8000, `make test` runs the suite on
# SQLite and then on PostgreSQL. Everything installs into .venv from requirements.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
NAME ?= first-producer
SCOPES ?= write,read
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/auditlog
PYTEST_ARGS ?=

.PHONY: venv run serve migrate key test test-sqlite test-postgres lint format clean bench bench-read bench-scale bench-client loadtest client-schema

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	# The producer client as producers install it (its console command auditlog-client); the
	# tests import it from its source (pyproject.toml's pythonpath).
	$(BIN)/pip install --quiet --disable-pip-version-check ./clients/python
	touch $@

# A local, production-like configuration: DEBUG off, a fresh random secret key, readable by
# its owner only.
.env:
	@umask 077 && $(PYTHON) -c 'import secrets; print("DJANGO_SECRET_KEY=" + secrets.token_urlsafe(50))' > $@
	@echo "Wrote .env with a new DJANGO_SECRET_KEY (DEBUG off, SQLite)."

migrate: venv .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0

run: migrate
	$(BIN)/gunicorn config.wsgi --config config/gunicorn.conf.py --bind $(HOST):$(PORT)

# nginx (deploy/nginx.conf) in front of gunicorn, as production runs it: http://127.0.0.1:8080
# (AUDITLOG_LISTEN=host:port to change). Needs Debian's nginx.
serve: migrate
	$(PY) deploy/serve.py

# Prints a token on its last line: `make key NAME=billing SCOPES=write`.
key: migrate
	$(PY) manage.py auditlog_create_key --name "$(NAME)" --scopes "$(SCOPES)"

test: test-sqlite test-postgres

test-sqlite: venv .env
	DATABASE_URL=sqlite:///db.sqlite3 $(BIN)/pytest $(PYTEST_ARGS)

# Skipped with a message when PostgreSQL is unreachable, except under CI=true. Runs with two
# roles, as production does (tests/pg_roles.py): the owner migrates, the service runs as the
# runtime role.
test-postgres: venv .env
	@if $(PY) tests/pg_available.py "$(TEST_DATABASE_URL)"; then \
		urls="$$($(PY) tests/pg_roles.py "$(TEST_DATABASE_URL)")" || exit 1; \
		set -- $$urls; \
		echo "== PostgreSQL: $$1 (maintenance role), $$2 (runtime role)"; \
		AUDITLOG_DATABASE_ROLE=maintenance DATABASE_MAINTENANCE_URL="$$1" DATABASE_URL="$$2" \
			$(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$$CI" = "true" ]; then \
		echo "FAILED: PostgreSQL is required when CI=true (TEST_DATABASE_URL=$(TEST_DATABASE_URL))." >&2; exit 1; \
	else \
		echo "SKIPPED the PostgreSQL half of the suite: start PostgreSQL or set TEST_DATABASE_URL." >&2; \
	fi

# The ingest benchmark: the service vs an empty Django endpoint and the raw insert limit.
bench: venv
	$(PY) loadtest/bench.py

# Locust producers against gunicorn (SQLite, or DATABASE_URL), then stored == acknowledged.
loadtest: venv
	$(PY) loadtest/run_loadtest.py

# Admin and API page times over 1,000,000 events on SQLite and PostgreSQL (loads them once).
bench-read: venv
	$(PY) loadtest/bench_read.py

# PostgreSQL at 10,000,000 events in monthly partitions: pages, ingest with partitions against
# without, a partition dropped against batched deletes (minutes; the events are kept for reruns).
bench-scale: venv
	$(PY) loadtest/bench_scale.py

bench-client: venv
	$(PY) loadtest/bench_client.py

# Lint, and the models and the migrations agree (a model change without its migration fails).
lint: venv .env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DATABASE_URL=sqlite:///db.sqlite3 $(PY) manage.py makemigrations --check --dry-run

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .test-db.sqlite3*

# The producer client's copy of the event rules, from the service's OpenAPI document (a test
# fails while they differ).
client-schema: venv
	DJANGO_SETTINGS_MODULE=config.settings DATABASE_URL=sqlite:///db.sqlite3 DJANGO_SECRET_KEY=schema \
		$(PY) -m tests.client.client_schema
