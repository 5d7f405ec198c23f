"""``lineage serve``: the OpenLineage HTTP endpoint, the read API and the officers' console
(docs/service.md).

The official ``openlineage-python`` client, configured with ``HttpTransport`` and this URL,
emits to it unchanged. The process is the home's writer while it runs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from cli.output import fail
from lineage.errors import LineageError

# runtime.service and the web app load inside the command: a fast --help.


def serve(
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one")] = 5000,
    api_key_env: Annotated[
        str,
        typer.Option(
            "--api-key-env",
            help="environment variable holding an API key; when it is set, ingest requests "
            "need Authorization: Bearer <key> (the client's auth type api_key)",
        ),
    ] = "LINEAGE_SERVE_API_KEY",
    read_token_env: Annotated[
        str,
        typer.Option(
            "--read-token-env",
            help="environment variable holding the read token; when it is set, the read API "
            "needs Authorization: Bearer <token> (the console asks for it)",
        ),
    ] = "LINEAGE_READ_TOKEN",
    queue_size: Annotated[
        int, typer.Option(min=1, help="RunEvents waiting for the writer before 503")
    ] = 1_000,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Serve OpenLineage ingest (POST /api/v1/lineage), the read API and the console (/)."""
    from runtime.settings import load_settings
    from runtime.sinks import AlertSink, JsonlFileSink, StreamSink
    from web.app import ENDPOINT, Keys
    from web.serve import Serving, bind

    keys = Keys(os.environ.get(api_key_env) or None, os.environ.get(read_token_env) or None)
    try:
        settings = load_settings()
    except LineageError as exc:
        raise fail(str(exc)) from None

    def sinks() -> list[AlertSink]:
        found: list[AlertSink] = [StreamSink(sys.stdout, as_json)]
        if settings.log_kind == "local":
            found.insert(0, JsonlFileSink(settings.home / "alerts.jsonl"))
        return found

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        serving = Serving(settings, sinks, keys, sock, queue_size)
    except LineageError as exc:
        sock.close()
        raise fail(str(exc)) from None
    url = f"{serving.url}{ENDPOINT}"
    if as_json:
        print(
            json.dumps({"listening": url, "auth": keys.ingest is not None,
                        "read_auth": keys.read is not None, "console": serving.url + "/"}),
            flush=True,
        )  # fmt: skip
    else:
        auth = " (Bearer API key required)" if keys.ingest else ""
        print(f"listening on {url}{auth}", flush=True)
    serving.run()


def register(app: typer.Typer) -> None:
    """Adds the serve command to ``app`` (heavy imports stay inside the command)."""
    app.command()(serve)
