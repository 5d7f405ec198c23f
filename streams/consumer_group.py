"""The projector's consumer-group settings.

faust no longer runs the worker: faust-streaming's ``take_events`` acks a batch in a
``finally``, so a batch whose agent raised or was cancelled at shutdown was committed
unapplied. The worker is now a kafka-python consumer loop with manual commits
(:mod:`streams.projector`); what stays here is what its group is called and how fast a dead
member is noticed. The partitioned processor can run under faust
(:mod:`streams.faust_processor`): its offset of record is each partition's stored position,
so faust's commits are only hints there.
"""

from __future__ import annotations

from runtime.settings import Settings

#: Fast failover: a worker that died (SIGKILL, lost host) leaves the consumer group after this
#: long, so its partitions move on in seconds rather than a minute. kafka-python heartbeats
#: from a background thread, so a long store call does not count as a dead member.
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0


def projector_group_id(settings: Settings) -> str:
    """One consumer group per events topic, so a worker for another log (staging, a test)
    never inherits this group's offsets or joins its rebalances."""
    return f"lineage-projector-{settings.events_topic}"


def processor_group_id(settings: Settings) -> str:
    """The partitioned processors' group (``lineage processor``): its commits are only hints,
    each partition's position lives with its state."""
    return f"lineage-processor-{settings.events_topic}"


def sink_group_id(settings: Settings) -> str:
    """The served view's sinks (``lineage sink``) on the changes topic."""
    return f"lineage-sink-{settings.changes_topic}"
