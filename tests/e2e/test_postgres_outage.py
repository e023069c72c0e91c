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

import pytest
from support.payout_load import PayoutLoad
from support.transfers import assert_credited_once, random_credits, records_with_prefix

from e2e import outages
from e2e.conftest import wait_until
from e2e.outages import env, restartable  # noqa: F401
from e2e.test_payouts_flow import QUIET, PayoutStack, clearing_total, payouts  # noqa: F401
from fundhub.bank_simulator.notifications import build_many
from fundhub.cli.devstack import Infra

pytestmark = pytest.mark.slow

OUTAGE_S = 6.0
# A refused connection is known at once: an answer while the database is away takes about as
# long as any (seconds at worst on a loaded 2-core machine). Right after the restart every process
# reconnects at once and an answer may take longer, but never as long as a hang (a no-answer).
AWAY_BOUND_S = 5.0
ANSWER_BOUND_S = 10.0


async def test_every_service_rides_out_a_postgres_restart(
    payouts: PayoutStack,  # noqa: F811
    restartable: Infra,  # noqa: F811
) -> None:
    await payouts.bank_behaviour(**{**QUIET, "failRate": 0.2})
    pool = payouts.env.pool
    payers = [f"62229922000000{i:02d}" for i in range(4)]
    await payouts.fund(dict.fromkeys(payers, 5_000_000))
    clearing_before = await clearing_total(pool)
    accounts = [f"62229923{i:08d}" for i in range(20)]
    specs, owed = random_credits(random.Random(5), "pgout-", 300, accounts, 99_999)
    notifications = build_many(specs, payouts.env.app_id, payouts.env.bank.private_pem)
    bank = outages.RetryingBank(payouts.http)
    load = PayoutLoad(
        payouts.gateway.url, payouts.key_id, payouts.secret, payers, payouts.receiver.url
    )
    cluster = restartable.postgres
    assert cluster is not None
    delivering = asyncio.create_task(
        bank.deliver([(s.record_id, p) for s, p in zip(specs, notifications, strict=True)])
    )

    async def flowing() -> bool:
        applied = await records_with_prefix(pool, "pgout-")
        return len(load.accepted) >= 40 and applied >= 20

    try:
        outage = await outages.restart_under_load(
            load, cluster.stop, cluster.start, flowing=flowing, down_s=OUTAGE_S
        )
    finally:
        await delivering
    pay_ids = await outages.assert_accepted_once(
        payouts, load, outage, AWAY_BOUND_S, ANSWER_BOUND_S
    )
    # The bank's notifications only need Kafka (and the app's key, cached): taken or refused
    # as unavailable, the bank retrying; never anything else.
    bank_away = bank.between(outage.stopped_at, outage.restarting_at)
    assert {a.status for a in bank_away} <= {200, 503}, {(a.status, a.text) for a in bank_away}

    states = await outages.assert_settled_once(payouts, pay_ids, payers, clearing_before)
    assert states["SUCCESS"] > 0 and states["FAILED"] > 0, states

    assert bank.acknowledged() == {s.record_id for s in specs}

    async def all_applied() -> bool:
        return await records_with_prefix(pool, "pgout-") == len(specs)

    await wait_until(all_applied, timeout_s=60)
    await assert_credited_once(pool, "pgout-", len(specs), owed)
    outages.assert_all_alive(payouts)
    await asyncio.gather(*(s.wait_ready(timeout_s=30) for s in payouts.services))
