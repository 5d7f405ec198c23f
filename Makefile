# Two entry points on a fresh machine: `make demo` (the main job, embedded mode) and
# `make test` (lint, types, and the whole suite against real Kafka and Neo4j).
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install demo test bench services-start services-stop
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/lineage demo

test: install
	bash scripts/test.sh

bench: install
	$(VENV)/bin/python -m bench.propagation --users 20000 --users 200000

services-start:
	bash services/svc start

services-stop:
	bash services/svc stop
