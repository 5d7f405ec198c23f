"""The projector's topics, named by settings (defaults in :mod:`runtime.settings`).

Every topic carries raw bytes: events are validated by the agent itself (so a malformed
message is dead-lettered with a reason instead of crashing a codec), alerts are the
:class:`lineage.alerts.Alert` JSON wire format, dead letters are the original bytes.
"""

from __future__ import annotations

#: Headers of a dead letter (the worker's and :class:`streams.kafka_log.KafkaEventLog`'s).
REASON_HEADER = "reason"
ORIGIN_HEADER = "origin"
#: On a dead letter cut to ``DEADLETTER_MAX_BYTES``: the original size in bytes (decimal).
TRUNCATED_HEADER = "truncated"
#: On the events topic, a flow or use sent in parts (streams.kafka_log.fit_message): "i/n".
PART_HEADER = "lineage-part"
#: Kafka's default limit on one record batch (broker ``message.max.bytes``, producer
#: ``max_request_size``): 1 MiB.
KAFKA_MESSAGE_MAX_BYTES = 1 << 20
#: A dead letter keeps at most this many bytes of the rejected input, leaving room under
#: ``KAFKA_MESSAGE_MAX_BYTES`` for the key, the headers and the batch framing.
DEADLETTER_MAX_BYTES = 900 * 1024
