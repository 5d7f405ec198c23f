"""The ASGI app of ``lineage serve`` (FastAPI on uvicorn): OpenLineage ingest, the read API,
the console and the metrics.

FastAPI rather than bare Starlette: ``/openapi.json`` is generated from the routes and their
parameters, so the schema cannot drift from the code. Ingest reads its body by hand (limits,
gzip, a read deadline) and hands it to the one writer (``web.writer``); the event loop only
moves bytes, so a slow client holds its own connection and nobody else's.
"""

from __future__ import annotations

import asyncio
import hmac
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from lineage.inbound import MAX_LINE_BYTES
from runtime.service import LineageService
from web import api
from web.metrics import CONTENT_TYPE_LATEST, Metrics
from web.reader import Reader
from web.writer import BusyError, UnitWriter

#: The path ``openlineage-python``'s HttpTransport posts to by default.
ENDPOINT = "/api/v1/lineage"
#: A request's body must arrive within this (a client stalling longer gets 408).
READ_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1
STATIC = Path(str(files("web").joinpath("static")))

T = TypeVar("T")
#: Declares the read token in the OpenAPI schema (checked by hand: a missing one is a 401).
BEARER = HTTPBearer(auto_error=False, description="the read token (LINEAGE_READ_TOKEN)")


@dataclass
class Keys:
    """``ingest``: the Bearer key RunEvents need; ``read``: the one reads need. Separate: a
    pipeline's key reads nothing, an officer's token writes nothing. None: not required."""

    ingest: str | None = None
    read: str | None = None


class RejectedError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TraceRequest(BaseModel):
    """The identifier is posted, never put in a URL."""

    identifier: str = Field(min_length=1, max_length=320, description="a phone number or email")
    as_of: str | None = Field(default=None, description="ISO 8601 date or time (naive: UTC)")


class IncidentActionRequest(BaseModel):
    """An officer's acknowledge or resolve: who and why, kept with the event."""

    by: str = Field(min_length=1, max_length=200, description="the officer")
    why: str = Field(min_length=1, max_length=2000, description="the officer's reason")


def _bearer_matches(header: str, expected: str) -> bool:
    return hmac.compare_digest(header.encode(), f"Bearer {expected}".encode())


def create_app(writer: UnitWriter | None, reader: Reader, keys: Keys, metrics: Metrics) -> FastAPI:
    """``writer`` None: a read-only server (no ingest route answers 2xx)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="lineage-tracker",
        summary="Lineage of personal data: OpenLineage ingest, reads, the officers' console",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN: the console works offline, this would not
        redoc_url=None,
    )

    def require_read(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        if keys.read is None:
            return
        if not _bearer_matches(request.headers.get("Authorization", ""), keys.read):
            raise HTTPException(401, "missing or wrong Authorization: Bearer <read token>")

    readable = [Depends(require_read)]

    async def read(fn: Callable[[LineageService], T]) -> T:
        try:
            return await reader.run(fn)
        except api.BadRequestError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # never echo the input: a trace's body holds a raw identifier
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "error": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "fields": fields}, 422)

    # -- ingest ----------------------------------------------------------------------------
    @app.post(
        ENDPOINT,
        summary="Record one OpenLineage RunEvent (the client's HttpTransport)",
        description="JSON, optionally gzip (Content-Encoding), with Authorization: Bearer <api "
        "key> when the server has one. 200 with counts; 400 with the reason (dead-lettered); "
        "503 with Retry-After when the writer's queue is full or the log failed.",
        tags=["ingest"],
        response_model=None,
    )
    async def ingest(request: Request) -> Response:
        try:
            if writer is None:
                raise RejectedError(405, "this server is read-only")
            if keys.ingest is not None and not _bearer_matches(
                request.headers.get("Authorization", ""), keys.ingest
            ):
                raise RejectedError(401, "missing or wrong Authorization: Bearer <api key>")
            body = await _body(request)
            try:
                pending = writer.submit(body)
            except BusyError:
                raise RejectedError(503, "the writer's queue is full: retry later") from None
            outcome = await pending
        except RejectedError as exc:
            metrics.rejected.labels(str(exc.status)).inc()
            headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
            return JSONResponse({"error": exc.reason}, exc.status, headers=headers)
        if outcome.report is None:
            status = 500 if (outcome.error or "").startswith("internal error") else 503
            metrics.rejected.labels(str(status)).inc()
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
            return JSONResponse({"error": outcome.error}, status, headers=headers)
        report = outcome.report
        if report.rejected:
            metrics.rejected.labels("400").inc()
            return JSONResponse({"error": report.rejected[0].reason}, 400)
        return JSONResponse(
            {
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "alerts": outcome.unit_alerts,
            }
        )

    @app.post(
        "/api/v1/incidents/{incident_id}/{action}",
        summary="An officer acknowledges or resolves an incident (an event in the log)",
        description="``action``: acknowledge or resolve; ``incident_id``: the id or a unique "
        "prefix (6+ digits). Authorization: Bearer <api key>, as ingest (a read token writes "
        "nothing). 200 with the incident; 404 when there is none; 503 when the log failed.",
        tags=["ingest"],
    )
    async def post_incident_action(
        request: Request, incident_id: str, action: str, body: IncidentActionRequest
    ) -> dict[str, Any]:
        from lineage.errors import LineageError
        from runtime import incidents as service_incidents

        if writer is None:
            raise HTTPException(405, "this server is read-only")
        if keys.ingest is not None and not _bearer_matches(
            request.headers.get("Authorization", ""), keys.ingest
        ):
            raise HTTPException(401, "missing or wrong Authorization: Bearer <api key>")
        if action not in ("acknowledge", "resolve"):
            raise HTTPException(404, f"no incident action {action!r}: acknowledge or resolve")
        kind: Literal["acknowledge", "resolve"] = (
            "acknowledge" if action == "acknowledge" else "resolve"
        )
        try:
            found = await writer.call(
                lambda s: service_incidents.act(s, incident_id, kind, body.by, body.why)
            )
        except BusyError:
            raise HTTPException(
                503, "the writer's queue is full: retry later", {"Retry-After": str(RETRY_AFTER_S)}
            ) from None
        except LineageError as exc:
            raise HTTPException(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)}) from None
        if found is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return found.as_json()

    # -- reads -----------------------------------------------------------------------------
    @app.get(
        ENDPOINT,
        summary="Lineage of a dataset or job as nodes and edges (Marquez's shape)",
        tags=["read"],
        dependencies=readable,
    )
    async def get_lineage(
        node_id: Annotated[
            str | None,
            Query(
                alias="nodeId",
                description="dataset:<system:name> or job:<name>; omitted: the whole graph",
            ),
        ] = None,
        depth: Annotated[int, Query(description="steps either way")] = 2,
        as_of: Annotated[str | None, Query(description="ISO 8601 date or time")] = None,
    ) -> dict[str, Any]:
        found = await read(lambda s: api.lineage(s, node_id, depth, api.moment(as_of)))
        if found is None:
            raise HTTPException(404, f"no node {node_id}")
        return found

    @app.post(
        "/api/v1/trace",
        summary="Where an identifier went: its trace tree, masked (identifier in the body)",
        tags=["read"],
        dependencies=readable,
    )
    async def post_trace(body: TraceRequest) -> dict[str, Any]:
        return await read(lambda s: api.trace(s, body.identifier, api.moment(body.as_of)))

    @app.get(
        "/api/v1/queries/{name}",
        summary="An officer's query: paths, blast-radius, affected, collections, erasure-gaps",
        tags=["read"],
        dependencies=readable,
    )
    async def get_query(
        name: str,
        target: Annotated[str | None, Query(description="blast-radius: a dataset or job")] = None,
        as_of: Annotated[str | None, Query(description="ISO 8601 date or time")] = None,
        limit: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict[str, Any]:
        found = await read(lambda s: api.query(s, name, target, api.moment(as_of), limit))
        if found is None:
            raise HTTPException(404, f"no dataset or job {target}")
        return found

    @app.get(
        "/api/v1/report",
        summary="The audit report as JSON (lineage report --format json)",
        tags=["read"],
        dependencies=readable,
    )
    async def get_report(
        as_of: Annotated[str | None, Query(description="ISO 8601 date or time")] = None,
        since: Annotated[str | None, Query(description="violations from this time")] = None,
        until: Annotated[str | None, Query(description="violations before this time")] = None,
    ) -> dict[str, Any]:
        return await read(
            lambda s: api.report(
                s, api.moment(as_of), api.moment(since, "since"), api.moment(until, "until")
            )
        )

    @app.get(
        "/api/v1/alerts",
        summary="Active alerts, with their evidence",
        tags=["read"],
        dependencies=readable,
    )
    async def get_alerts(
        as_of: Annotated[str | None, Query(description="ISO 8601 date or time")] = None,
        limit: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict[str, Any]:
        return await read(lambda s: api.alerts(s, api.moment(as_of), limit))

    # -- metrics and the console -----------------------------------------------------------
    @app.get("/metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _body(request: Request) -> bytes:
    """The RunEvent's bytes, checked as the HTTP/1.0 server did, read within the deadline."""
    headers = request.headers
    if headers.get("Transfer-Encoding"):
        raise RejectedError(411, "send a Content-Length (chunked bodies are not read)")
    length_header = headers.get("Content-Length")
    if length_header is None or not length_header.strip().isdigit():
        raise RejectedError(411, "send a Content-Length")
    length = int(length_header)
    if length > MAX_LINE_BYTES:
        raise RejectedError(413, f"a RunEvent is at most {MAX_LINE_BYTES:,} bytes")
    content_type = headers.get("Content-Type", "application/json")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise RejectedError(415, "Content-Type must be application/json")
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity"):
        raise RejectedError(415, "Content-Encoding must be gzip or none")
    try:
        body = await asyncio.wait_for(_read(request), READ_TIMEOUT_S)
    except TimeoutError:
        raise RejectedError(408, f"the body did not arrive within {READ_TIMEOUT_S:.0f} s") from None
    return _gunzip(body) if encoding == "gzip" else body


async def _read(request: Request) -> bytes:
    chunks: list[bytes] = []
    async for chunk in request.stream():
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes) -> bytes:
    """At most ``MAX_LINE_BYTES`` decompressed: a small gzip bomb is one clean rejection."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_LINE_BYTES + 1)
    except zlib.error:
        raise RejectedError(400, "Content-Encoding gzip, but the body is not gzip data") from None
    if len(data) > MAX_LINE_BYTES:
        raise RejectedError(413, f"a RunEvent is at most {MAX_LINE_BYTES:,} bytes uncompressed")
    return data
