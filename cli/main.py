"""``lineage``: ingest, trace, alerts, report, replay, demo. Every command has ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from cli.graph_commands import register as register_graph_commands
from cli.incident_commands import register as register_incident_commands
from cli.kafka_commands import register as register_kafka_commands
from cli.openlineage_commands import register as register_openlineage_commands
from cli.output import console, errors, fail, shown_identifier
from cli.query_commands import register as register_query_commands
from cli.rebuild_commands import register as register_rebuild_commands
from cli.scale_commands import register as register_scale_commands
from cli.webhook_commands import register as register_webhook_commands
from lineage.errors import ConfigurationError, LineageError, StoreError

if TYPE_CHECKING:
    from rich.progress import Progress

    from runtime.service import LineageService
    from runtime.settings import Settings

# Everything heavier than typer and rich (pydantic models, phonenumbers, networkx, the Kafka
# and Neo4j drivers) is imported inside the command that needs it: ``lineage --help`` and a
# mistyped command answer in a fraction of a second (tests/unit/test_cli_fast.py).

app = typer.Typer(
    help="Lineage of personal data: where did this phone number, collected for security, end "
    "up? Embedded by default; set LINEAGE_KAFKA_BOOTSTRAP / LINEAGE_NEO4J_URI for production. "
    "Every command has --json.",
    no_args_is_help=True,
    add_completion=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="as the lineage stood then, by event time (ISO 8601 date or time; without an "
        "offset it is UTC)",
    ),
]


@contextmanager
def _service(
    as_json: bool,
    alerts_to_stdout: bool = False,
    writer: bool = True,
    rebuilding: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Iterator[LineageService]:
    """Queries open the home as readers (no lock, never blocked by a running ingest)."""
    from runtime.service import LineageService
    from runtime.settings import load_settings
    from runtime.sinks import AlertSink, IncidentStreamSink, JsonlFileSink, StreamSink

    try:
        settings = load_settings(**(overrides or {}))
        sinks: list[AlertSink] = []
        if settings.log_kind == "local" and writer:
            sinks.append(JsonlFileSink(settings.home / "alerts.jsonl"))
        if alerts_to_stdout and settings.stdout_send != "incidents":
            sinks.append(StreamSink(sys.stdout, as_json))
        if alerts_to_stdout and settings.stdout_send != "alerts" and settings.log_kind == "local":
            quiet = timedelta(days=settings.incident_quiet_days)
            interval = settings.incident_interval_seconds
            sinks.append(IncidentStreamSink(sys.stdout, as_json, interval, quiet))
        service = LineageService.open(settings, sinks, writer=writer, rebuilding=rebuilding)
    except LineageError as exc:
        raise fail(str(exc)) from None
    try:
        yield service
    except LineageError as exc:
        raise fail(str(exc)) from None
    finally:
        service.close()


def utc_datetime(value: str, option: str = "time") -> datetime:
    """An ISO 8601 date or date-time from the command line as an aware UTC datetime: naive
    values are UTC, values with an offset (or ``Z``) are converted to UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time "
            "(e.g. 2020-01-31, 2020-01-31T12:00:00 or 2020-01-31T12:00:00+02:00)",
            param_hint=option,
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise typer.BadParameter(f"{value!r} is out of range in UTC", param_hint=option) from None


def read_stdin_identifier(limit: int = 4096) -> str:
    """``trace -``: the identifier from stdin, so it stays out of shell history and ``ps``."""
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise fail(f"the identifier on stdin is longer than {limit} bytes")
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise fail("the identifier on stdin is not valid UTF-8") from None
    if not text:
        raise fail("no identifier on stdin")
    return text


def utf8_argument(value: str, what: str) -> str:
    """Arguments that were not UTF-8 reach Python with surrogate escapes: refuse them in one
    line (never echoing them) instead of failing later with a traceback."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(f"the {what} is not valid UTF-8") from None
    return value


def _progress(label: str) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="JSON lines file of events, or - for stdin")],
    as_json: JsonOption = False,
    strict: Annotated[bool, typer.Option(help="exit 1 if any line was rejected")] = False,
    kafka: Annotated[
        bool, typer.Option("--kafka", help="append to the Kafka events topic; the worker applies")
    ] = False,
    input_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="events (producer records) or openlineage (RunEvents, docs/openlineage.md)",
        ),
    ] = "events",
) -> None:
    """Validate, pseudonymize and record events; bad lines are reported and dead-lettered."""
    if input_format not in ("events", "openlineage"):
        raise fail(f"--format must be events or openlineage, not {input_format!r}")
    try:
        handle = sys.stdin.buffer if str(file) == "-" else file.open("rb")
        total = None if str(file) == "-" else file.stat().st_size
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc}") from None
    read = 0
    lost: StoreError | None = None
    with (
        handle,
        _service(as_json, not as_json, overrides={"log": "kafka"} if kafka else None) as service,
        _progress("ingesting") as bar,
    ):
        task = bar.add_task("ingest", total=total)

        def lines() -> Iterator[bytes]:
            nonlocal read
            unshown = 0  # bytes read but not yet on the bar: it is moved every 1,000 lines
            for line in handle:  # streamed: files of millions of events are fine
                read += 1
                unshown += len(line)
                if read % 1000 == 0:
                    bar.advance(task, unshown)
                    unshown = 0
                yield line
            bar.advance(task, unshown)

        try:
            report = service.ingest(
                lines(),
                origin=str(file),
                keep_alerts=False,
                complete=file.is_file(),
                input_format="openlineage" if input_format == "openlineage" else "events",
            )
        except StoreError as exc:
            if service.settings.log_kind != "kafka":
                raise
            lost = exc  # reported once the producer is closed and every send has settled
    if lost is not None:
        _kafka_ingest_failed(service, lost, read, as_json)
    if as_json:
        print(
            json.dumps(
                {
                    "lines": report.lines,
                    "accepted": report.accepted,
                    "duplicates": report.duplicates,
                    "rejected": [{"line": r.line, "reason": r.reason} for r in report.rejected],
                    "alerts": report.alerts_raised,
                },
                indent=2,
            )
        )
    else:
        for rejection in report.rejected:
            errors.print(
                f"[yellow]line {rejection.line}: {escape(rejection.reason)}[/]", soft_wrap=True
            )
        console.print(
            f"{report.accepted} events recorded, {report.duplicates} already known, "
            f"{len(report.rejected)} rejected, {report.alerts_raised} alert(s) raised or revised."
        )
    if strict and report.rejected:
        raise typer.Exit(1)


def _kafka_ingest_failed(
    service: LineageService, error: StoreError, lines_read: int, as_json: bool
) -> NoReturn:
    """Kafka stopped acknowledging (a broker away for longer than the delivery timeout): one
    line with what was sent and what was not, exit 2. Re-running the same ingest is safe:
    events keep their ids and the worker's merges make re-sent ones no-ops."""
    delivered = getattr(service.log, "delivered", 0)
    undelivered = getattr(service.log, "undelivered", 0)
    if as_json:
        print(
            json.dumps(
                {
                    "error": str(error),
                    "lines_read": lines_read,
                    "delivered": delivered,
                    "undelivered": undelivered,
                }
            )
        )
    raise fail(
        f"Kafka stopped acknowledging at line {lines_read}: {delivered} event(s) sent, "
        f"{undelivered} could not be delivered; run the same ingest again once Kafka is back "
        f"(re-sent events are no-ops). Cause: {error}"
    )


@app.command()
def trace(
    identifier: Annotated[
        list[str],
        typer.Argument(
            help="a phone number or email, as typed; - reads it from stdin (kept out of shell "
            "history and ps)"
        ),
    ],
    as_json: JsonOption = False,
    as_of: AsOfOption = None,
) -> None:
    """Where did this phone number or email go? Datasets, jobs and uses, per origin purpose."""
    from cli import render

    if identifier == ["-"]:
        raw = read_stdin_identifier()
    else:
        raw = utf8_argument(" ".join(identifier), "identifier")
    shown = shown_identifier(raw)
    when = utc_datetime(as_of, "--as-of") if as_of is not None else None
    with _service(as_json, writer=False) as service:
        result = service.trace(raw, when)
    if result is None:
        if as_json:
            print(json.dumps({"found": False, "identifier": shown}))
        else:
            errors.print(f"No lineage recorded for {shown}" + (f" as of {as_of}." if when else "."))
        raise typer.Exit(1)
    if as_json:
        print(render.to_json(result))
    else:
        render.print_trace(console, result)


@app.command()
def alerts(
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="show at most this many (0: all)")] = 20,
    show_all: Annotated[bool, typer.Option("--all", help="show every alert")] = False,
    follow: Annotated[bool, typer.Option(help="consume the Kafka alerts topic live")] = False,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="with --follow: replay the topic first")
    ] = False,
) -> None:
    """List alerts with their evidence paths (or follow them live from Kafka)."""
    from cli import render

    if follow:
        from runtime.settings import load_settings
        from runtime.sinks import describe
        from streams.alerts_follow import follow_alerts

        try:
            for alert in follow_alerts(load_settings(), from_beginning=from_beginning):
                print(alert.model_dump_json() if as_json else describe(alert), flush=True)
        except LineageError as exc:
            raise fail(str(exc)) from None
        return
    if limit < 0:
        raise fail("--limit must be 0 (all) or more")
    shown = None if show_all or limit == 0 else limit
    with _service(as_json, writer=False) as service:
        found = service.alerts()
    if as_json:
        print(render.alerts_json(found, shown))
    else:
        render.print_alerts(console, found, shown)
        console.print(f"{len(found)} alert(s) in total.")


@app.command()
def downstream(
    dataset: Annotated[str, typer.Argument(help="a dataset key, system:name")],
    as_json: JsonOption = False,
) -> None:
    """Every dataset, job and use that data in DATASET can reach (by any flow), jobs that
    only read it included."""
    from cli import render

    with _service(as_json, writer=False) as service:
        found = service.downstream(dataset)
    if as_json:
        print(render.to_json(found))
        return
    console.print(escape(f"downstream of {dataset}: {len(found.datasets)} dataset(s)"))
    for key in found.datasets:
        console.print(escape(f"  dataset {key}"))
    for job in found.jobs:
        console.print(escape(f"  job {job}"))
    for used, job, purpose in found.uses:
        console.print(escape(f"  used in {used} by {job} for {purpose}"))


@app.command()
def report(
    as_json: JsonOption = False,
    since: Annotated[str | None, typer.Option(help="violations from this ISO time on")] = None,
    until: Annotated[str | None, typer.Option(help="violations before this ISO time")] = None,
    form: Annotated[
        str, typer.Option("--format", help="text, or an audit report: md, html or json")
    ] = "text",
    as_of: AsOfOption = None,
) -> None:
    """How many people are affected, since when, through which systems; with --format, the
    audit report (summary, an evidence example per route, a picture). docs/report.md."""
    from cli import render

    start = None if since is None else utc_datetime(since, "--since")
    end = None if until is None else utc_datetime(until, "--until")
    when = None if as_of is None else utc_datetime(as_of, "--as-of")
    if when is not None:  # as of D: the violations up to D included, the graph as it was
        end = min(end or datetime.max.replace(tzinfo=UTC), when + timedelta(microseconds=1))
    if form not in ("text", "md", "html", "json"):
        raise typer.BadParameter("one of text, md, html, json", param_hint="--format")
    with _service(as_json, writer=False) as service:
        if form != "text":
            from cli.report_formats import FORMATS

            with _progress("{task.description}") as bar:
                task, done = bar.add_task("report", total=4), iter(range(4))

                def step(what: str) -> None:
                    bar.update(task, description=what, completed=next(done))

                audit = service.audit(start, end, step, when)
            sys.stdout.write(FORMATS[form](audit))
            return
        summary = service.report_between(start, end)
    if as_json:
        print(render.to_json(summary))
    else:
        render.print_report(console, summary)


TIME_HELP = "ISO 8601 date or time; without an offset it is UTC"


@app.command()
def replay(
    since: Annotated[
        str | None,
        typer.Option(help=f"re-apply events observed since this time ({TIME_HELP})"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help=f"rebuild as of this time ({TIME_HELP})")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Rebuild the graph from the durable log (it is a projection of the log)."""
    observed_since = None if since is None else utc_datetime(since, "--since")
    observed_until = None if until is None else utc_datetime(until, "--until")
    with _service(as_json, rebuilding=True) as service, _progress("replaying") as bar:
        task = bar.add_task(
            "replay", total=service.local_log.count() if service.local_log else None
        )
        result = service.replay(
            observed_since, observed_until, progress=lambda n: bar.advance(task, n)
        )
    summary = result.summary
    if as_json:
        print(
            json.dumps(
                {
                    "events": result.events,
                    "alerts": summary.alerts,
                    "affected_subjects": summary.affected_subjects,
                },
                indent=2,
            )
        )
    else:
        console.print(
            f"Replayed {result.events} events: {summary.alerts} alert(s), "
            f"{summary.affected_subjects} affected people."
        )


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="synthetic users to generate")] = 2_000,
    seed: Annotated[int, typer.Option(help="generator seed")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Replay the synthetic reference case (security identifiers reaching ad matching)."""
    from cli import render
    from lineage.reference_case import FIX, MATCH_JOB, generate

    case = generate(users=users, seed=seed)
    lines = [json.dumps(record) for record in case.records]
    with _service(as_json) as service, _progress("demo") as bar:
        task = bar.add_task("demo", total=len(lines))
        ingested = service.ingest(
            lines, origin="demo", progress=lambda n: bar.advance(task, n), complete=True
        )
        found = service.alerts()
        summary = service.report()
    after_fix = [a for a in found if a.occurred_at >= FIX]
    truth = case.truth
    expected = len(truth.affected_subjects)
    expected_jobs = {MATCH_JOB: expected} if expected else {}
    window = (summary.first_violation, summary.last_violation)
    expected_window = (truth.first_violation, truth.last_violation)
    if as_json:
        print(
            json.dumps(
                {
                    "events": len(lines),
                    "new_events": ingested.accepted,
                    "alerts": len(found),
                    "affected_subjects": summary.affected_subjects,
                    "expected_affected_subjects": expected,
                    "first_violation": summary.first_violation.isoformat()
                    if summary.first_violation
                    else None,
                    "last_violation": summary.last_violation.isoformat()
                    if summary.last_violation
                    else None,
                    "expected_first_violation": _iso(truth.first_violation),
                    "expected_last_violation": _iso(truth.last_violation),
                    "people_by_job": summary.people_by_job,
                    "expected_people_by_job": expected_jobs,
                    "fix_date": FIX.isoformat(),
                    "alerts_after_fix": len(after_fix),
                    "sample_alerts": [a.model_dump(mode="json") for a in found[:3]],
                },
                indent=2,
            )
        )
        return
    console.print(
        f"Generated {len(lines)} events for {users} synthetic users ({ingested.accepted} new).\n"
    )
    render.print_alerts(console, found, limit=3)
    console.print()
    render.print_report(console, summary)
    verdict = "matches" if summary.affected_subjects == expected else "DIFFERS FROM"
    console.print(
        f"Affected people: {summary.affected_subjects} ({verdict} the generator's "
        f"{expected} routed to ads before the fix on {FIX:%Y-%m-%d})."
    )
    verdict = "matches" if summary.people_by_job == expected_jobs else "DIFFERS FROM"
    console.print(
        f"People per violating job: {_jobs(summary.people_by_job)} ({verdict} the generator's "
        f"{_jobs(expected_jobs)})."
    )
    verdict = "matches" if window == expected_window else "DIFFERS FROM"
    console.print(
        f"Violation window: {_span(window)} ({verdict} the generator's {_span(expected_window)})."
    )
    console.print(f"Alerts for events after the fix: {len(after_fix)}.")
    if ingested.duplicates or summary.affected_subjects != expected:
        console.print(
            "[yellow]Note:[/] this store already held events (an earlier demo or real data); "
            "the counts cover all of it. Use a fresh LINEAGE_HOME for a clean comparison."
        )
    console.print(
        "Try: lineage trace <email>   (demo emails look like userN@example.com, N < users)"
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _jobs(people: dict[str, int]) -> str:
    return ", ".join(f"{job} {count}" for job, count in sorted(people.items())) or "none"


def _span(window: tuple[datetime | None, datetime | None]) -> str:
    first, last = window
    return (
        "none"
        if first is None or last is None
        else f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"
    )


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help="events or alerts")] = "events",
) -> None:
    """Print the JSON Schema of events or alerts (always JSON)."""
    from lineage.alerts import Alert
    from lineage.events import event_json_schema

    if kind == "events":
        print(json.dumps(event_json_schema(), indent=2))
    elif kind == "alerts":
        print(json.dumps(Alert.model_json_schema(), indent=2))
    else:
        raise fail("kind must be 'events' or 'alerts'")


@app.command("dead-letters")
def dead_letters(as_json: JsonOption = False) -> None:
    """Rejected inputs and why: the local log's, or in Kafka mode the dead-letter topic's.
    The rejected bytes are never shown; identifiers in reasons and origins are masked."""
    from cli.render import masked_text
    from runtime.settings import load_settings

    try:
        settings = load_settings()
    except LineageError as exc:
        raise fail(str(exc)) from None
    if settings.log_kind == "kafka":
        _kafka_dead_letters(settings, as_json)
        return
    with _service(as_json, writer=False) as service:
        log = service.local_log
        if log is None:
            raise fail("dead letters of the Kafka log are on the dead-letter topic")
        rows = log.dead_letters()
    entries = [
        {
            "id": r.id,
            "at": r.at,
            "origin": masked_text(r.origin, phones=False),
            "reason": masked_text(r.reason),
        }
        for r in rows
    ]
    if as_json:
        print(json.dumps(entries, indent=2))
    else:
        for entry in entries:
            console.print(
                escape(f"{entry['id']} {entry['at']} {entry['origin']}: {entry['reason']}"),
                soft_wrap=True,
            )
        console.print(f"{len(rows)} dead letter(s).")


def _kafka_dead_letters(settings: Settings, as_json: bool) -> None:
    from cli.render import masked_text
    from streams.kafka_log import read_dead_letters

    try:
        rows = read_dead_letters(settings)
    except LineageError as exc:
        raise fail(str(exc)) from None
    entries = [
        {
            "id": r.id,
            "at": r.at,
            "origin": masked_text(r.origin, phones=False),
            "reason": masked_text(r.reason),
            "bytes": r.size,
            "truncated_from": r.truncated_from,
        }
        for r in rows
    ]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    for entry in entries:
        cut = (
            f" (kept {entry['bytes']:,} of {entry['truncated_from']:,} bytes)"
            if entry["truncated_from"]
            else ""
        )
        console.print(
            escape(f"{entry['id']} {entry['at']} {entry['origin']}: {entry['reason']}{cut}"),
            soft_wrap=True,
        )
    console.print(f"{len(rows)} dead letter(s) on {escape(settings.deadletter_topic)}.")


register_kafka_commands(app)
register_scale_commands(app)
register_graph_commands(app)
register_webhook_commands(app)
register_openlineage_commands(app)
register_query_commands(app)
register_incident_commands(app)
register_rebuild_commands(app)


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except ConfigurationError as exc:
        errors.print(f"[bold red]configuration error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover - `python -m cli.main`, as the tests spawn it
    main()
