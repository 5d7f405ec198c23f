"""The projector's topics, named by settings (defaults in :mod:`runtime.settings`).

Every topic carries raw bytes: events are validated by the agent itself (so a malformed
message is dead-lettered with a reason instead of crashing a faust codec), alerts are the
:class:`lineage.alerts.Alert` JSON wire format, dead letters are the original bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from runtime.settings import Settings

#: Headers of a dead letter (the worker's and :class:`streams.kafka_log.KafkaEventLog`'s).
REASON_HEADER = "reason"
ORIGIN_HEADER = "origin"


@dataclass(frozen=True)
class ProjectorTopics:
    events: Any  # faust.TopicT: source of the projector agent
    alerts: Any
    deadletter: Any


def declare_topics(app: faust.App, settings: Settings) -> ProjectorTopics:
    def raw(name: str) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    return ProjectorTopics(
        events=raw(settings.events_topic),
        alerts=raw(settings.alerts_topic),
        deadletter=raw(settings.deadletter_topic),
    )
