"""The worker's adaptive batches: big while behind, closed at once when caught up.

A fake consumer holds a backlog and reports its high watermark and position the way
kafka-python does (both are the *next* offset); each poll hands out at most one fetch's worth.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from streams.projector import BATCH_WINDOW_S, MAX_BATCH, MIN_BATCH, BatchSizer, poll_batch

TP = ("events", 0)


@dataclass
class Record:
    offset: int
    value: bytes = b"{}"


class BacklogConsumer:
    """``backlog`` records waiting at the broker, ``fetch`` of them per poll at most."""

    def __init__(self, backlog: int, fetch: int = 2_000) -> None:
        self.records = [Record(n) for n in range(backlog)]
        self.next = 0
        self.fetch = fetch
        self.polls = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        self.polls += 1
        taken = self.records[self.next : self.next + min(max_records, self.fetch)]
        self.next += len(taken)
        if not taken:
            time.sleep(timeout_ms / 1000)
            return {}
        return {TP: taken}

    def assignment(self) -> set[Any]:
        return {TP}

    def highwater(self, tp: Any) -> int:
        return len(self.records)

    def position(self, tp: Any) -> int:
        return self.next


def test_the_target_doubles_while_batches_fill_and_halves_when_they_do_not() -> None:
    sizer = BatchSizer(minimum=500, maximum=4_000)
    targets = []
    for size, full in [(500, True), (1_000, True), (2_000, True), (4_000, True), (4_000, True),
                       (10, False), (10, False), (10, False), (10, False)]:  # fmt: skip
        sizer.update(size, full)
        targets.append(sizer.target)
    assert targets == [1_000, 2_000, 4_000, 4_000, 4_000, 2_000, 1_000, 500, 500]


def test_a_backlog_is_read_in_growing_batches_up_to_the_maximum() -> None:
    consumer = BacklogConsumer(backlog=40_000)
    sizer, stop = BatchSizer(), threading.Event()
    sizes = []
    while batch := poll_batch(consumer, stop, sizer):
        sizes.append(len(batch))
    assert sizes[:5] == [MIN_BATCH, 2 * MIN_BATCH, 4 * MIN_BATCH, 8 * MIN_BATCH, MAX_BATCH]
    assert set(sizes[4:-1]) == {MAX_BATCH} and sum(sizes) == 40_000
    assert [r.offset for r in consumer.records] == list(range(40_000))


def test_an_idle_worker_closes_a_batch_after_the_poll_that_caught_up() -> None:
    """One event arrives: it is handed over at once, without waiting for the batch window."""
    consumer = BacklogConsumer(backlog=1)
    started = time.monotonic()
    batch = poll_batch(consumer, threading.Event(), BatchSizer())
    assert [r.offset for r in batch] == [0]
    assert consumer.polls == 1 and time.monotonic() - started < BATCH_WINDOW_S


def test_a_batch_closes_at_the_byte_bound() -> None:
    """Listed flows are large records: bytes bound a batch where counts do not."""
    consumer = BacklogConsumer(backlog=100, fetch=10)
    for record in consumer.records:
        record.value = b"x" * (1 << 20)  # 1 MiB each
    batch = poll_batch(consumer, threading.Event(), BatchSizer())
    assert len(batch) == 10  # one fetch of 10 MiB passes the 8 MiB bound: the batch closes
