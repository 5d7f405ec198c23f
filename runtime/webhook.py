"""Webhook delivery of alerts: one signed HTTP POST per alert revision, retried, at least once.

The webhook is a *follower of the durable alert record*, never a sink inside the projector, so
an endpoint that is down cannot slow an ingest or a worker, and cannot lose an alert:

* embedded: it tails ``<home>/alerts.jsonl`` (what every writer of the home appends and fsyncs,
  see :class:`runtime.sinks.JsonlFileSink`), complete lines only, from a byte offset kept in
  ``<home>/webhook.<name>.offset`` (0600, replaced atomically after each successful POST);
* Kafka: it consumes the alerts topic in its own consumer group ``lineage-webhook.<name>``
  and commits a record's offset only after that record's successful POST.

An alert is POSTed until the endpoint answers 2xx; a crash between the 2xx and the cursor
write sends it again. Every request carries ``Idempotency-Key: <alert_id>:<revision>`` so
receivers tell such duplicates apart (a new revision of an alert is a new key), and an
HMAC-SHA256 signature of ``<timestamp>.<body>`` (:func:`sign`, :func:`verify`).

Failures: connection errors, timeouts, 408, 429 and 5xx are retried with capped, jittered
exponential backoff (tenacity), forever, never skipping an alert; any other answer (3xx, other
4xx) is a permanent refusal: :class:`WebhookRefusedError` is raised and the cursor stays *before*
the refused alert, so a fixed receiver gets it on the next run. docs/webhook.md has the rest.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import tenacity
from pydantic import ValidationError

from lineage.alerts import Alert
from lineage.errors import ConfigurationError, LineageError, StoreError

if TYPE_CHECKING:
    from runtime.settings import Settings

SIGNATURE_HEADER = "X-Lineage-Signature"
TIMESTAMP_HEADER = "X-Lineage-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_SECRET_ENV = "LINEAGE_WEBHOOK_SECRET"
MIN_SECRET_BYTES = 16
#: What a receiver should accept between the signed timestamp and its clock (:func:`verify`).
DEFAULT_TOLERANCE_S = 300.0
#: Statuses worth another attempt; every other non-2xx answer is a permanent refusal.
RETRIED_4XX = frozenset({408, 429})
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
USER_AGENT = "lineage-webhook/1"
#: The start of every alert line (``Alert.model_dump_json``): finds an alert after a torn write.
_ALERT_START = b'{"schema_version":'


class WebhookError(LineageError):
    """The webhook cannot run (configuration, a cursor it cannot read, a second follower)."""


class WebhookRefusedError(LineageError):
    """The endpoint answered a permanent refusal (3xx, or 4xx other than 408/429)."""

    def __init__(self, key: str, status: int, reason: str, excerpt: str) -> None:
        detail = f": {excerpt}" if excerpt else ""
        super().__init__(f"the endpoint refused {key} with HTTP {status} {reason}{detail}")
        self.key = key
        self.status = status
        self.reason = reason
        self.excerpt = excerpt


class Stopped(Exception):  # noqa: N818 - a request, not an error
    """The follower was asked to stop (a signal) while waiting."""


class TransientDeliveryError(Exception):
    """One attempt failed in a way worth retrying; ``retry_after`` from the answer, if any."""

    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after


# -- signing ---------------------------------------------------------------------------------
def idempotency_key(alert: Alert) -> str:
    return f"{alert.alert_id}:{alert.revision}"


def signed_content(timestamp: int, body: bytes) -> bytes:
    """What the signature covers: the timestamp header's value, a dot, the exact body."""
    return str(timestamp).encode() + b"." + body


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Lineage-Signature`` value: ``sha256=`` and the hex HMAC-SHA256."""
    digest = hmac.new(secret, signed_content(timestamp, body), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """A receiver's check: the signature matches and the timestamp is within ``tolerance_s``
    of ``now`` (a captured request cannot be replayed later). Constant-time comparison."""
    if timestamp is None or signature is None or not timestamp.isdigit():
        return False
    moment = int(timestamp)
    if abs((time.time() if now is None else now) - moment) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, moment, body), signature.strip())


def secret_from_env(variable: str, environ: dict[str, str] | None = None) -> bytes:
    value = (os.environ if environ is None else environ).get(variable, "")
    if len(value.encode()) < MIN_SECRET_BYTES:
        state = "is not set" if not value else f"is shorter than {MIN_SECRET_BYTES} bytes"
        raise ConfigurationError(
            f"{variable} {state}: set it to the secret shared with the receiver (or name "
            "another variable with --secret-env); deliveries are always signed"
        )
    return value.encode()


# -- the endpoint ----------------------------------------------------------------------------
def check_url(url: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"invalid URL {redact(url)!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"not an http(s) URL with a host: {redact(url)!r}")
    return parts


def _without_userinfo(url: str) -> tuple[str, str | None]:
    """The URL to request, and a Basic ``Authorization`` value for credentials in it."""
    parts = check_url(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def redact(url: str) -> str:
    """For output: scheme, host, port and path; never credentials or a query (tokens)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def default_name(url: str) -> str:
    """A cursor name per URL: the host (readable) and a hash of the whole URL (unique)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", urllib.parse.urlsplit(url).hostname or "webhook")
    return f"{host.strip('.-')[:40] or 'webhook'}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"invalid webhook name {name!r}: a letter or digit, then letters, digits, '.', "
            "'_' or '-', 64 characters at most"
        )
    return name


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect of a signed POST is not followed: it is answered as a refusal."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Delivery:
    key: str
    status: int
    attempts: int


@dataclass(frozen=True)
class RetryNotice:
    key: str
    attempt: int  # the attempt that failed, from 1
    failure: str
    wait_s: float


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _excerpt(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read(300)
    except (OSError, http.client.HTTPException):
        return ""
    text = raw.decode("utf-8", "replace")
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return str(reason) if not isinstance(reason, BaseException) else _describe(reason)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WebhookClient:
    """POSTs one alert until a 2xx (retrying transient failures), or raises
    :class:`WebhookRefusedError` on a permanent refusal, or :class:`Stopped` when ``stop`` is set
    while it waits between attempts. Each attempt is bounded by ``timeout_s`` per socket
    operation (connect, send, each read)."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_s: float = 10.0,
        max_backoff_s: float = 60.0,
        initial_backoff_s: float | None = None,
        stop: threading.Event | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._target, self._authorization = _without_userinfo(url)
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"the webhook secret needs {MIN_SECRET_BYTES} bytes or more")
        if timeout_s <= 0 or max_backoff_s <= 0:
            raise ConfigurationError("the timeout and the backoff must be positive")
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.initial_backoff_s = (
            initial_backoff_s if initial_backoff_s is not None else min(0.5, max_backoff_s)
        )
        self.stop = stop or threading.Event()
        self._on_retry = on_retry
        self._clock = clock
        #: Attempts that failed and were retried, over every delivery of this client.
        self.failed_attempts = 0
        self._opener = urllib.request.build_opener(_NoRedirect())
        # initial x 2^(attempt - 1), plus up to ``initial`` of jitter, capped in _wait
        self._exponential = tenacity.wait_exponential(
            multiplier=self.initial_backoff_s, max=self.max_backoff_s
        ) + tenacity.wait_random(0, self.initial_backoff_s)

    def deliver(self, alert: Alert) -> Delivery:
        return self.deliver_body(idempotency_key(alert), alert.model_dump_json().encode())

    def deliver_body(self, key: str, body: bytes) -> Delivery:
        """POST ``body`` until a 2xx, as :meth:`deliver` does an alert."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientDeliveryError),
            wait=self._wait,
            stop=tenacity.stop_never,
            sleep=self._sleep,
            before_sleep=lambda state: self._notify(key, state),
            reraise=True,
        )
        attempts = 0
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                status = self.post(key, body)
        return Delivery(key, status, attempts)

    def post(self, key: str, body: bytes) -> int:
        """One attempt: the status of a 2xx answer, else raises."""
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        request = urllib.request.Request(self._target, data=body, method="POST", headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(64 * 1024)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status, reason = exc.code, exc.reason or http.client.responses.get(exc.code, "")
            if status in RETRIED_4XX or status >= 500:
                raise TransientDeliveryError(
                    f"HTTP {status} {reason}", _retry_after(exc.headers.get("Retry-After"))
                ) from None
            raise WebhookRefusedError(key, status, str(reason), _excerpt(exc)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise TransientDeliveryError(_describe(exc)) from None
        if not 200 <= status < 300:  # 1xx never reaches here; anything else is not a success
            raise WebhookRefusedError(key, status, http.client.responses.get(status, ""), "")
        return status

    def _wait(self, state: tenacity.RetryCallState) -> float:
        wait = min(float(self._exponential(state)), self.max_backoff_s)
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, TransientDeliveryError) and failure.retry_after is not None:
            wait = max(wait, min(failure.retry_after, self.max_backoff_s))
        return wait

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped()

    def _notify(self, key: str, state: tenacity.RetryCallState) -> None:
        self.failed_attempts += 1
        if self._on_retry is None:
            return
        failure = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        self._on_retry(RetryNotice(key, state.attempt_number, str(failure), float(wait)))


# -- progress --------------------------------------------------------------------------------
@dataclass
class Summary:
    """What a run did so far; ``position`` is where the cursor stands (human-readable)."""

    source: str
    position: str = ""
    delivered: int = 0
    retries: int = 0
    unreadable: int = 0
    last: Delivery | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "position": self.position,
            "delivered": self.delivered,
            "retries": self.retries,
            "unreadable": self.unreadable,
        }


@dataclass
class Callbacks:
    delivered: Callable[[Alert, Summary], None] = lambda alert, summary: None
    idle: Callable[[Summary], None] = lambda summary: None
    warning: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class IncidentDelivery:
    """Send incidents instead of alerts (docs/incidents.md): an Alertmanager webhook body or a
    PagerDuty Events v2 event per incident message (``routing_key``: the PagerDuty
    integration's key). Embedded, the follower groups the alerts it reads itself, with the
    publisher's bounds; on Kafka it follows the (already bounded) incidents topic."""

    payload: Literal["alertmanager", "pagerduty"] = "alertmanager"
    routing_key: str = ""
    interval_s: float = 60.0
    quiet_days: float = 30.0


def incident_request(message: dict[str, Any], delivery: IncidentDelivery) -> tuple[str, bytes]:
    """The idempotency key and body of one incident message (``IncidentMessage.as_json``)."""
    incident = message["incident"]
    key = f"incident:{incident['incident_id']}:{message['sequence']}"
    if delivery.payload == "pagerduty":
        event = {**message["pagerduty"], "routing_key": delivery.routing_key}
        return key, json.dumps(event, sort_keys=True).encode()
    return key, json.dumps(message["alertmanager"], sort_keys=True).encode()


def _deliver_incident(
    client: WebhookClient, message: dict[str, Any], delivery: IncidentDelivery, summary: Summary
) -> None:
    key, body = incident_request(message, delivery)
    try:
        summary.last = client.deliver_body(key, body)
    finally:
        summary.retries = client.failed_attempts
    summary.delivered += 1


def _deliver_one(
    client: WebhookClient, alert: Alert | None, summary: Summary, calls: Callbacks, where: object
) -> None:
    if alert is None:
        calls.warning(f"the record at {where} is not an alert (a torn write?): skipped")
        summary.unreadable += 1
        return
    try:
        summary.last = client.deliver(alert)
    finally:
        summary.retries = client.failed_attempts
    summary.delivered += 1


# -- embedded: tail alerts.jsonl -------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Position:
    """How far ``alerts.jsonl`` was delivered: a byte offset just after a complete line, and
    a fingerprint of the file's first line (a replaced or truncated file is noticed)."""

    offset: int = 0
    head: str | None = None


class FileCursor:
    """``<home>/webhook.<name>.offset``: a small JSON document, 0600, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Position:
        try:
            data = json.loads(self.path.read_text())
            offset, head = data["offset"], data.get("head")
            if not isinstance(offset, int) or offset < 0 or not isinstance(head, str | None):
                raise ValueError("bad fields")
        except FileNotFoundError:
            return Position()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WebhookError(
                f"cannot read the webhook cursor {self.path} ({exc}); delete it to deliver "
                "every alert again (receivers drop duplicates by Idempotency-Key)"
            ) from None
        return Position(offset, head)

    def save(self, position: Position) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"offset": position.offset, "head": position.head}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)


def first_line_fingerprint(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            line = handle.readline()
    except FileNotFoundError:
        return None
    return hashlib.sha256(line).hexdigest()[:32] if line.endswith(b"\n") else None


def parse_alert_line(line: bytes) -> Alert | None:
    """An alert line, or ``None``. A line that a crashed writer left torn is followed, on
    the same line, by the next writer's complete alert: that one is recovered."""
    try:
        return Alert.model_validate_json(line)
    except ValidationError:
        start = line.rfind(_ALERT_START)
        if start > 0:
            with contextlib.suppress(ValidationError):
                return Alert.model_validate_json(line[start:])
        return None


class JsonlSource:
    """The not-yet-delivered complete lines of ``alerts.jsonl``, with the position after
    each; :meth:`advance` records that one was delivered."""

    def __init__(self, alerts: Path, cursor: FileCursor, warn: Callable[[str], None]) -> None:
        self.alerts = alerts
        self.cursor = cursor
        self._warn = warn
        self.position = cursor.load()

    def _validated(self) -> Position:
        """The stored position, or the beginning if the file is not the one it was kept for."""
        position = self.position
        if position.offset == 0:
            return position
        try:
            size = self.alerts.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < position.offset or first_line_fingerprint(self.alerts) != position.head:
            self._warn(
                f"{self.alerts} is not the file the cursor {self.cursor.path.name} was kept "
                "for (it shrank or was replaced): delivering it from the beginning"
            )
            position = Position()
            self.cursor.save(position)
            self.position = position
        return position

    def pending(self) -> Iterator[tuple[Alert | None, Position]]:
        position = self._validated()
        try:
            handle: IO[bytes] = self.alerts.open("rb")
        except FileNotFoundError:
            return
        with handle:
            handle.seek(position.offset)
            head = position.head
            while True:
                line = handle.readline()
                if not line.endswith(b"\n"):  # end of file, or a writer is mid-line
                    return
                if position.offset == 0:
                    head = hashlib.sha256(line).hexdigest()[:32]
                position = Position(position.offset + len(line), head)
                if not line.strip():
                    continue
                yield parse_alert_line(line), position

    def advance(self, position: Position) -> None:
        self.cursor.save(position)
        self.position = position

    def describe(self) -> str:
        return f"byte {self.position.offset} of {self.alerts.name}"


class FollowerLock:
    """One follower per cursor: an exclusive ``flock`` on ``<home>/webhook.<name>.lock``."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._handle: IO[str] | None = os.fdopen(fd, "r+")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            self._handle = None
            raise WebhookError(
                f"a webhook follower with this name is already running ({holder}); "
                "stop it, or give this one another --name"
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"pid {os.getpid()}\n")
        self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def run_embedded(
    home: Path,
    name: str,
    client: WebhookClient,
    summary: Summary,
    *,
    follow: bool,
    poll_s: float = 1.0,
    callbacks: Callbacks | None = None,
    incidents: IncidentDelivery | None = None,
) -> Summary:
    """Deliver ``<home>/alerts.jsonl`` from the cursor on; with ``follow`` keep waiting for
    more until ``client.stop`` is set. Never takes the home's writer lock. With
    ``incidents``, the alerts read are grouped into incident messages instead."""
    calls = callbacks or Callbacks()
    check_name(name)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FollowerLock(home / f"webhook.{name}.lock")
    try:
        cursor = FileCursor(home / f"webhook.{name}.offset")
        source = JsonlSource(home / "alerts.jsonl", cursor, calls.warning)
        summary.position = source.describe()
        if incidents is not None:
            return _embedded_incidents(source, client, summary, incidents, follow, poll_s)
        idle_reported = False
        while not client.stop.is_set():
            progressed = False
            for alert, position in source.pending():
                if client.stop.is_set():
                    break
                _deliver_one(
                    client,
                    alert,
                    summary,
                    calls,
                    where=f"{source.alerts.name} byte {position.offset}",
                )
                source.advance(position)
                summary.position = source.describe()
                if alert is not None:
                    calls.delivered(alert, summary)
                progressed = True
            if not follow:
                break
            if progressed:  # more may have come meanwhile: look again at once
                idle_reported = False
                continue
            if not idle_reported:
                calls.idle(summary)
                idle_reported = True
            client.stop.wait(poll_s)
        return summary
    except Stopped:
        return summary
    finally:
        lock.release()


def _embedded_incidents(
    source: JsonlSource,
    client: WebhookClient,
    summary: Summary,
    delivery: IncidentDelivery,
    follow: bool,
    poll_s: float,
) -> Summary:
    """What the follower reads since its cursor is one unit; the cursor advances after the
    unit's incident messages are delivered (a crash in between sends them again)."""
    from runtime.incident_publisher import IncidentMessage, IncidentPublisher

    def post(messages: Sequence[IncidentMessage]) -> None:
        for message in messages:
            _deliver_incident(client, message.as_json(), delivery, summary)

    publisher = IncidentPublisher(
        post, interval=delivery.interval_s, quiet_period=timedelta(days=delivery.quiet_days)
    )
    try:
        while not client.stop.is_set():
            unit = list(source.pending())
            alerts = [alert for alert, _ in unit if alert is not None]
            summary.unreadable += len(unit) - len(alerts)
            if alerts:
                publisher.observe(alerts)
            else:
                publisher.tick()
            if unit:
                source.advance(unit[-1][1])
                summary.position = source.describe()
                continue
            if not follow:
                break
            client.stop.wait(poll_s)
        publisher.close()
    except Stopped:
        pass
    return summary


# -- Kafka: the alerts topic in a consumer group ---------------------------------------------
def kafka_group_id(name: str) -> str:
    return f"lineage-webhook.{check_name(name)}"


def run_kafka(
    settings: Settings,
    name: str,
    client: WebhookClient,
    summary: Summary,
    *,
    follow: bool,
    poll_s: float = 1.0,
    callbacks: Callbacks | None = None,
    incidents: IncidentDelivery | None = None,
) -> Summary:
    """Deliver the alerts topic from the group's committed offsets (a new group starts at the
    beginning), committing each record after its POST; ``follow`` keeps consuming. With
    ``incidents``: the incidents topic (its own group), one payload per incident message."""
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    from streams.kafka_log import ensure_topics, warn_if_slow_crc

    calls = callbacks or Callbacks()
    warn_if_slow_crc()
    ensure_topics(settings)
    topic = settings.alerts_topic if incidents is None else settings.incidents_topic
    group = kafka_group_id(name) + ("" if incidents is None else ".incidents")
    try:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.require_kafka(),
            client_id="lineage-webhook",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=100,
        )
    except KafkaError as exc:
        raise StoreError(f"cannot consume {topic}: {exc}") from exc
    summary.position = f"group {group}"
    idle_reported = False
    try:
        while not client.stop.is_set():
            batches = consumer.poll(timeout_ms=int(poll_s * 1000))
            for tp, record in ((tp, r) for tp, records in batches.items() for r in records):
                if client.stop.is_set():
                    return summary
                where = f"{tp.topic}:{tp.partition}:{record.offset}"
                alert = None
                if incidents is None:
                    alert = parse_alert_line(record.value or b"")
                    _deliver_one(client, alert, summary, calls, where=where)
                else:
                    _deliver_incident(client, json.loads(record.value), incidents, summary)
                try:
                    consumer.commit(
                        {tp: OffsetAndMetadata(record.offset + 1, "", record.leader_epoch)}
                    )
                except CommitFailedError:
                    # The group moved on while the endpoint was down (a rebalance): the
                    # records since the last commit come again. At least once.
                    calls.warning(
                        "the consumer group rebalanced during the delivery; alerts since the "
                        "last commit will be delivered again"
                    )
                    break
                summary.position = f"group {group}, {where} delivered"
                if alert is not None:
                    calls.delivered(alert, summary)
            if batches:
                idle_reported = False
                continue
            if _caught_up(consumer):
                if not follow:
                    return summary
                if not idle_reported:
                    calls.idle(summary)
                    idle_reported = True
        return summary
    except Stopped:
        return summary
    except KafkaError as exc:
        raise StoreError(f"consuming {topic} failed: {exc}") from exc
    finally:
        consumer.close()


def _caught_up(consumer: Any) -> bool:
    assigned = consumer.assignment()
    if not assigned:
        return False
    ends = consumer.end_offsets(list(assigned))
    return all(consumer.position(tp) >= ends[tp] for tp in assigned)
