# Two entry points on a fresh machine: `make demo` (the main job, embedded mode) and
# `make test` (lint, types, and the whole suite against real Kafka and Neo4j).
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install chromium docker-compose demo test bench bench-smoke services-start services-stop
install: $(VENV)/.installed

# Headless Chromium (Debian's `chromium`) for the HTML report checks in tests/integration:
# installed with apt-get when missing and running as root; a no-op once present. Only the
# tests need it: `make demo` stays quick on a fresh machine.
chromium:
	bash scripts/install-chromium.sh

demo: install
	$(VENV)/bin/lineage demo

# Debian's docker-compose, for the test that validates docker-compose.yml (no daemon needed).
docker-compose:
	bash scripts/install-docker-compose.sh

test: install chromium docker-compose
	bash scripts/test.sh

# The embedded harnesses run without the services' variables (they would switch to Kafka mode).
EMBEDDED = env -u LINEAGE_KAFKA_BOOTSTRAP -u LINEAGE_NEO4J_URI -u LINEAGE_STORE -u LINEAGE_LOG

# The figures in BENCHMARKS.md (each beside its baseline, in the same run). The 850k-user
# embedded comparison takes about 25 minutes on 2 cores; the Neo4j rows need the services (and
# empty their Neo4j database). The worker's comparison with the old faust worker needs a venv
# with that commit's dependencies: see BENCHMARKS.md.
bench: install
	$(EMBEDDED) $(VENV)/bin/python -m bench.embedded_scale --users 850000 --old 0386860
	$(EMBEDDED) $(VENV)/bin/python -m bench.propagation --users 20000 --users 200000
	$(EMBEDDED) $(VENV)/bin/python -m bench.as_of --users 20000 --users 100000
	$(VENV)/bin/python -m bench.neo4j_tracker --users 20000 --batch 500 --batch 8000
	$(VENV)/bin/python -m bench.neo4j_mirror --users 20000 --batch 8000
	$(VENV)/bin/python -m bench.neo4j_worker --users 20000 --workers 1 --workers 2
	$(VENV)/bin/python -m bench.neo4j_rebuild --users 20000
	$(VENV)/bin/python -m bench.neo4j_rebuild --users 100000 --bulk-only
	$(VENV)/bin/python -m bench.alert_latency --probes 200
	$(VENV)/bin/python -m bench.scale_out --users 20000 --old 8140640
	$(VENV)/bin/python -m bench.scale_out --recovery 164000
	$(VENV)/bin/python -m bench.processor_latency --probes 200
	$(VENV)/bin/python -m bench.incident_latency --probes 200 --users 20000
	$(VENV)/bin/python -m bench.incident_latency --probes 200 --kafka-only --topology worker \
		--topology partitioned --burst-users 2000
	$(EMBEDDED) $(VENV)/bin/python -m bench.serve_ingest --events 3000 --clients 50
	$(EMBEDDED) $(VENV)/bin/python -m bench.incident_messages --users 2000 --users 20000

# A smoke size of every harness, run by CI so that they keep working (no figures kept).
bench-smoke: install
	$(EMBEDDED) $(VENV)/bin/python -m bench.embedded_scale --users 2000
	$(EMBEDDED) $(VENV)/bin/python -m bench.propagation --users 2000
	$(EMBEDDED) $(VENV)/bin/python -m bench.scale --users 2000
	$(EMBEDDED) $(VENV)/bin/python -m bench.as_of --users 2000 --repeat 1
	$(VENV)/bin/python -m bench.neo4j_tracker --users 200 --batch 100
	$(VENV)/bin/python -m bench.neo4j_mirror --users 200 --batch 100
	$(VENV)/bin/python -m bench.neo4j_worker --users 200 --workers 1 --workers 2
	$(VENV)/bin/python -m bench.neo4j_rebuild --users 200 --batch 100
	$(VENV)/bin/python -m bench.alert_latency --probes 5 --warmup 2 --gap 0.05
	$(VENV)/bin/python -m bench.scale_out --users 300
	$(VENV)/bin/python -m bench.processor_latency --probes 5 --warmup 2 --gap 0.05
	$(VENV)/bin/python -m bench.incident_latency --probes 5 --warmup 2 --gap 0.05 --users 200 --topology worker --topology partitioned --burst-users 200
	$(EMBEDDED) $(VENV)/bin/python -m bench.serve_ingest --events 200 --clients 10
	$(EMBEDDED) $(VENV)/bin/python -m bench.incident_messages --users 500

services-start:
	bash services/svc start

services-stop:
	bash services/svc stop
