"""The faust engine's pieces that need no broker: what reaches ``Partitions.handle`` (a run
from the position, without a hole), what faust's messages become, the test hooks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from streams.faust_processor import (
    FailureHook,
    Record,
    applied,
    behind_positions,
    contiguous,
    record_of,
)
from streams.projector import part_header
from streams.topics import PART_HEADER


def _records(*offsets: int) -> list[Record]:
    return [Record("events", 0, o, None, b"{}", []) for o in offsets]


def _offsets(records: list[Record]) -> list[int]:
    return [r.offset for r in records]


def test_a_run_starts_at_the_position_and_skips_what_was_applied() -> None:
    run, hole = contiguous(_records(3, 4, 5, 6, 7), 5)
    assert _offsets(run) == [5, 6, 7]
    assert hole is None


def test_a_run_stops_at_a_hole_and_names_the_record_past_it() -> None:
    run, hole = contiguous(_records(5, 6, 9, 10), 5)
    assert _offsets(run) == [5, 6]
    assert hole is not None and hole.offset == 9


def test_records_fetched_past_the_position_are_no_run() -> None:
    """A stale fetch (a hint ahead of the state): nothing is applied from it."""
    run, hole = contiguous(_records(20, 21), 5)
    assert run == []
    assert hole is not None and hole.offset == 20


def test_repeats_and_disorder_give_one_ordered_run() -> None:
    run, hole = contiguous(_records(6, 5, 6, 7, 5), 5)
    assert _offsets(run) == [5, 6, 7]
    assert hole is None


def test_a_faust_message_reads_like_a_kafka_record() -> None:
    message = SimpleNamespace(
        topic="events",
        partition=2,
        offset=41,
        key=b"k",
        value=b"v",
        headers=[(PART_HEADER, b"1/3")],
    )
    record = record_of(message)
    assert (record.topic, record.partition, record.offset) == ("events", 2, 41)
    assert (record.key, record.value) == (b"k", b"v")
    assert part_header(record) == b"1/3"
    as_dict = record_of(SimpleNamespace(**{**vars(message), "headers": {PART_HEADER: b"2/3"}}))
    assert part_header(as_dict) == b"2/3"
    assert part_header(record_of(SimpleNamespace(**{**vars(message), "headers": None}))) is None


def test_only_messages_below_their_partitions_position_are_acked() -> None:
    partitions: Any = SimpleNamespace(stores={0: SimpleNamespace(position=10)})
    assert applied(partitions, SimpleNamespace(partition=0, offset=9))
    assert not applied(partitions, SimpleNamespace(partition=0, offset=10))
    assert not applied(partitions, SimpleNamespace(partition=1, offset=0))  # not owned


def test_the_failure_hook_raises_on_the_first_batches_or_every_one() -> None:
    once = FailureHook("1")
    with pytest.raises(RuntimeError):
        once.check(5)
    once.check(5)
    always = FailureHook("all")
    for _ in range(3):
        with pytest.raises(RuntimeError):
            always.check(5)
    after = FailureHook("after:2")
    after.check(5)
    after.check(5)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            after.check(5)
    FailureHook(None).check(5)
    FailureHook(None).escape(5)
    with pytest.raises(RuntimeError):
        FailureHook("uncaught").escape(5)


def test_the_processor_command_offers_both_engines() -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["processor", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--engine" in result.output
    assert "faust" in result.output


def test_the_lag_gauge_counts_past_the_stored_positions() -> None:
    """Highwater minus position per owned partition; one not fetched yet (None) counts 0."""
    highwaters = {0: 120, 1: 40, 2: None}
    consumer = SimpleNamespace(highwater=lambda tp: highwaters[tp.partition])
    stores = {0: SimpleNamespace(position=100), 1: SimpleNamespace(position=40),
              2: SimpleNamespace(position=7)}  # fmt: skip
    partitions: Any = SimpleNamespace(stores=stores)
    assert behind_positions(consumer, "events", partitions) == 20
    stores[1] = SimpleNamespace(position=45)  # a position past the last fetch's watermark
    assert behind_positions(consumer, "events", partitions) == 20
