"""Unit tests run the embedded mode only: no LINEAGE_* setting from the shell leaks in."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def embedded_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("LINEAGE_")]:
        monkeypatch.delenv(name)
