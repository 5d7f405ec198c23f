"""``lineage serve``: the OpenLineage HTTP transport, so ``openlineage-python`` emits unchanged.

The official client POSTs one RunEvent as JSON to ``<url>/api/v1/lineage`` (``HttpConfig``'s
default ``endpoint``), optionally gzip-compressed (``Content-Encoding: gzip``) and with
``Authorization: Bearer <api key>`` (auth type ``api_key``); any 2xx is success. Each body goes
through the service's ingest as one OpenLineage line, so validation, dead-lettering, batching,
the log and alerts work as for ``lineage ingest``: 200 with the counts when accepted, 400 with
the reason when rejected (and dead-lettered).

Requests are served one at a time, each on its own connection (HTTP/1.0): the embedded home
has one writer and this process is it while it runs, and SQLite connections stay on the
thread that opened them. A client that stalls is cut off after ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import hmac
import json
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from lineage.errors import LineageError
from lineage.inbound import MAX_LINE_BYTES
from runtime.service import LineageService

#: The path ``openlineage-python``'s HttpTransport posts to by default.
ENDPOINT = "/api/v1/lineage"
REQUEST_TIMEOUT_S = 30.0


class _RejectedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class OpenLineageServer(HTTPServer):
    """An HTTP server feeding ``service`` (opened as the home's writer)."""

    def __init__(
        self, service: LineageService, host: str, port: int, api_key: str | None = None
    ) -> None:
        self.service = service
        self.api_key = api_key
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: OpenLineageServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "lineage-openlineage"

    def do_POST(self) -> None:
        try:
            if self.path.split("?", 1)[0].rstrip("/") != ENDPOINT:
                raise _RejectedError(404, f"POST RunEvents to {ENDPOINT}")
            self._authorize()
            body = self._body()
            report = self.server.service.ingest(
                [body], origin="serve", input_format="openlineage", keep_alerts=False
            )
        except _RejectedError as exc:
            self._answer(exc.status, {"error": exc.reason})
            return
        except LineageError as exc:
            self._answer(503, {"error": str(exc)})
            return
        if report.rejected:
            self._answer(400, {"error": report.rejected[0].reason})
            return
        self._answer(
            200,
            {
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "alerts": report.alerts_raised,
            },
        )

    def do_GET(self) -> None:
        self._answer(405, {"error": f"POST RunEvents to {ENDPOINT}"})

    def _authorize(self) -> None:
        expected = self.server.api_key
        if expected is None:
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise _RejectedError(401, "missing or wrong Authorization: Bearer <api key>")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise _RejectedError(411, "send a Content-Length (chunked bodies are not read)")
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            raise _RejectedError(411, "send a Content-Length")
        length = int(length_header)
        if length > MAX_LINE_BYTES:
            raise _RejectedError(413, f"a RunEvent is at most {MAX_LINE_BYTES:,} bytes")
        content_type = self.headers.get("Content-Type", "application/json")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise _RejectedError(415, "Content-Type must be application/json")
        body = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding == "gzip":
            return _gunzip(body)
        if encoding != "identity":
            raise _RejectedError(415, "Content-Encoding must be gzip or none")
        return body

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the service's report is the record (a request line holds nothing useful)."""


def _gunzip(body: bytes) -> bytes:
    """At most ``MAX_LINE_BYTES`` decompressed: a small gzip bomb is one clean rejection."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_LINE_BYTES + 1)
    except zlib.error:
        raise _RejectedError(400, "Content-Encoding gzip, but the body is not gzip data") from None
    if len(data) > MAX_LINE_BYTES:
        raise _RejectedError(413, f"a RunEvent is at most {MAX_LINE_BYTES:,} bytes uncompressed")
    return data
