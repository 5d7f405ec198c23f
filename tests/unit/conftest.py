"""Unit tests run the embedded mode only: no LINEAGE_* setting from the shell leaks in.

The one exception is the shared ``store`` fixture's Neo4j parameter (the contract and property
suites run on every store): tests that use it keep the server's connection settings.
"""

from __future__ import annotations

import os

import pytest

#: What the ``store`` fixture needs to reach the real Neo4j started by services/svc.
_NEO4J_ENV = {
    k: v
    for k, v in os.environ.items()
    if k.startswith("LINEAGE_NEO4J_") or k == "LINEAGE_REQUIRE_SERVICES"
}


@pytest.fixture(autouse=True)
def embedded_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("LINEAGE_")]:
        monkeypatch.delenv(name)
    if "store" in request.fixturenames:
        for name, value in _NEO4J_ENV.items():
            monkeypatch.setenv(name, value)
