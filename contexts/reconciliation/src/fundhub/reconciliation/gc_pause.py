"""The cyclic garbage collector paused while a statement is read.

A parse makes millions of objects (each line's values, its ``StatementLine``) and no reference
cycle; with the collector on, every few thousand allocations it walks the young objects and
every so often all of them, which was more than half the time of reading a million lines.
Reference counting still frees everything; the collector's state is restored afterwards (it
stays on if another thread wanted it on).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
