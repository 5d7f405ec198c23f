"""The tree's promises: a pure core, shipped schemas that match the models."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from lineage.alerts import Alert
from lineage.events import event_json_schema

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "kafka",
    "aiokafka",
    "faust",
    "mode",
    "neo4j",
    "graph",
    "streams",
    "cli",
    "runtime",
    "sqlite3",
    "socket",
    "requests",
    "subprocess",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_driver_or_adapter() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN)
        for path in (ROOT / "lineage").rglob("*.py")
        if _imports(path) & FORBIDDEN
    }
    assert offenders == {}


def test_shipped_json_schemas_match_the_models() -> None:
    shipped = json.loads((ROOT / "lineage/schema/events.schema.json").read_text())
    assert shipped == event_json_schema()
    alerts = json.loads((ROOT / "lineage/schema/alerts.schema.json").read_text())
    assert alerts == Alert.model_json_schema()
    assert set(shipped["discriminator"]["mapping"]) == {
        "IdentifierCollected",
        "DataFlowed",
        "DataUsed",
        "DataRead",
        "IdentifierErased",
    }
