"""The built wheel carries the data the code reads at run time: the packaged policy and purposes
(TOML) and the shipped JSON Schemas. Builds offline from a copy of the sources (the work tree
is left untouched), with the venv's setuptools; it does not install the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lineage", "graph", "streams", "cli", "runtime", "web")
REQUIRED = {
    "lineage/data/policy.toml",
    "lineage/data/purposes.toml",
    "lineage/schema/events.schema.json",
    "lineage/schema/alerts.schema.json",
    "lineage/py.typed",
    # the console works offline: its page, script and vendored graph library, with licences
    "web/static/index.html",
    "web/static/console.js",
    "web/static/console.css",
    "web/static/vendor/cytoscape.min.js",
    "web/static/vendor/cytoscape.LICENSE",
    "web/static/vendor/cytoscape-dagre.min.js",
    "web/static/vendor/cytoscape-dagre.LICENSE",
    "web/static/vendor/dagre.LICENSE",
}


def _setuptools_major() -> int:
    try:
        return int(version("setuptools").split(".")[0])
    except Exception:  # not installed, or an odd version string
        return 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_wheel_contains_the_data_files_and_schemas(tmp_path: Path) -> None:
    if _setuptools_major() < 77:
        pytest.fail("setuptools>=77 is needed (the dev extra pins it): run `make install`")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=junk)
    out = tmp_path / "wheel"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("lineage_tracker-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert names >= REQUIRED, sorted(REQUIRED - names)
        # every data file and schema in the tree, whatever gets added later
        shipped = {
            path.relative_to(ROOT).as_posix()
            for folder in ("lineage/data", "lineage/schema")
            for path in (ROOT / folder).iterdir()
            if path.is_file()
        }
        assert names >= shipped, sorted(shipped - names)
        assert names >= {f"{package}/py.typed" for package in PACKAGES}
        packaged = archive.read("lineage/data/policy.toml")
        assert packaged == (ROOT / "lineage/data/policy.toml").read_bytes()
