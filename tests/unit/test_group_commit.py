"""GroupCommit: batches form while one runs; conflicting items never share one; a failed batch
is retried item by item, so only the item the store refuses fails."""

from __future__ import annotations

import asyncio

import pytest

from fundhub.common.group_commit import GroupCommit


class Store:
    def __init__(self, refuse: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.refuse = refuse or set()
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, batch: list[int]) -> list[str]:
        self.batches.append(list(batch))
        await self.gate.wait()
        if self.refuse & set(batch):
            raise ValueError(f"refused {sorted(self.refuse & set(batch))}")
        return [f"ok-{item}" for item in batch]


def store_and_group(refuse: set[int] | None = None) -> tuple[Store, GroupCommit[int, str]]:
    """A store, and a GroupCommit over it in which an item conflicts only with itself."""
    store = Store(refuse)
    return store, GroupCommit(store.run, conflict_key=lambda i: i)


async def test_a_lone_item_is_written_at_once() -> None:
    store, group = store_and_group()
    assert await group.submit(7) == "ok-7"
    assert store.batches == [[7]]


async def test_items_queued_while_a_batch_runs_go_together() -> None:
    store, group = store_and_group()
    store.gate.clear()
    first = asyncio.ensure_future(group.submit(0))
    await asyncio.sleep(0)  # the writer takes [0] and waits on the gate
    rest = [asyncio.ensure_future(group.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await first == "ok-0"
    assert await asyncio.gather(*rest) == [f"ok-{i}" for i in range(1, 6)]
    assert store.batches == [[0], [1, 2, 3, 4, 5]]


async def test_conflicting_items_and_overflow_wait_for_the_next_batch() -> None:
    store = Store()
    group: GroupCommit[int, str] = GroupCommit(store.run, conflict_key=lambda i: i % 3, max_batch=2)
    results = await asyncio.gather(*(group.submit(i) for i in (0, 3, 1, 4, 2)))
    assert results == ["ok-0", "ok-3", "ok-1", "ok-4", "ok-2"]
    for batch in store.batches:
        assert len(batch) <= 2
        assert len({i % 3 for i in batch}) == len(batch)
    assert sorted(i for batch in store.batches for i in batch) == [0, 1, 2, 3, 4]


async def test_a_refused_item_fails_alone() -> None:
    store, group = store_and_group(refuse={2})
    outcomes = await asyncio.gather(*(group.submit(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0] == "ok-0" and outcomes[1] == "ok-1" and outcomes[3] == "ok-3"
    assert isinstance(outcomes[2], ValueError)
    assert [2] in store.batches  # retried alone after its batch failed


async def test_a_wrong_number_of_results_is_a_failure_not_a_hang() -> None:
    async def short(batch: list[int]) -> list[str]:
        return ["only-one"] if len(batch) > 1 else [f"ok-{batch[0]}"]

    group: GroupCommit[int, str] = GroupCommit(short, conflict_key=lambda i: i)
    results = await asyncio.wait_for(asyncio.gather(*(group.submit(i) for i in range(3))), 5)
    assert sorted(results) == ["ok-0", "ok-1", "ok-2"]


async def test_the_writer_restarts_after_going_idle() -> None:
    store, group = store_and_group()
    assert await group.submit(1) == "ok-1"
    await asyncio.sleep(0)
    assert await group.submit(2) == "ok-2"
    with pytest.raises(ValueError):
        store.refuse = {3}
        await group.submit(3)
    assert await group.submit(4) == "ok-4"


async def test_callers_are_not_left_waiting_when_the_writer_is_cancelled() -> None:
    store, group = store_and_group()
    store.gate.clear()
    waiting = asyncio.ensure_future(group.submit(1))
    await asyncio.sleep(0)
    writer = group._writer
    assert writer is not None
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)
    assert group._writer is None  # the next submission starts a new writer
    store.gate.set()
    assert await group.submit(2) == "ok-2"


async def test_a_writer_cancelled_mid_batch_frees_the_batch_and_the_queue() -> None:
    store, group = store_and_group()
    store.gate.clear()
    in_flight = asyncio.ensure_future(group.submit(1))
    for _ in range(3):
        await asyncio.sleep(0)
    assert store.batches == [[1]]  # the writer runs [1] and waits on the gate
    queued = asyncio.ensure_future(group.submit(2))
    await asyncio.sleep(0)
    assert group._writer is not None
    group._writer.cancel()
    for caller in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 5)
    store.gate.set()
    assert await group.submit(3) == "ok-3"


async def test_runs_are_spaced_by_the_minimum_interval_and_gather_what_came_meanwhile() -> None:
    store = Store()
    group: GroupCommit[int, str] = GroupCommit(
        store.run, conflict_key=lambda i: i, min_interval_s=0.2
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await group.submit(0) == "ok-0"  # the first goes at once
    assert loop.time() - started < 0.1
    second = asyncio.ensure_future(group.submit(1))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(group.submit(i)) for i in range(2, 5)]
    assert await asyncio.gather(second, *rest) == [f"ok-{i}" for i in range(1, 5)]
    assert loop.time() - started >= 0.2  # the interval since the first run's start
    assert store.batches == [[0], [1, 2, 3, 4]]
    await asyncio.sleep(0.25)
    quiet = loop.time()
    assert await group.submit(5) == "ok-5"  # after a quiet spell: at once again
    assert loop.time() - quiet < 0.1


async def test_a_full_batch_does_not_wait_for_the_interval() -> None:
    store = Store()
    group: GroupCommit[int, str] = GroupCommit(
        store.run, conflict_key=lambda i: i, max_batch=3, min_interval_s=10.0
    )
    await group.submit(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.gather(*(group.submit(i) for i in range(1, 4))) == ["ok-1", "ok-2", "ok-3"]
    assert loop.time() - started < 1.0
    assert store.batches == [[0], [1, 2, 3]]


async def test_callers_waiting_out_the_interval_are_freed_when_the_writer_is_cancelled() -> None:
    store = Store()
    group: GroupCommit[int, str] = GroupCommit(
        store.run, conflict_key=lambda i: i, min_interval_s=10.0
    )
    await group.submit(0)
    waiting = asyncio.ensure_future(group.submit(1))
    await asyncio.sleep(0.01)
    assert group._writer is not None
    group._writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
