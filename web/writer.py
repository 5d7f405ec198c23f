"""The home's one writer: RunEvents queue up and are recorded in units (group commit).

The event loop never touches the store. Each request's body goes into a bounded queue with a
future; one thread owns the ``LineageService`` (SQLite connections stay on the thread that
opened them) and takes whatever is queued, up to ``max_unit`` bodies, as one unit: one
``ingest_unit`` (one transaction embedded, one produce with Kafka). While a unit commits the
next one gathers, so the more clients post at once the larger the units, with no waiting
when one client posts alone. A full queue is backpressure: ``submit`` raises ``BusyError`` and the
request is answered 503 with ``Retry-After`` (never a reset connection). ``call`` queues other
writes (an officer's acknowledge or resolve) on the same thread, in order with the units.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lineage.errors import LineageError
from runtime.service import IngestReport, LineageService
from web.metrics import Metrics

#: Queued RunEvents beyond which requests are refused (503): a bound on memory and on latency.
QUEUE_CAPACITY = 1_000
#: RunEvents per unit at most: a unit stays one small transaction.
MAX_UNIT = 64
ORIGIN = "serve"
T = TypeVar("T")


class BusyError(Exception):
    """The queue is full: answer 503 with Retry-After."""


@dataclass(frozen=True)
class Outcome:
    """A body's report, or ``error`` when its unit failed (nothing of it recorded)."""

    report: IngestReport | None
    unit_alerts: int = 0
    error: str | None = None


@dataclass
class _Request:
    body: bytes
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop
    queued: float = field(default_factory=time.monotonic)


@dataclass
class _Call:
    """A write other than a RunEvent, run with the writer's service between units."""

    fn: Callable[[LineageService], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class UnitWriter:
    def __init__(
        self,
        open_service: Callable[[], LineageService],
        metrics: Metrics,
        capacity: int = QUEUE_CAPACITY,
        max_unit: int = MAX_UNIT,
    ) -> None:
        self._open = open_service
        self._metrics = metrics
        self._max_unit = max_unit
        self._queue: queue.Queue[_Request | _Call | None] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._run, name="lineage-writer", daemon=True)
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._received = 0  # bodies taken, numbering the dead letters serve:1, serve:2, ...
        metrics.watch_queue(self._queue.qsize)

    def start(self) -> None:
        """Open the service on the writer thread; re-raise here what opening it raised."""
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed

    def submit(self, body: bytes) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        request = _Request(body, loop.create_future(), loop)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise BusyError from None
        return request.future

    def call(self, fn: Callable[[LineageService], T]) -> asyncio.Future[T]:
        """Run ``fn`` on the writer's thread with its service; the future has its result or
        its exception. ``BusyError`` when the queue is full."""
        loop = asyncio.get_running_loop()
        request = _Call(fn, loop.create_future(), loop)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise BusyError from None
        return request.future

    def depth(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        """Record what is queued, then close the service (the home's lock goes with it)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            service = self._open()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stopping = False
            while not stopping:
                unit: list[_Request] = []
                first = self._queue.get()
                if first is None:
                    break
                if isinstance(first, _Call):
                    _run_call(service, first)
                    continue
                unit.append(first)
                call: _Call | None = None
                while len(unit) < self._max_unit:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    if isinstance(more, _Call):  # after the unit queued before it
                        call = more
                        break
                    unit.append(more)
                self._commit(service, unit)
                if call is not None:
                    _run_call(service, call)
        finally:
            service.close()

    def _commit(self, service: LineageService, unit: list[_Request]) -> None:
        first = self._received + 1
        self._received += len(unit)
        started = time.monotonic()
        try:
            reports, alerts = service.ingest_unit(
                [r.body for r in unit], ORIGIN, first, "openlineage"
            )
        except LineageError as exc:
            for request in unit:
                _resolve(request, Outcome(None, error=str(exc)))
            return
        except Exception as exc:  # a bug: answer 500 and say so on stderr; the writer goes on
            traceback.print_exc()
            for request in unit:
                _resolve(request, Outcome(None, error=f"internal error: {type(exc).__name__}"))
            return
        self._metrics.unit_seconds.observe(time.monotonic() - started)
        self._metrics.unit_size.observe(len(unit))
        self._metrics.count_alerts(alerts)
        for request, report in zip(unit, reports, strict=True):
            self._metrics.events.labels("accepted").inc(report.accepted)
            self._metrics.events.labels("duplicate").inc(report.duplicates)
            self._metrics.dead_letters.inc(len(report.rejected))
            _resolve(request, Outcome(report, unit_alerts=len(alerts)))


def _resolve(request: _Request, outcome: Outcome) -> None:
    def settle() -> None:
        if not request.future.done():  # the client may have gone (cancelled)
            request.future.set_result(outcome)

    request.loop.call_soon_threadsafe(settle)


def _run_call(service: LineageService, call: _Call) -> None:
    try:
        result = call.fn(service)
    except Exception as exc:  # the caller's to answer (a LineageError is a 503, a bug a 500)
        if not isinstance(exc, LineageError):
            traceback.print_exc()
        error = exc

        def fail() -> None:
            if not call.future.done():
                call.future.set_exception(error)

        call.loop.call_soon_threadsafe(fail)
        return

    def settle() -> None:
        if not call.future.done():
            call.future.set_result(result)

    call.loop.call_soon_threadsafe(settle)
