"""Follow the alerts topic live (``lineage alerts --follow``), with a kafka-python consumer.

No consumer group: every follower sees every alert and commits nothing, so following from a
terminal never steals alerts from, or moves the offsets of, a real downstream consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from pydantic import ValidationError

from lineage.alerts import Alert
from lineage.errors import StoreError
from runtime.settings import Settings
from streams.kafka_log import warn_if_slow_crc

log = logging.getLogger(__name__)


def follow_alerts(
    settings: Settings, from_beginning: bool = False, timeout_s: float | None = None
) -> Iterator[Alert]:
    """Yield alerts as they arrive; ``from_beginning`` replays the topic first. With
    ``timeout_s`` the iteration ends after that long without a new alert, else it never ends.
    The topic may carry an alert twice (at-least-once); callers that count dedupe by alert_id.
    """
    warn_if_slow_crc()
    try:
        consumer = KafkaConsumer(
            settings.alerts_topic,
            bootstrap_servers=settings.require_kafka(),
            client_id="lineage-alerts-follow",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            consumer_timeout_ms=int(timeout_s * 1000) if timeout_s is not None else float("inf"),
        )
    except KafkaError as exc:
        raise StoreError(f"cannot follow {settings.alerts_topic}: {exc}") from exc
    try:
        for message in consumer:
            try:
                yield Alert.model_validate_json(message.value)
            except ValidationError:
                log.warning(
                    "skipped a message that is not an alert at %s:%d:%d",
                    message.topic,
                    message.partition,
                    message.offset,
                )
    except KafkaError as exc:
        raise StoreError(f"following {settings.alerts_topic} failed: {exc}") from exc
    finally:
        consumer.close()
