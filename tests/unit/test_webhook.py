"""The webhook's pieces: signing, the file cursor, tailing alerts.jsonl, retry classification.

Classification runs against a real ``http.server`` on 127.0.0.1 answering a scripted sequence
of statuses (no HTTP mocks); the end-to-end run through an outage is
tests/integration/test_webhook_delivery.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.alerts import Alert, EvidenceStep
from lineage.errors import ConfigurationError
from runtime.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    FileCursor,
    FollowerLock,
    JsonlSource,
    Position,
    RetryNotice,
    Stopped,
    Summary,
    WebhookClient,
    WebhookError,
    WebhookRefusedError,
    check_name,
    check_url,
    default_name,
    first_line_fingerprint,
    idempotency_key,
    parse_alert_line,
    redact,
    run_embedded,
    secret_from_env,
    sign,
    signed_content,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"unit-webhook-secret-0123456789"


def _alert(number: int, revision: int = 0) -> Alert:
    at = datetime(2014, 1, 1, tzinfo=UTC)
    return Alert(
        alert_id=f"{number:032x}",
        revision=revision,
        rule="security-to-ads",
        severity="high",
        identifier="f" * 64,
        category="email",
        display="u***@example.net",
        origin_dataset="auth:contact_points",
        origin_purpose="essential.service.security",
        use_dataset="ads:matchable_identifiers",
        use_job="tailored-audiences-matcher",
        use_purpose="marketing.advertising.third_party.targeted",
        occurred_at=at,
        evidence=[EvidenceStep(kind="collected", event_id=f"c-{number}", at=at, dataset="a:b")],
    )


def _line(alert: Alert) -> bytes:
    return alert.model_dump_json().encode() + b"\n"


# -- signing ---------------------------------------------------------------------------------
def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"alert_id":"x"}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signed_content(1700000000, body) == b"1700000000." + body
    assert sign(SECRET, 1700000000, body) == f"sha256={expected}"


def test_verify_accepts_the_signature_and_nothing_tampered_or_old() -> None:
    body, moment = b'{"alert_id":"x","revision":0}', 1700000000
    signature = sign(SECRET, moment, body)
    assert verify(SECRET, str(moment), signature, body, now=moment + 10)
    assert not verify(b"another-secret-0123456789", str(moment), signature, body, now=moment)
    assert not verify(SECRET, str(moment), signature, body + b" ", now=moment)
    assert not verify(SECRET, str(moment + 1), signature, body, now=moment)  # timestamp signed
    assert not verify(SECRET, str(moment), signature, body, now=moment + 301)  # a replay
    assert not verify(SECRET, str(moment), signature, body, now=moment - 301)
    assert not verify(SECRET, None, signature, body, now=moment)
    assert not verify(SECRET, str(moment), None, body, now=moment)
    assert not verify(SECRET, "17e8", signature, body, now=moment)
    assert not verify(SECRET, str(moment), signature.replace("sha256=", "sha1="), body, now=moment)


def test_idempotency_key_is_alert_id_and_revision() -> None:
    assert idempotency_key(_alert(7, revision=3)) == f"{7:032x}:3"


def test_secret_comes_from_the_environment_and_is_long_enough() -> None:
    assert secret_from_env("S", {"S": "x" * 16}) == b"x" * 16
    with pytest.raises(ConfigurationError, match="S is not set"):
        secret_from_env("S", {})
    with pytest.raises(ConfigurationError, match="shorter than 16 bytes"):
        secret_from_env("S", {"S": "short"})


def test_urls_names_and_redaction() -> None:
    check_url("https://hooks.example.com/x")
    bad_urls = ("ftp://example.com/", "https:///path", "example.com/x", "http://h:99999/")
    for bad in (*bad_urls, "http://[::1/x"):
        with pytest.raises(ConfigurationError):
            check_url(bad)
    assert redact("https://user:pw@hooks.example.com:8443/a/b?token=s3cret") == (
        "https://hooks.example.com:8443/a/b?…"
    )
    name = default_name("https://hooks.example.com/a?token=1")
    assert check_name(name) == name and name.startswith("hooks.example.com-")
    assert default_name("https://hooks.example.com/a?token=2") != name
    for bad in ("", "../x", "a/b", "-x", "x" * 65):
        with pytest.raises(ConfigurationError):
            check_name(bad)


# -- the cursor ------------------------------------------------------------------------------
def test_cursor_round_trips_privately_and_atomically(tmp_path: Path) -> None:
    cursor = FileCursor(tmp_path / "webhook.x.offset")
    assert cursor.load() == Position()
    cursor.save(Position(1234, "abc"))
    assert cursor.load() == Position(1234, "abc")
    assert cursor.path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["webhook.x.offset"]  # no temp left
    cursor.path.write_text("{not json")
    with pytest.raises(WebhookError, match="delete it"):
        cursor.load()
    cursor.path.write_text('{"offset": -1, "head": null}')
    with pytest.raises(WebhookError):
        cursor.load()


def _source(tmp_path: Path, warnings: list[str] | None = None) -> JsonlSource:
    sink = warnings if warnings is not None else []
    return JsonlSource(
        tmp_path / "alerts.jsonl", FileCursor(tmp_path / "webhook.t.offset"), sink.append
    )


def test_tail_yields_complete_lines_only_and_resumes_after_the_cursor(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    source = _source(tmp_path)
    assert list(source.pending()) == []  # no file yet
    alerts.write_bytes(_line(_alert(1)) + _line(_alert(2)) + _line(_alert(3))[:40])
    pending = list(source.pending())
    assert [a.alert_id for a, _ in pending if a] == [f"{1:032x}", f"{2:032x}"]
    assert pending[-1][1].offset == len(_line(_alert(1)) + _line(_alert(2)))
    source.advance(pending[0][1])  # the first one was delivered, then the process died
    with alerts.open("ab") as handle:  # the writer finishes its line
        handle.write(_line(_alert(3))[40:])
    again = _source(tmp_path)
    assert again.position == pending[0][1]
    rest = list(again.pending())
    assert [a.alert_id for a, _ in rest if a] == [f"{2:032x}", f"{3:032x}"]
    assert rest[-1][1].offset == alerts.stat().st_size
    assert rest[-1][1].head == first_line_fingerprint(alerts)


def test_a_replaced_or_truncated_file_is_delivered_from_the_beginning(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(_line(_alert(1)) + _line(_alert(2)))
    source = _source(tmp_path)
    *_, (_, end) = source.pending()
    source.advance(end)
    assert list(source.pending()) == []
    alerts.write_bytes(_line(_alert(5)) + _line(_alert(6)) + _line(_alert(7)))  # longer, new
    warnings: list[str] = []
    replaced = _source(tmp_path, warnings)
    assert [a.alert_id for a, _ in replaced.pending() if a] == [f"{n:032x}" for n in (5, 6, 7)]
    assert warnings and "from the beginning" in warnings[0]
    *_, (_, end) = replaced.pending()
    replaced.advance(end)
    alerts.write_bytes(_line(_alert(5)))  # truncated
    assert [a.alert_id for a, _ in _source(tmp_path).pending() if a] == [f"{5:032x}"]


def test_torn_lines_blank_lines_and_garbage(tmp_path: Path) -> None:
    torn = _line(_alert(1))[:50].rstrip(b"\n") + _line(_alert(2))  # a crash mid-line, then 2
    (tmp_path / "alerts.jsonl").write_bytes(torn + b"\n" + b"garbage\n" + _line(_alert(3)))
    got = [a.alert_id if a else None for a, _ in _source(tmp_path).pending()]
    assert got == [f"{2:032x}", None, f"{3:032x}"]
    assert parse_alert_line(b"{}") is None


def test_one_follower_per_name(tmp_path: Path) -> None:
    lock = FollowerLock(tmp_path / "webhook.t.lock")
    with pytest.raises(WebhookError, match="already running"):
        FollowerLock(tmp_path / "webhook.t.lock")
    lock.release()
    FollowerLock(tmp_path / "webhook.t.lock").release()


# -- retry classification against a real local server ----------------------------------------
class Script:
    """Answers POSTs with the scripted statuses in order (then 200), recording keys."""

    def __init__(self, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        self.statuses = statuses
        self.headers = headers or {}
        self.keys: list[str | None] = []
        self.bodies: list[bytes] = []
        self.verified: list[bool] = []
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization)


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            script.keys.append(self.headers.get(IDEMPOTENCY_HEADER))
            script.bodies.append(body)
            script.requests.append((self.path, self.headers.get("Authorization")))
            script.verified.append(
                verify(
                    SECRET,
                    self.headers.get(TIMESTAMP_HEADER),
                    self.headers.get(SIGNATURE_HEADER),
                    body,
                )
            )
            status = script.statuses.pop(0) if script.statuses else 200
            self.send_response(status)
            if status >= 300:
                for name, value in script.headers.items():
                    self.send_header(name, value)
            payload = b"go away" if status >= 300 else b""
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _client(
    url: str, notices: list[RetryNotice] | None = None, max_backoff_s: float = 0.05
) -> WebhookClient:
    sink = notices if notices is not None else []
    return WebhookClient(
        url, SECRET, timeout_s=5.0, max_backoff_s=max_backoff_s, on_retry=sink.append
    )


def test_transient_answers_are_retried_until_accepted(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    script.statuses[:] = [503, 429, 408, 500]
    script.headers = {"Retry-After": "0"}
    notices: list[RetryNotice] = []
    delivery = _client(url, notices).deliver(_alert(1, revision=2))
    assert (delivery.status, delivery.attempts, delivery.key) == (200, 5, f"{1:032x}:2")
    assert script.keys == [f"{1:032x}:2"] * 5 and all(script.verified)
    assert [n.attempt for n in notices] == [1, 2, 3, 4]
    assert "HTTP 503" in notices[0].failure and all(n.wait_s <= 0.05 for n in notices)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301, 302, 307])
def test_other_answers_are_permanent_refusals(endpoint: tuple[str, Script], status: int) -> None:
    url, script = endpoint
    script.statuses[:] = [status]
    script.headers = {"Location": "http://127.0.0.1:9/elsewhere"}
    with pytest.raises(WebhookRefusedError) as refused:
        _client(url).deliver(_alert(1))
    assert refused.value.status == status and refused.value.key == f"{1:032x}:0"
    assert script.keys == [f"{1:032x}:0"]  # one attempt, no redirect followed
    if status >= 400:
        assert refused.value.excerpt == "go away"


def test_an_endpoint_that_is_not_listening_is_retried_until_stopped() -> None:
    import socket

    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notices: list[RetryNotice] = []
    client = _client(f"http://127.0.0.1:{port}/", notices)
    original = client._sleep

    def counting_sleep(seconds: float) -> None:
        if len(notices) >= 3:
            client.stop.set()
        original(seconds)

    client._sleep = counting_sleep  # type: ignore[method-assign]
    with pytest.raises(Stopped):
        client.deliver(_alert(1))
    assert len(notices) == 3 and "refused" in notices[0].failure.lower()
    assert client.failed_attempts == 3


def test_retry_after_is_honoured_up_to_the_cap(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    script.statuses[:] = [429]
    script.headers = {"Retry-After": "3600"}
    notices: list[RetryNotice] = []
    _client(url, notices, max_backoff_s=0.2).deliver(_alert(1))
    assert notices[0].wait_s == pytest.approx(0.2)


def test_run_once_delivers_the_backlog_and_keeps_the_cursor(
    tmp_path: Path, endpoint: tuple[str, Script]
) -> None:
    url, script = endpoint
    (tmp_path / "alerts.jsonl").write_bytes(b"".join(_line(_alert(n)) for n in range(5)))
    summary = run_embedded(tmp_path, "t", _client(url), Summary("x"), follow=False)
    assert summary.delivered == 5 and script.keys == [f"{n:032x}:0" for n in range(5)]
    with (tmp_path / "alerts.jsonl").open("ab") as handle:
        handle.write(_line(_alert(1, revision=1)))
    again = run_embedded(tmp_path, "t", _client(url), Summary("x"), follow=False)
    assert again.delivered == 1 and script.keys[-1] == f"{1:032x}:1"


def test_a_refusal_leaves_the_cursor_before_the_refused_alert(
    tmp_path: Path, endpoint: tuple[str, Script]
) -> None:
    url, script = endpoint
    (tmp_path / "alerts.jsonl").write_bytes(b"".join(_line(_alert(n)) for n in range(3)))
    script.statuses[:] = [200, 422]
    with pytest.raises(WebhookRefusedError):
        run_embedded(tmp_path, "t", _client(url), Summary("x"), follow=False)
    assert FileCursor(tmp_path / "webhook.t.offset").load().offset == len(_line(_alert(0)))
    summary = run_embedded(tmp_path, "t", _client(url), Summary("x"), follow=False)
    assert summary.delivered == 2 and script.keys[-2:] == [f"{1:032x}:0", f"{2:032x}:0"]


# -- the command -----------------------------------------------------------------------------
def test_the_command_needs_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    monkeypatch.setenv("LINEAGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LINEAGE_WEBHOOK_SECRET", raising=False)
    result = CliRunner().invoke(app, ["webhook", "http://127.0.0.1:9/hook"])
    assert result.exit_code == 2
    assert "LINEAGE_WEBHOOK_SECRET is not set" in result.output


def test_the_command_delivers_then_reports_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: tuple[str, Script]
) -> None:
    from cli.main import app

    url, script = endpoint
    home = tmp_path / "home"
    home.mkdir()
    (home / "alerts.jsonl").write_bytes(b"".join(_line(_alert(n)) for n in range(3)))
    monkeypatch.setenv("LINEAGE_HOME", str(home))
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    script.statuses[:] = [200, 410]
    command = ["webhook", url, "--secret-env", "HOOK_SECRET", "--name", "t", "--send", "alerts",
               "--json"]  # fmt: skip
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 1
    lines = [json.loads(line) for line in refused.stdout.splitlines()]
    assert lines[0]["delivered"] == f"{0:032x}:0"
    assert lines[1] == {
        "refused": f"{1:032x}:0",
        "status": 410,
        "reason": "Gone",
        "body": "go away",
    }
    assert lines[2]["summary"]["delivered"] == 1
    assert "refused alert" in refused.stderr and "permanent refusal" in refused.stderr
    done = CliRunner().invoke(app, command[:-1])  # the receiver is fixed: the rest goes
    assert done.exit_code == 0, done.output
    assert "delivered 2 alert revision(s)" in done.stdout
    assert script.keys == [f"{n:032x}:0" for n in (0, 1, 1, 2)]


def test_importing_the_command_loads_nothing_heavy() -> None:
    code = (
        "import sys, cli.webhook_commands; "
        "print(' '.join(m for m in ('pydantic', 'tenacity', 'runtime.webhook', "
        "'runtime.settings', 'kafka') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == []


def test_credentials_in_the_url_become_basic_auth(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    with_credentials = url.replace("http://", "http://hook%40user:p%3Ass@") + "?token=t"
    _client(with_credentials).deliver(_alert(1))
    assert script.requests == [("/hook?token=t", "Basic aG9va0B1c2VyOnA6c3M=")]  # hook@user:p:ss
    assert "p%3Ass" not in redact(with_credentials)


def test_the_webhook_sends_incidents_by_default(
    endpoint: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many alerts of one (origin, route, use): one Alertmanager body, keyed by the incident;
    the next run sends nothing new; ``--send pagerduty`` sends an Events v2 trigger."""
    from cli.main import app

    url, script = endpoint
    home = tmp_path / "home"
    home.mkdir()
    (home / "alerts.jsonl").write_bytes(b"".join(_line(_alert(n)) for n in range(25)))
    monkeypatch.setenv("LINEAGE_HOME", str(home))
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    command = ["webhook", url, "--secret-env", "HOOK_SECRET", "--name", "inc"]
    done = CliRunner().invoke(app, command)
    assert done.exit_code == 0, done.output
    assert len(script.keys) == 1 and str(script.keys[0]).startswith("incident:")
    body = json.loads(script.bodies[0])
    assert (body["version"], body["status"], len(body["alerts"])) == ("4", "firing", 1)
    assert body["alerts"][0]["annotations"]["alerts"] == "25"
    assert all(script.verified)
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and len(script.keys) == 1
    monkeypatch.setenv("PD_KEY", "k" * 32)
    pd = CliRunner().invoke(
        app, [*command[:-1], "pd", "--send", "pagerduty", "--routing-key-env", "PD_KEY"]
    )
    assert pd.exit_code == 0, pd.output
    event = json.loads(script.bodies[-1])
    assert (event["event_action"], event["routing_key"]) == ("trigger", "k" * 32)
    assert event["dedup_key"] == body["alerts"][0]["labels"]["incident_id"]
