"""Running the app: the writer and the reader opened, uvicorn on a socket bound beforehand
(so that ``--port 0`` can say which port it got before the first request)."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from runtime.service import LineageService
from runtime.settings import Settings
from runtime.sinks import AlertSink
from web.app import Keys, create_app
from web.metrics import Metrics
from web.reader import Reader
from web.writer import UnitWriter

#: Idle keep-alive connections are closed after this (uvicorn's timeout_keep_alive).
KEEP_ALIVE_S = 15


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM stop serving gracefully, and the command then exits 0 (uvicorn's own
        handler re-raises the signal after shutdown, so the process would die of it)."""
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


class Serving:
    """The open writer and reader, and uvicorn serving the app on ``sock``."""

    def __init__(
        self,
        settings: Settings,
        sinks: Callable[[], list[AlertSink]],
        keys: Keys,
        sock: socket.socket,
        queue_capacity: int | None = None,
    ) -> None:
        self.metrics = Metrics()
        capacity = {} if queue_capacity is None else {"capacity": queue_capacity}
        self.writer = UnitWriter(
            lambda: LineageService.open(settings, sinks()), self.metrics, **capacity
        )
        self.writer.start()  # raises here when the home is another writer's
        self.reader = Reader(lambda: LineageService.open(settings, writer=False))
        self.sock = sock
        app = create_app(self.writer, self.reader, keys, self.metrics)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,  # request lines hold nothing the report does not
            timeout_keep_alive=KEEP_ALIVE_S,
            lifespan="on",
        )
        self.server = _Server(config)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def run(self) -> None:
        """Until SIGINT or SIGTERM (uvicorn's handlers); then the queue drains and closes."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.writer.stop()
        finally:
            self.reader.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
