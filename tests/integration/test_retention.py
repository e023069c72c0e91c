"""Retention against real Postgres: inside its window an id still refuses its duplicate, past it
the id is gone; published outbox rows go, unpublished ones stay; a purge takes one bounded
batch through the time index, never a scan of the table; api_nonces live only as long as the
signature window can accept their request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from support.env import ModuleEnv

from fundhub.access.store import purge_nonces, take_nonce
from fundhub.common import inbox
from fundhub.common.retention import (
    PURGE_INBOX,
    PURGE_OUTBOX,
    RetentionPolicy,
    purge,
    purge_inbox_batch,
    purge_outbox_batch,
)

DAY_S = 86400.0
WEEK = RetentionPolicy(inbox_window_s=7 * DAY_S, outbox_keep_s=3600.0, batch=1000)


async def _claim(env: ModuleEnv, consumer: str, ids: list[str]) -> set[str]:
    async with env.pool.acquire() as conn, conn.transaction():
        return await inbox.claim(conn, consumer, ids)


async def _age_inbox(env: ModuleEnv, consumer: str, message_id: str, days: float) -> None:
    await env.pool.execute(
        "UPDATE inbox SET processed_at = now() - make_interval(secs => $3)"
        " WHERE consumer = $1 AND message_id = $2",
        consumer,
        message_id,
        days * DAY_S,
    )


async def test_a_duplicate_inside_the_window_is_refused_and_an_id_past_it_is_gone(
    env: ModuleEnv,
) -> None:
    consumer = f"retention-{uuid.uuid4().hex[:8]}"
    fresh, inside, past = (f"m-{uuid.uuid4().hex}" for _ in range(3))
    assert await _claim(env, consumer, [fresh, inside, past]) == {fresh, inside, past}
    await _age_inbox(env, consumer, inside, 6.9)
    await _age_inbox(env, consumer, past, 7.1)

    done = await purge(env.pool, WEEK)

    assert done.inbox >= 1
    left = await env.pool.fetch("SELECT message_id FROM inbox WHERE consumer = $1", consumer)
    assert {r["message_id"] for r in left} == {fresh, inside}
    # The same ids delivered again: inside the window refused, past it taken as new.
    assert await _claim(env, consumer, [fresh, inside, past]) == {past}


async def test_a_purge_takes_one_bounded_batch_of_the_oldest_rows(env: ModuleEnv) -> None:
    consumer = f"retention-{uuid.uuid4().hex[:8]}"
    await env.pool.execute(
        "INSERT INTO inbox (consumer, message_id, processed_at)"
        " SELECT $1, 'old-' || g, now() - interval '30 days' + g * interval '1 second'"
        " FROM generate_series(1, 2500) g",
        consumer,
    )
    n, last = await purge_inbox_batch(env.pool, WEEK.inbox_window_s, 1000)
    assert n == 1000
    remaining = await env.pool.fetchval(
        "SELECT message_id FROM inbox WHERE consumer = $1 ORDER BY processed_at LIMIT 1",
        consumer,
    )
    assert remaining == "old-1001"  # the oldest went first
    # The next batch starts where this one ended; one from the old end finds the same rows.
    assert (await purge_inbox_batch(env.pool, WEEK.inbox_window_s, 1000, last))[0] == 1000
    assert (await purge_inbox_batch(env.pool, WEEK.inbox_window_s, 1000))[0] == 500
    assert (await purge_inbox_batch(env.pool, WEEK.inbox_window_s, 1000))[0] == 0


async def test_the_purges_walk_the_time_indexes_not_the_tables(env: ModuleEnv) -> None:
    """With a large history of which little is old, the plan reads the index from its old
    end: the cost of a pass is its batch, not the table."""
    consumer = f"retention-{uuid.uuid4().hex[:8]}"
    await env.pool.execute(
        "INSERT INTO inbox (consumer, message_id, processed_at)"
        " SELECT $1, 'h-' || g, now() - make_interval(secs => g % 864000)"
        " FROM generate_series(1, 200000) g",
        consumer,
    )
    await env.pool.execute(
        "INSERT INTO outbox (topic, key, payload, published_at)"
        " SELECT 'retention.test', NULL, '\\x00', now() - make_interval(secs => g % 86400)"
        " FROM generate_series(1, 200000) g"
    )
    await env.pool.execute("ANALYZE inbox")
    await env.pool.execute("ANALYZE outbox")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for statement, index in (
        (PURGE_INBOX, "inbox_processed_at"),
        (PURGE_OUTBOX, "outbox_published_at"),
    ):
        rows = await env.pool.fetch(f"EXPLAIN {statement}", 7 * DAY_S, 5000, epoch)
        plan = "\n".join(r[0] for r in rows)
        assert index in plan, plan
        assert "Seq Scan" not in plan, plan
    await env.pool.execute("DELETE FROM outbox WHERE topic = 'retention.test'")


async def test_published_outbox_rows_go_after_their_hour_and_unpublished_ones_never(
    env: ModuleEnv,
) -> None:
    topic = f"retention.{uuid.uuid4().hex[:8]}"
    await env.pool.execute(
        "INSERT INTO outbox (topic, key, payload, created_at, published_at) VALUES"
        " ($1, 'published-long-ago', '\\x00', now() - interval '2 days',"
        "  now() - interval '2 hours'),"
        " ($1, 'published-just-now', '\\x00', now() - interval '2 days', now()),"
        " ($1, 'never-published', '\\x00', now() - interval '30 days', NULL)",
        topic,
    )
    while (await purge_outbox_batch(env.pool, WEEK.outbox_keep_s, WEEK.batch))[0] == WEEK.batch:
        pass
    left = await env.pool.fetch("SELECT key FROM outbox WHERE topic = $1", topic)
    assert {r["key"] for r in left} == {"published-just-now", "never-published"}


async def test_api_nonces_live_only_as_long_as_the_signature_window(env: ModuleEnv) -> None:
    """The gateway purges nonces older than twice the ±tolerance: a request that old is refused
    by its timestamp, so its nonce can never be needed again."""
    key_id = f"k-{uuid.uuid4().hex[:8]}"
    window_s = float(env.settings.api_timestamp_tolerance_s * 2)
    inside, past = f"n-{uuid.uuid4().hex}", f"n-{uuid.uuid4().hex}"
    assert await take_nonce(env.pool, key_id, inside)
    assert await take_nonce(env.pool, key_id, past)
    for nonce, age_s in ((inside, window_s - 60), (past, window_s + 60)):
        await env.pool.execute(
            "UPDATE api_nonces SET seen_at = now() - make_interval(secs => $3)"
            " WHERE key_id = $1 AND nonce = $2",
            key_id,
            nonce,
            age_s,
        )
    assert await purge_nonces(env.pool, window_s) >= 1
    assert not await take_nonce(env.pool, key_id, inside)  # still a replay
    seen = await env.pool.fetch("SELECT nonce FROM api_nonces WHERE key_id = $1", key_id)
    assert {r["nonce"] for r in seen} == {inside}
