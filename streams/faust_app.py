"""The faust App, and nothing else: topics live in :mod:`streams.topics`, the agent in
:mod:`streams.projector`. Built from :class:`Settings` on demand, never at import time.
"""

from __future__ import annotations

import faust

from runtime.settings import Settings

#: Fast failover: a worker that died (SIGKILL, lost host) leaves the consumer group after this
#: long, so its partitions move on in seconds rather than faust's default minute. Heartbeats
#: stay punctual because the agent runs every blocking store call off the event loop.
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0
#: Acked offsets are committed this often; a crash redelivers at most this much (idempotently).
COMMIT_INTERVAL_S = 1.0


def projector_group_id(settings: Settings) -> str:
    """One consumer group per events topic, so a worker for another log (staging, a test)
    never inherits this group's offsets or joins its rebalances. It is also the faust app id."""
    return f"lineage-projector-{settings.events_topic}"


def create_app(settings: Settings) -> faust.App:
    bootstrap = settings.require_kafka()
    settings.home.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return faust.App(
        projector_group_id(settings),
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(settings.home / "faust"),
        autodiscover=False,
        web_enabled=False,
        web_host="127.0.0.1",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_commit_interval=COMMIT_INTERVAL_S,
    )
