"""``lineage incidents``, ``lineage incident ID`` and the officers' ``ack-incident`` /
``resolve-incident``: thin over runtime/incidents.py (docs/incidents.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from lineage.incidents import Incident

console = Console()
DEFAULT_LIMIT = 20
AS_OF_HELP = (
    "the incidents as they stood then, by event time (ISO 8601 date or time; without an "
    "offset it is UTC)"
)


def _route(incident: Incident) -> str:
    return " > ".join(f"{d} ({j})" if j else d for d, j in incident.key.route)


def _line(incident: Incident) -> str:
    return (
        f"{incident.incident_id[:12]} {incident.status:<12} {incident.key.rule} | "
        f"{incident.key.origin_purpose}@{incident.key.origin_dataset} -> "
        f"{incident.key.use_purpose} in {incident.key.use_dataset} ({incident.key.use_job}) | "
        f"{incident.people} people, {incident.identifiers} identifiers, "
        f"{incident.alerts} alerts | {incident.first_violation:%Y-%m-%d} .. "
        f"{incident.last_violation:%Y-%m-%d}"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def incidents(
        as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
        limit: Annotated[
            int, typer.Option(help="show at most this many incidents (0: all)")
        ] = DEFAULT_LIMIT,
        show_all: Annotated[bool, typer.Option("--all", help="show every incident")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Incidents: one per (rule, origin, route, use), with people, status and window."""
        from cli.main import _service, utc_datetime
        from cli.output import fail
        from runtime import incidents as service_incidents

        when = utc_datetime(as_of, "--as-of") if as_of is not None else None
        if limit < 0:
            raise fail("--limit must be 0 (all) or more")
        rows = None if show_all or limit == 0 else limit
        with _service(as_json, writer=False) as service:
            page = service_incidents.incidents(service, when, rows)
        if as_json:
            body: dict[str, Any] = {
                "as_of": when.isoformat() if when is not None else None,
                "total": page.total,
                "truncated": page.truncated,
                "limit": rows,
                "people": page.people,
                "incidents": [i.as_json() for i in page.incidents],
            }
            print(json.dumps(body, indent=2))
            return
        if not page.incidents:
            console.print("no incidents.")
            return
        for incident in page.incidents:
            console.print(escape(_line(incident)), soft_wrap=True)
        console.print(f"{page.people} distinct people across the incidents.")
        if page.truncated:
            console.print(f"showing {len(page.incidents)} of {page.total}, use --all")
        else:
            console.print(f"{page.total} incident(s).")

    @app.command()
    def incident(
        incident_id: Annotated[str, typer.Argument(help="an incident id (or a unique prefix)")],
        page: Annotated[int, typer.Option(min=1, help="which page of its alerts")] = 1,
        limit: Annotated[int, typer.Option(help="alerts per page (0: all)")] = DEFAULT_LIMIT,
        as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """One incident with its alerts, paged (earliest first)."""
        from cli.main import _service, utc_datetime
        from cli.output import fail
        from runtime import incidents as service_incidents

        when = utc_datetime(as_of, "--as-of") if as_of is not None else None
        if limit < 0:
            raise fail("--limit must be 0 (all) or more")
        with _service(as_json, writer=False) as service:
            found = service_incidents.incident(
                service, incident_id, page, None if limit == 0 else limit, when
            )
        if found is None:
            raise fail(f"no incident {incident_id!r}", code=1)
        alerts = [service_incidents.member_json(m) for m in found.alerts]
        if as_json:
            body = {
                **found.incident.as_json(),
                "page": found.page,
                "limit": found.limit,
                "total_alerts": found.total,
                "truncated": found.truncated,
                "alert_rows": alerts,
            }
            print(json.dumps(body, indent=2))
            return
        i = found.incident
        console.print(escape(_line(i)), soft_wrap=True)
        console.print(escape(f"id {i.incident_id}, route {_route(i)}"), soft_wrap=True)
        if i.acknowledged_by:
            console.print(escape(f"acknowledged by {i.acknowledged_by}"), soft_wrap=True)
        if i.resolved_by:
            console.print(escape(f"resolved by {i.resolved_by}"), soft_wrap=True)
        for row in alerts:
            console.print(
                escape(f"{row['alert_id']} {str(row['identifier'])[:16]} {row['occurred_at']}"),
                soft_wrap=True,
            )
        shown = len(alerts)
        console.print(f"page {found.page}: {shown} of {found.total} alert(s).")

    def _act(kind: str, incident_id: str, by: str, why: str, as_json: bool) -> None:
        from cli.main import _service
        from cli.output import fail
        from runtime import incidents as service_incidents

        with _service(as_json, writer=True) as service:
            if kind == "acknowledge":
                found = service_incidents.acknowledge(service, incident_id, by, why)
            else:
                found = service_incidents.resolve(service, incident_id, by, why)
        if found is None:
            raise fail(f"no incident {incident_id!r}", code=1)
        if as_json:
            print(json.dumps(found.as_json(), indent=2))
        else:
            console.print(escape(_line(found)), soft_wrap=True)

    @app.command("ack-incident")
    def ack_incident(
        incident_id: Annotated[str, typer.Argument(help="an incident id (or a unique prefix)")],
        by: Annotated[str, typer.Option("--by", help="who acknowledges it")],
        why: Annotated[str, typer.Option("--why", help="why (kept with the action)")],
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """An officer acknowledges an incident (recorded as an IncidentAcknowledged event)."""
        _act("acknowledge", incident_id, by, why, as_json)

    @app.command("resolve-incident")
    def resolve_incident(
        incident_id: Annotated[str, typer.Argument(help="an incident id (or a unique prefix)")],
        by: Annotated[str, typer.Option("--by", help="who resolves it")],
        why: Annotated[str, typer.Option("--why", help="why (kept with the action)")],
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """An officer resolves an incident (an IncidentResolved event); a later violation
        reopens it."""
        _act("resolve", incident_id, by, why, as_json)
