#!/usr/bin/env bash
# Lint, type-check and run the whole suite, integration tests included, against the real Kafka
# and Neo4j servers that services/svc installs (Maven Central) and starts. Stops them after.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

started=0
cleanup() { if [ "$started" = 1 ]; then bash services/svc stop || true; fi; }
trap cleanup EXIT

if ! bash services/svc status >/dev/null 2>&1; then
    started=1
    bash services/svc start
fi
eval "$(bash services/svc env)"
export LINEAGE_REQUIRE_SERVICES=1

echo "== ruff"; "$VENV/bin/ruff" check .
echo "== mypy"; "$VENV/bin/mypy"
echo "== pytest"; "$VENV/bin/python" -m pytest -q --timeout 600 "$@"
if [ "$#" = 0 ]; then
    echo "== bench smoke (BENCHMARKS.md: the harnesses still run; figures come from make bench)"
    make --no-print-directory bench-smoke VENV="$VENV" >/dev/null
fi
