"""COPY rows made in a worker thread and handed over in batches to the event loop that sends
them: the parse does not stall the caller's loop (the gateway's, the reconciler's), and the
bounded hand-over keeps memory to a few batches whatever the file's size.

The producing thread stops when the consumer goes away (a COPY failed, a task cancelled); an
error in it (a refused file) is raised in the consumer, so COPY is aborted and the caller's
transaction rolls back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fundhub.reconciliation.gc_pause import collector_paused

BATCH = 8192
DEPTH = 4  # batches in flight: ~30,000 rows, a few MB
PROGRESS_EVERY = 50_000
_END = object()


async def threaded_rows(
    rows: Iterator[tuple[Any, ...]], progress: Callable[[int], None] | None = None
) -> AsyncIterator[tuple[Any, ...]]:
    loop = asyncio.get_running_loop()
    handover: asyncio.Queue[Any] = asyncio.Queue()
    room = threading.Semaphore(DEPTH)  # batches the producer may have in flight
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            if room.acquire(timeout=0.2):
                loop.call_soon_threadsafe(handover.put_nowait, item)
                return True
        return False

    def produce() -> None:
        batch: list[tuple[Any, ...]] = []
        try:
            with collector_paused():  # a million small tuples: no collection can free any
                append = batch.append
                for row in rows:
                    append(row)
                    if len(batch) >= BATCH:
                        if not put(batch):
                            return
                        batch = []
                        append = batch.append
                if batch and not put(batch):
                    return
                batch = []
            put(_END)
        except BaseException as exc:  # handed to the consumer after the rows before it
            if batch and not put(batch):
                return
            put(exc)

    worker = threading.Thread(target=produce, name="recon-rows", daemon=True)
    worker.start()
    count = reported = 0
    try:
        while True:
            item = await handover.get()
            room.release()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            count += len(item)
            for row in item:
                yield row
            if progress is not None and count - reported >= PROGRESS_EVERY:
                progress(count)
                reported = count
    finally:
        stop.set()
    if progress is not None:
        progress(count)
