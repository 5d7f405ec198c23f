"""The projector's consumer-group settings.

faust no longer runs the worker: faust-streaming's ``take_events`` acks a batch in a
``finally``, so a batch whose agent raised or was cancelled at shutdown was committed
unapplied. The worker is now a kafka-python consumer loop with manual commits
(:mod:`streams.projector`); what stays here is what its group is called and how fast a dead
member is noticed.
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
