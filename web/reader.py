"""Reads for the API and the console, on one thread of their own with a read-only service.

A reader takes no lock and writes nothing (``LineageService.open(writer=False)``), so it runs
beside the writer as ``lineage trace`` does beside ``lineage serve``; SQLite connections stay
on the thread that opened them, hence one thread. Reads wait for each other, never for a unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from runtime.service import LineageService

T = TypeVar("T")


class Reader:
    def __init__(self, open_service: Callable[[], LineageService]) -> None:
        self._open = open_service
        self._service: LineageService | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lineage-reader")

    async def run(self, read: Callable[[LineageService], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(self._call, read))

    def _call(self, read: Callable[[LineageService], T]) -> T:
        if self._service is None:
            self._service = self._open()
        return read(self._service)

    def close(self) -> None:
        def shut() -> None:
            if self._service is not None:
                self._service.close()
                self._service = None

        self._executor.submit(shut).result()
        self._executor.shutdown()
