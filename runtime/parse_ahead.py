"""Normalize identifiers on the second core, a few blocks of lines ahead of the parse.

Normalizing phone numbers and emails (``phonenumbers``, ``email-validator``) is most of what
parsing costs, and the values of a line do not depend on anything before it. So while the
main process parses and projects one block, a helper process reads the next ones, normalizes
and hashes the identifiers they name, and sends back only (category, raw, ref, display)
tuples, which the main process puts in its pseudonymizer's memo. Whole events are not sent
back: pickling them costs about what parsing them does.

It only ever saves work. The main process parses every line itself and never waits for the
helper: a block whose answer has not arrived is parsed as before, and if the helper dies,
ingest goes on without it. Short inputs (one block) never start it. It reads blocks ahead, so
it is for input that is all there (a file, a list), not for a live stream on stdin.

The helper is ``python -m runtime.parse_ahead`` on pipes, not ``multiprocessing``: nothing of
the caller's ``__main__`` is re-imported, the key travels on its stdin (never in ``ps``), and
it ends at end of input, which is also what it sees when the ingest is killed.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from queue import SimpleQueue
from typing import IO, Any, TypeVar

from lineage.errors import LineageError
from lineage.identifiers import Pseudonymizer
from lineage.inbound import raw_identifiers

L = TypeVar("L", bound=str | bytes)

#: ``LINEAGE_PARSE_AHEAD=0`` parses in one process (e.g. where a second core is not free).
ENABLED = os.environ.get("LINEAGE_PARSE_AHEAD", "1") != "0"
#: Lines per block handed to the helper, and blocks kept in flight ahead of the parse.
BLOCK_LINES = 2_000
BLOCKS_AHEAD = 4

Learned = list[tuple[str, str, str, str | None]]


def normalize_block(pseudonymizer: Pseudonymizer, lines: Iterable[str | bytes]) -> Learned:
    """The identifiers a block names, normalized and hashed (in the helper process)."""
    learned: Learned = []
    for line in lines:
        for category, raw in raw_identifiers(line):
            try:
                found = pseudonymizer.identifier(category, raw)
            except (LineageError, ValueError):
                continue  # the main process rejects it with its reason
            learned.append((category, raw, found.ref, found.display))
    return learned


class _Helper:
    """The helper process and the two threads that keep the main one from waiting on pipes."""

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self.answers: dict[int, Learned] = {}
        self._outbox: SimpleQueue[list[Any] | None] = SimpleQueue()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "runtime.parse_ahead"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self._process.stdin is not None and self._process.stdout is not None
        pickle.dump(pseudonymizer.fresh(), self._process.stdin)
        threading.Thread(target=self._send, args=(self._process.stdin,), daemon=True).start()
        threading.Thread(target=self._receive, args=(self._process.stdout,), daemon=True).start()

    def submit(self, block: list[Any]) -> None:
        self._outbox.put(block)

    def _send(self, pipe: IO[bytes]) -> None:
        try:
            while (block := self._outbox.get()) is not None:
                pickle.dump(block, pipe)
                pipe.flush()
            pipe.close()
        except OSError:
            pass  # the helper is gone: the main process parses without it

    def _receive(self, pipe: IO[bytes]) -> None:
        number = 0
        try:
            while True:
                self.answers[number] = pickle.load(pipe)
                number += 1
        except (EOFError, OSError, pickle.UnpicklingError):
            pass

    def close(self) -> None:
        self._outbox.put(None)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def parse_ahead(lines: Iterable[L], pseudonymizer: Pseudonymizer, enabled: bool) -> Iterator[L]:
    """``lines``, unchanged and in order; meanwhile the identifiers they name reach
    ``pseudonymizer``'s memo from a helper process, ahead of the parse."""
    source = iter(lines)
    if not enabled:
        yield from source
        return
    count = 0
    for count, line in enumerate(islice(source, BLOCK_LINES), start=1):  # noqa: B007
        yield line
    if count < BLOCK_LINES:
        return
    try:
        helper = _Helper(pseudonymizer)
    except OSError:
        yield from source
        return
    ahead: deque[tuple[int, list[L]]] = deque()
    submitted = 0
    try:
        while True:
            while len(ahead) < BLOCKS_AHEAD:
                block = list(islice(source, BLOCK_LINES))
                if not block:
                    break
                helper.submit(block)
                ahead.append((submitted, block))
                submitted += 1
            if not ahead:
                return
            number, block = ahead.popleft()
            for category, raw, ref, display in helper.answers.pop(number, ()):
                pseudonymizer.learn(category, raw, ref, display)  # type: ignore[arg-type]
            for late in [n for n in list(helper.answers) if n < number]:
                del helper.answers[late]  # arrived after its block was parsed: not needed
            yield from block
    finally:
        helper.close()


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    pseudonymizer = pickle.load(stdin)
    try:
        while True:
            pickle.dump(normalize_block(pseudonymizer, pickle.load(stdin)), stdout)
            stdout.flush()
    except (EOFError, BrokenPipeError):
        pass


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
