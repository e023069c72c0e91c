"""'No change anywhere', checked: every table's content and every topic's end offsets, before
and after a request. A refused request may leave only its own record (the nonce it used, the
rate limit it counted, its audit entry); anything else that moved is a change it made."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fundhub.common.topics import topics
from support.env import ModuleEnv
from support.kafka import end_offsets

# The request's own record, which every answered request leaves: not an effect of it.
REQUEST_RECORDS = frozenset(
    {"api_nonces", "rate_limit_buckets", "api_key_rate_limits", "audit_log", "audit_head"}
)


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, tuple[int, str]]  # table -> (rows, md5 of its rows in order)
    topics: dict[str, int]  # topic -> messages ever written

    def changes(self, later: Snapshot) -> list[str]:
        """What differs in ``later``: tables and topics, by name."""
        moved = [t for t in self.tables if self.tables[t] != later.tables.get(t)]
        moved += [f"topic {t}" for t in self.topics if self.topics[t] != later.topics.get(t)]
        return moved


async def _tables(env: ModuleEnv, skip: Iterable[str]) -> dict[str, tuple[int, str]]:
    names = [
        r["tablename"]
        for r in await env.pool.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        if r["tablename"] not in skip and not r["tablename"].startswith("audit_log")
    ]
    out = {}
    async with env.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        for name in names:
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text),"
                f" '')) AS h FROM \"{name}\" t"
            )
            assert row is not None
            out[name] = (row["n"], row["h"])
    return out


async def _offsets(env: ModuleEnv, skip: Iterable[str]) -> dict[str, int]:
    names = [t for t in topics(env.settings).all() if t not in set(skip)]
    ends = await end_offsets(env.settings, *names)
    out = dict.fromkeys(names, 0)
    for tp, end in ends.items():
        out[tp.topic] += end
    return out


async def snapshot(env: ModuleEnv) -> Snapshot:
    """Every table but the requests' own records; every topic but the audit's."""
    audit = topics(env.settings).audit
    return Snapshot(await _tables(env, REQUEST_RECORDS), await _offsets(env, [audit]))
