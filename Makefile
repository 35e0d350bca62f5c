# Two entry points (see README): `make run` and `make test`. Only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export DEBUG ?= 1

.PHONY: run test setup demo lint schema clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo

run: demo
	$(BIN)/python manage.py demo_tokens --url http://$(HOST):$(PORT)/
	@# The notice worker runs beside the server and stops with it (Ctrl-C stops both).
	NOTIFY_PORTAL_URL=http://$(HOST):$(PORT)/portal/ $(BIN)/python manage.py notify_worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: setup
	DEBUG=0 $(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

schema: setup
	$(BIN)/python manage.py export_schema graph.schema:schema --path schema.graphql

clean:
	rm -rf $(VENV) var

# Benchmarks (not tests): PostgreSQL + Redis on 127.0.0.1 (database mailbox_bench, Redis db 1); see README "Performance".
$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@

bench: $(VENV)/.bench-installed
	DEBUG=0 $(BIN)/python -m bench.run $(BENCH_ARGS)
