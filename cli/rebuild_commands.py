"""``lineage rebuild --neo4j``: Neo4j loaded from the log by Neo4j's bulk importer.

Registered on the main app with :func:`register`. The work is in :mod:`runtime.neo4j_rebuild`
and :mod:`graph.neo4j_bulk`; operations in docs/neo4j-rebuild.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli.output import console, fail
from lineage.errors import LineageError

#: This checkout (services/svc, the development servers' launcher, lives here).
REPO = Path(__file__).resolve().parents[1]


def services_home() -> Path:
    """The Neo4j home ``services/svc`` runs (``$LINEAGE_SERVICES_DIR/neo4j/home``)."""
    state = Path(os.environ.get("LINEAGE_SERVICES_DIR") or REPO / ".services")
    return state / "neo4j" / "home"


def admin_libs() -> Path:
    """Fetched (once, into the shared jar cache) by ``services/svc admin-libs``."""
    done = subprocess.run(
        ["bash", str(REPO / "services" / "svc"), "admin-libs"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not done.stdout.strip():
        raise fail(f"could not fetch Neo4j's admin tools: {done.stderr.strip()[-600:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def check_svc_serves(uri: str, home: Path) -> None:
    """The swap stops and starts ``services/svc``'s Neo4j: refuse when the configured URI is
    another server (or svc would restart this one elsewhere, e.g. without the port exports)."""
    done = subprocess.run(
        ["bash", str(REPO / "services" / "svc"), "env"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    served = next(
        (line.split("=", 1)[1] for line in done.stdout.splitlines()
         if line.startswith("export LINEAGE_NEO4J_URI=")),
        None,
    )  # fmt: skip
    if served != uri or not (home / "data" / "databases").is_dir():
        raise fail(
            f"LINEAGE_NEO4J_URI ({uri}) is not the services/svc server of {home} ({served}, "
            "with this shell's LINEAGE_*_PORT exports): rebuild with --no-swap and swap the "
            "database in as docs/neo4j-rebuild.md says"
        )


def rebuild(
    neo4j: Annotated[
        bool, typer.Option("--neo4j", help="rebuild the Neo4j graph (the one target so far)")
    ] = False,
    swap: Annotated[
        bool,
        typer.Option(
            "--swap/--no-swap",
            help="stop the development Neo4j (services/svc), swap the new database in, start "
            "it, create the schema and set the workers' offsets; --no-swap leaves the "
            "imported database staged for a production swap (docs/neo4j-rebuild.md)",
        ),
    ] = True,
    workdir: Annotated[
        Path | None, typer.Option(help="where the CSVs and the imported database go")
    ] = None,
    libs: Annotated[
        Path | None,
        typer.Option(help="Neo4j admin jars (default: fetched by services/svc admin-libs)"),
    ] = None,
    neo4j_home: Annotated[
        Path | None,
        typer.Option(help="the live server's home (default: services/svc's)"),
    ] = None,
    finish: Annotated[
        Path | None,
        typer.Option(
            help="after swapping a --no-swap rebuild in by hand: create the schema, restore "
            "the incident actions and set the workers' offsets (give its --workdir)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Replay the log into memory, write CSVs, bulk-import, swap in, resume the workers.

    Stop every `lineage worker` first: their offsets are set to the rebuilt point."""
    from graph.neo4j_bulk import svc_control
    from runtime.neo4j_rebuild import finish_staged, rebuild_neo4j
    from runtime.settings import load_settings

    if not neo4j:
        raise fail("say what to rebuild: --neo4j (the embedded home rebuilds with `replay`)")
    try:
        settings = load_settings()
        settings.require_neo4j()
        if finish is not None:
            offsets = finish_staged(settings, finish)
            if as_json:
                print(json.dumps({"finished": True, "offsets": offsets}))
            else:
                console.print(f"Schema created; workers resume at offsets {offsets}.")
            return
        where = workdir or Path(tempfile.mkdtemp(prefix="lineage-rebuild-"))
        if workdir is not None:
            where.mkdir(parents=True, exist_ok=True)
            if any(where.iterdir()):
                raise fail(f"{where} is not empty: give a new --workdir")
        home = neo4j_home or services_home()
        control = None
        if swap:
            check_svc_serves(settings.require_neo4j()[0], home)
            control = (svc_control(REPO, "stop"), svc_control(REPO, "start"))
        report = rebuild_neo4j(settings, libs or admin_libs(), where, home, control)
    except LineageError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(report.__dict__ | {"total_seconds": report.total_seconds}, indent=2))
        return
    rate = report.events / report.total_seconds if report.total_seconds else 0.0
    console.print(
        f"Rebuilt Neo4j from {report.events} events ({report.source}): {report.nodes} nodes, "
        f"{report.relationships} relationships in {report.total_seconds:.1f}s "
        f"({rate:,.0f} events/s); {report.alerts_queued} alert(s) queued to send."
    )
    if report.previous:
        console.print(f"The previous database is kept in {report.previous}.")
    else:
        console.print(
            f"Imported database staged in {report.staged}/data: swap it in as "
            "docs/neo4j-rebuild.md says, then run `lineage rebuild --neo4j --finish "
            f"{report.workdir}`."
        )


def register(app: typer.Typer) -> None:
    app.command()(rebuild)
