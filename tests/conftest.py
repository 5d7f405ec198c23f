"""Shared fixtures. Service-backed fixtures use the real servers started by ``services/svc``;
with ``LINEAGE_REQUIRE_SERVICES=1`` (set by .ci/run) a missing server fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.identifiers import Pseudonymizer
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.purposes import PurposeTaxonomy
from runtime.wiring import default_policy, default_taxonomy

TEST_KEY = b"test-key-0123456789abcdef-not-secret"


def without_lineage_settings() -> dict[str, str]:
    """This process's environment with no ``LINEAGE_*`` variable: a subprocess given it runs
    in embedded mode with defaults, whatever the shell exported (services' settings included)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}


def require_service(variable: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    if os.environ.get("LINEAGE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{variable} is not set but LINEAGE_REQUIRE_SERVICES=1")
    pytest.skip(f"{variable} not set: start services with services/svc start")


@pytest.fixture(scope="session")
def taxonomy() -> PurposeTaxonomy:
    return default_taxonomy()


@pytest.fixture(scope="session")
def policy(taxonomy: PurposeTaxonomy) -> Policy:
    return default_policy(taxonomy)


@pytest.fixture(scope="session")
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(TEST_KEY)


@pytest.fixture(scope="session")
def parser(pseudonymizer: Pseudonymizer) -> InboundParser:
    return InboundParser(pseudonymizer)


def neo4j_store() -> GraphStore:
    from graph.neo4j_store import Neo4jStore

    uri = require_service("LINEAGE_NEO4J_URI")
    password = require_service("LINEAGE_NEO4J_PASSWORD")
    user = os.environ.get("LINEAGE_NEO4J_USER", "neo4j")
    return Neo4jStore(uri, user, password)


@pytest.fixture(params=["sqlite", "neo4j"])
def store(request: pytest.FixtureRequest) -> Iterator[GraphStore]:
    """Every GraphStore implementation, each starting empty: the contract suite runs on all."""
    if request.param == "neo4j":
        request.applymarker(pytest.mark.neo4j)
        backend = neo4j_store()
    else:
        backend = SqliteStore(":memory:")
    backend.clear()
    yield backend
    backend.close()
