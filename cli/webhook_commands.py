"""``lineage webhook URL``: deliver alerts to an HTTP endpoint, signed, at least once.

A follower of the durable alert record (``<home>/alerts.jsonl`` embedded, the alerts topic with
Kafka), with its own cursor: it never runs inside an ingest or the worker, so an endpoint that
is down delays nothing and loses nothing. docs/webhook.md describes the protocol.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import fail
from lineage.errors import ConfigurationError, LineageError

if TYPE_CHECKING:
    from lineage.alerts import Alert
    from runtime.webhook import RetryNotice, Summary

# runtime.webhook (pydantic, tenacity, the settings) loads inside the command: a fast --help.

#: Human progress lines during a backlog: at most one per this many seconds.
PROGRESS_EVERY_S = 2.0


def _line(stream: Any, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


class _Output:
    """Progress for humans (throttled lines) or JSON lines (one per delivered alert)."""

    def __init__(self, as_json: bool, target: str) -> None:
        self.as_json = as_json
        self.target = target
        self._last_progress = time.monotonic()
        self._pending_progress = False

    def delivered(self, alert: Alert, summary: Summary) -> None:
        if self.as_json:
            last = summary.last
            _line(
                sys.stdout,
                json.dumps(
                    {
                        "delivered": f"{alert.alert_id}:{alert.revision}",
                        "alert_id": alert.alert_id,
                        "revision": alert.revision,
                        "status": last.status if last else None,
                        "attempts": last.attempts if last else None,
                        "position": summary.position,
                    }
                ),
            )
            return
        now = time.monotonic()
        self._pending_progress = True
        if now - self._last_progress >= PROGRESS_EVERY_S:
            self.progress(summary)

    def progress(self, summary: Summary) -> None:
        if self.as_json or not self._pending_progress:
            return
        self._last_progress = time.monotonic()
        self._pending_progress = False
        _line(sys.stdout, f"delivered {summary.delivered} so far; cursor at {summary.position}")

    def idle(self, summary: Summary) -> None:
        if self.as_json:
            _line(sys.stdout, json.dumps({"idle": summary.as_json()}))
            return
        self.progress(summary)
        _line(
            sys.stdout,
            f"up to date ({summary.delivered} delivered, cursor at {summary.position}); "
            "waiting for new alerts (Ctrl-C to stop)",
        )

    def retry(self, notice: RetryNotice) -> None:
        _line(
            sys.stderr,
            f"webhook: attempt {notice.attempt} for {notice.key} failed ({notice.failure}); "
            f"retrying in {notice.wait_s:.1f}s",
        )

    def warning(self, message: str) -> None:
        _line(sys.stderr, f"webhook: warning: {message}")

    def summary(self, summary: Summary, stopped: bool) -> None:
        if self.as_json:
            _line(sys.stdout, json.dumps({"summary": {**summary.as_json(), "stopped": stopped}}))
            return
        self.progress(summary)
        skipped = (
            f", {summary.unreadable} unreadable record(s) skipped" if summary.unreadable else ""
        )
        _line(
            sys.stdout,
            f"{'stopped: ' if stopped else ''}delivered {summary.delivered} alert revision(s) "
            f"to {self.target} ({summary.retries} retried attempt(s){skipped}); "
            f"cursor at {summary.position}",
        )


def webhook(
    url: Annotated[str, typer.Argument(help="the endpoint: http(s)://host[:port]/path")],
    secret_env: Annotated[
        str,
        typer.Option(
            "--secret-env",
            metavar="NAME",
            help="environment variable holding the signing secret (>= 16 bytes)",
        ),
    ] = "LINEAGE_WEBHOOK_SECRET",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="cursor name (webhook.NAME.offset; Kafka group lineage-webhook.NAME); "
            "default: the URL's host and a hash of the URL",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--once", help="keep waiting for new alerts, or stop once up to date"
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="seconds per attempt's socket operation")
    ] = 10.0,
    max_backoff: Annotated[
        float, typer.Option("--max-backoff", min=0.01, help="longest wait between attempts, s")
    ] = 60.0,
    poll: Annotated[
        float, typer.Option("--poll", min=0.01, help="with --follow: seconds between looks")
    ] = 1.0,
    send: Annotated[
        str,
        typer.Option(
            "--send",
            help="incidents (default: Alertmanager webhook bodies, rate-limited per incident), "
            "pagerduty (PagerDuty Events v2, routing key from --routing-key-env) or alerts "
            "(every alert revision); docs/incidents.md",
        ),
    ] = "incidents",
    routing_key_env: Annotated[
        str,
        typer.Option("--routing-key-env", metavar="NAME", help="with --send pagerduty"),
    ] = "LINEAGE_PAGERDUTY_ROUTING_KEY",
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout")] = False,
) -> None:
    """POST every alert revision not yet delivered to URL (signed, retried until the endpoint
    accepts it), then stop, or with --follow wait for more. Exit 1 on a permanent refusal."""
    from runtime.settings import load_settings
    from runtime.webhook import (
        Callbacks,
        IncidentDelivery,
        Stopped,
        Summary,
        WebhookClient,
        WebhookRefusedError,
        check_name,
        check_url,
        default_name,
        is_loopback,
        redact,
        run_embedded,
        run_kafka,
        secret_from_env,
    )

    target = redact(url)
    output = _Output(as_json, target)
    stop = threading.Event()
    try:
        check_url(url)
        secret = secret_from_env(secret_env)
        cursor_name = check_name(name) if name is not None else default_name(url)
        settings = load_settings()
        if send not in ("incidents", "pagerduty", "alerts"):
            raise ConfigurationError("--send must be incidents, pagerduty or alerts")
        incidents = None
        if send != "alerts":
            routing_key = os.environ.get(routing_key_env, "") if send == "pagerduty" else ""
            if send == "pagerduty" and not routing_key:
                raise ConfigurationError(f"--send pagerduty needs {routing_key_env} set")
            incidents = IncidentDelivery(
                "pagerduty" if send == "pagerduty" else "alertmanager",
                routing_key,
                settings.incident_interval_seconds,
                settings.incident_quiet_days,
            )
        client = WebhookClient(
            url,
            secret,
            timeout_s=timeout,
            max_backoff_s=max_backoff,
            stop=stop,
            on_retry=output.retry,
        )
    except LineageError as exc:
        raise fail(str(exc)) from None
    if not url.lower().startswith("https://") and not is_loopback(url):
        output.warning(f"{target} is plain http: alerts cross the network unencrypted")
    kafka = settings.log_kind == "kafka"
    source = settings.alerts_topic if kafka else str(settings.home / "alerts.jsonl")
    if kafka and incidents is not None:
        source = settings.incidents_topic
    summary = Summary(source=source)
    if not as_json:
        what = "alerts" if incidents is None else f"incidents ({incidents.payload})"
        _line(sys.stdout, f"delivering {what} from {source} to {target} (cursor {cursor_name})")
    callbacks = Callbacks(delivered=output.delivered, idle=output.idle, warning=output.warning)

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()  # finishes the POST under way, records it, then stops
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a 2nd Ctrl-C: now

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        options: dict[str, Any] = {"follow": follow, "poll_s": poll, "callbacks": callbacks}
        if incidents is not None:
            options["incidents"] = incidents
        if kafka:
            run_kafka(settings, cursor_name, client, summary, **options)
        else:
            run_embedded(settings.home, cursor_name, client, summary, **options)
    except WebhookRefusedError as exc:
        if as_json:
            _line(
                sys.stdout,
                json.dumps(
                    {
                        "refused": exc.key,
                        "status": exc.status,
                        "reason": exc.reason,
                        "body": exc.excerpt,
                    }
                ),
            )
        output.summary(summary, stopped=True)
        detail = f": {exc.excerpt}" if exc.excerpt else ""
        raise fail(
            f"{target} refused alert {exc.key} with HTTP {exc.status} {exc.reason}{detail}. "
            "A permanent refusal (3xx, or 4xx other than 408/429): nothing after it "
            f"was sent and the cursor stays before it ({summary.position}); fix the "
            "receiver and run again",
            code=1,
        ) from None
    except (Stopped, KeyboardInterrupt):
        stop.set()
    except (LineageError, OSError) as exc:  # OSError: the home (cursor, lock) is not writable
        output.summary(summary, stopped=True)
        raise fail(str(exc)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    output.summary(summary, stopped=stop.is_set())


def register(app: typer.Typer) -> None:
    """Adds the webhook command to ``app`` (heavy imports stay inside the command)."""
    app.command()(webhook)
