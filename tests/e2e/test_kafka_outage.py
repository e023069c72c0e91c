"""The broker stopped and restarted under load (defect 7 of issue 9): `success` only when durable,
nothing lost, nothing doubled, and every service rides it out.

The whole stack runs: gateway, notify-ingest, payment-worker, callback-dispatcher, the bank
simulator and the client's callback receiver. The broker is the run's own (``owned_env``),
never the one the session shares with other modules and other sessions.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from support.ledger import assert_ledger_invariants
from support.payout_load import PayoutLoad

from e2e import outages
from e2e.conftest import wait_until
from e2e.outages import env, restartable  # noqa: F401
from e2e.test_payouts_flow import QUIET, PayoutStack, clearing_total, payouts  # noqa: F401
from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.cli.devstack import Infra

pytestmark = pytest.mark.slow

OUTAGE_S = 6.0
# While the broker is away (or starting) a request's audit entry waits at most
# FUNDHUB_KAFKA_PUBLISH_TIMEOUT_S (5 s) for its send, queued at most behind one other send: then
# the answer is a 503. Twice that, and room for a loaded 2-core machine; a hang is a no-answer.
ANSWER_BOUND_S = 15.0


async def test_broker_restart_never_acknowledges_what_is_not_durable(
    payouts: PayoutStack,  # noqa: F811
    restartable: Infra,  # noqa: F811
) -> None:
    broker = restartable.kafka
    assert broker is not None
    rng = random.Random(11)
    specs = [
        TransferSpec(
            record_id=f"outage-{i}",
            in_acct_no=f"6222002{rng.randint(0, 29):05d}",
            trans_amount=rng.randint(1, 9999),
        )
        for i in range(400)
    ]
    notifications = build_many(specs, payouts.env.app_id, payouts.env.bank.private_pem)
    bank = outages.RetryingBank(payouts.http)
    delivering = asyncio.create_task(
        bank.deliver([(s.record_id, p) for s, p in zip(specs, notifications, strict=True)])
    )

    async def flowing() -> bool:
        return len(bank.acknowledged()) >= 60

    await wait_until(flowing, timeout_s=60)
    await asyncio.to_thread(broker.stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(OUTAGE_S)  # notifications keep arriving while the broker is gone
    restart_at = time.monotonic()
    await asyncio.to_thread(broker.start)
    await delivering

    during = bank.between(stopped_at, restart_at)
    assert during, "no notification arrived while the broker was down"
    assert not any(a.success for a in during), "answered success while Kafka was down"
    assert {a.status for a in during} == {503}, {a.status for a in during}

    assert bank.acknowledged() == {s.record_id for s in specs}
    pool = payouts.env.pool

    async def all_in_ledger() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE 'outage-%'"
        )
        return bool(n == len(specs))

    await wait_until(all_in_ledger, timeout_s=90)
    await asyncio.sleep(1)
    per_record = await pool.fetch(
        "SELECT ref_id, count(*) AS n FROM journal_entries WHERE ref_id LIKE 'outage-%' GROUP BY ref_id"
    )
    assert len(per_record) == len(specs) and all(r["n"] == 1 for r in per_record)
    await assert_ledger_invariants(pool)
    outages.assert_all_alive(payouts)


async def test_payouts_and_their_callbacks_ride_out_a_broker_restart(
    payouts: PayoutStack,  # noqa: F811
    restartable: Infra,  # noqa: F811
) -> None:
    """Payouts submitted before, during and after the broker's restart: each is accepted once
    (a 503 while the broker is away, then the same payout when sent again), reaches its final
    state (the bank's results that could not be delivered meanwhile are fetched by polling),
    and its callback reaches the client once per final state."""
    await payouts.bank_behaviour(**{**QUIET, "failRate": 0.2})
    payers = [f"62229911000000{i:02d}" for i in range(4)]
    await payouts.fund(dict.fromkeys(payers, 5_000_000))
    clearing_before = await clearing_total(payouts.env.pool)
    load = PayoutLoad(
        payouts.gateway.url, payouts.key_id, payouts.secret, payers, payouts.receiver.url
    )
    broker = restartable.kafka
    assert broker is not None

    async def flowing() -> bool:
        return len(load.accepted) >= 40

    outage = await outages.restart_under_load(
        load, broker.stop, broker.start, flowing=flowing, down_s=OUTAGE_S
    )
    pay_ids = await outages.assert_accepted_once(
        payouts, load, outage, ANSWER_BOUND_S, ANSWER_BOUND_S
    )
    states = await outages.assert_settled_once(payouts, pay_ids, payers, clearing_before)
    assert states["SUCCESS"] > 0 and states["FAILED"] > 0, states
    outages.assert_all_alive(payouts)
    await asyncio.gather(*(s.wait_ready(timeout_s=30) for s in payouts.services))
