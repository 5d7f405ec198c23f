"""``lineage serve``: an OpenLineage HTTP endpoint (docs/openlineage.md).

The official ``openlineage-python`` client, configured with ``HttpTransport`` and this URL,
emits to it unchanged. The process is the home's writer while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Annotated, Any

import typer

from cli.output import fail
from lineage.errors import LineageError

# runtime.service and the server load inside the command: a fast --help.





def serve(
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one")] = 5000,
    api_key_env: Annotated[
        str,
        typer.Option(
            "--api-key-env",
            help="environment variable holding an API key; when it is set, requests need "
            "Authorization: Bearer <key> (the client's auth type api_key)",
        ),
    ] = "LINEAGE_SERVE_API_KEY",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Accept OpenLineage RunEvents over HTTP (POST /api/v1/lineage) until interrupted."""
    from runtime.openlineage_server import ENDPOINT, OpenLineageServer
    from runtime.service import LineageService
    from runtime.settings import load_settings
    from runtime.sinks import AlertSink, JsonlFileSink, StreamSink

    api_key = os.environ.get(api_key_env) or None
    try:
        settings = load_settings()
        sinks: list[AlertSink] = [StreamSink(sys.stdout, as_json)]
        if settings.log_kind == "local":
            sinks.insert(0, JsonlFileSink(settings.home / "alerts.jsonl"))
        service = LineageService.open(settings, sinks)
    except LineageError as exc:
        raise fail(str(exc)) from None
    try:
        try:
            server = OpenLineageServer(service, host, port, api_key)
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

        def stop(*_: Any) -> None:  # shutdown() waits for the loop: not from its own thread
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        url = f"{server.url}{ENDPOINT}"
        if as_json:
            print(json.dumps({"listening": url, "auth": api_key is not None}), flush=True)
        else:
            auth = " (Bearer API key required)" if api_key else ""
            print(f"listening on {url}{auth}", flush=True)
        with server:
            server.serve_forever()
    finally:
        service.close()


def register(app: typer.Typer) -> None:
    """Adds the serve command to ``app`` (heavy imports stay inside the command)."""
    app.command()(serve)
