"""Every service rides out a restart of PostgreSQL (defect 7 of issue 9).

The server itself is stopped (``pg_ctl stop -m fast``: every session ended, every new
connection refused) and started again, under load: payouts with callbacks, and the bank's
transfer notifications. The cluster is the run's own (``owned_env``), on its own port, never
the one the session shares. Gateway, notify-ingest, payment-worker, callback-dispatcher and the
bank simulator all run; none may exit. While the database is away a request is answered at
once, 503 ``E013_UNAVAILABLE``, not left hanging and never a 500; afterwards every payout and
notification settles, once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
from support.env import ModuleEnv
from support.payout_load import PayoutLoad
from support.transfers import assert_credited_once, random_credits, records_with_prefix

from e2e.conftest import wait_until
from e2e.outages import RetryingBank, assert_all_alive, assert_settled_once
from e2e.test_payouts_flow import QUIET, PayoutStack, clearing_total, payouts  # noqa: F401
from fundhub.bank_simulator.notifications import build_many
from fundhub.cli.devstack import Infra, PostgresNode

pytestmark = pytest.mark.slow

OUTAGE_S = 6.0
# A refused connection is known at once: an answer while the database is away takes no longer
# than a normal one on a loaded 2-core machine. Right after the restart every process
# reconnects at once, and an answer may take a few seconds, but never as long as a hang.
AWAY_BOUND_S = 3.0
ANSWER_BOUND_S = 10.0


@pytest.fixture(scope="module")
def env(owned_env: ModuleEnv) -> ModuleEnv:
    return owned_env


@pytest.fixture
async def cluster(owned_infra_handle: Infra) -> AsyncIterator[PostgresNode]:
    """The run's own cluster; started again after the test whatever happened in it."""
    node = owned_infra_handle.postgres
    assert node is not None
    yield node
    await asyncio.to_thread(node.start)


async def test_every_service_rides_out_a_postgres_restart(
    payouts: PayoutStack,  # noqa: F811
    cluster: PostgresNode,
) -> None:
    await payouts.bank_behaviour(**{**QUIET, "failRate": 0.2})
    pool = payouts.env.pool
    payers = [f"62229922000000{i:02d}" for i in range(4)]
    await payouts.fund(dict.fromkeys(payers, 5_000_000))
    clearing_before = await clearing_total(pool)
    accounts = [f"62229923{i:08d}" for i in range(20)]
    specs, owed = random_credits(random.Random(5), "pgout-", 300, accounts, 99_999)
    notifications = build_many(specs, payouts.env.app_id, payouts.env.bank.private_pem)
    bank = RetryingBank(payouts.http)
    load = PayoutLoad(payouts.http, payouts.key_id, payouts.secret, payers, payouts.receiver.url)
    delivering = asyncio.create_task(
        bank.deliver([(s.record_id, p) for s, p in zip(specs, notifications, strict=True)])
    )
    load.start()
    try:

        async def flowing() -> bool:
            applied = await records_with_prefix(pool, "pgout-")
            return len(load.accepted) >= 40 and applied >= 20

        await wait_until(flowing, timeout_s=30)
        stopping_at = time.monotonic()
        await asyncio.to_thread(cluster.stop)
        stopped_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        restarting_at = time.monotonic()
        await asyncio.to_thread(cluster.start)
        restarted_at = time.monotonic()
        await asyncio.sleep(5.0)  # and payouts go on arriving after it
    finally:
        await load.stop()
        await delivering
    assert load.unexpected == [], load.unexpected[:5]

    before = load.sent_between(0, stopping_at)
    during = load.sent_between(stopped_at, restarting_at)
    after = load.sent_between(restarted_at, time.monotonic())
    assert before and during and after, (len(before), len(during), len(after))
    assert set(load.first_sent) == set(load.accepted)

    # While the database was away: unavailable, at once; never a success, a 500 or a 401.
    away = [t for t in load.tries if t.sent_at >= stopped_at and t.answered_at <= restarting_at]
    assert away, "no payout was sent while the database was down"
    assert {(t.status, t.error_code) for t in away} == {(503, "E013_UNAVAILABLE")}
    slow = [t for t in away if t.seconds >= AWAY_BOUND_S]
    slow += [t for t in load.tries if t.seconds >= ANSWER_BOUND_S]
    assert slow == [], [
        f"{t.seconds:.1f}s: {t.status} {t.error_code}, sent {t.sent_at - stopped_at:+.1f}s "
        f"after the stop ({restarting_at - stopped_at:.1f}s down)"
        for t in slow[:8]
    ]
    # The bank's notifications only need Kafka (and the app's key, cached): taken or refused
    # as unavailable, the bank retrying; never anything else.
    bank_away = bank.between(stopped_at, restarting_at)
    assert {a.status for a in bank_away} <= {200, 503}, {(a.status, a.text) for a in bank_away}

    pay_ids = list(load.accepted.values())
    assert len(set(pay_ids)) == len(pay_ids)
    stored = await pool.fetchval(
        "SELECT count(*) FROM payouts WHERE request_id = ANY($1::text[])", list(load.accepted)
    )
    assert stored == len(pay_ids)
    states = await assert_settled_once(payouts, pay_ids, payers, clearing_before)
    assert states["SUCCESS"] > 0 and states["FAILED"] > 0, states

    assert bank.acknowledged() == {s.record_id for s in specs}

    async def all_applied() -> bool:
        return await records_with_prefix(pool, "pgout-") == len(specs)

    await wait_until(all_applied, timeout_s=60)
    await assert_credited_once(pool, "pgout-", len(specs), owed)
    assert_all_alive(payouts)
    await asyncio.gather(*(s.wait_ready(timeout_s=30) for s in payouts.services))
