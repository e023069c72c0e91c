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
from collections.abc import AsyncIterator

import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.payout_load import PayoutLoad

from e2e.conftest import wait_until
from e2e.outages import RetryingBank, assert_all_alive, assert_settled_once
from e2e.test_payouts_flow import QUIET, PayoutStack, clearing_total, payouts  # noqa: F401
from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.cli.devstack import Infra, KafkaNode

pytestmark = pytest.mark.slow

OUTAGE_S = 8.0
# While the broker is away a request's audit entry waits at most FUNDHUB_KAFKA_PUBLISH_TIMEOUT_S
# (5 s) for its send, queued at most behind one other send: then the answer is a 503. A request
# is answered within twice that, with a second to spare, or it hangs.
ANSWER_BOUND_S = 11.0


@pytest.fixture(scope="module")
def env(owned_env: ModuleEnv) -> ModuleEnv:
    return owned_env


@pytest.fixture
async def broker(owned_infra_handle: Infra) -> AsyncIterator[KafkaNode]:
    """The run's own broker; started again after the test whatever happened in it."""
    node = owned_infra_handle.kafka
    assert node is not None
    yield node
    await asyncio.to_thread(node.start)


async def test_broker_restart_never_acknowledges_what_is_not_durable(
    payouts: PayoutStack,  # noqa: F811
    broker: KafkaNode,
) -> None:
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
    bank = RetryingBank(payouts.http)
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
    assert_all_alive(payouts)


async def test_payouts_and_their_callbacks_ride_out_a_broker_restart(
    payouts: PayoutStack,  # noqa: F811
    broker: KafkaNode,
) -> None:
    """Payouts submitted before, during and after the broker's restart: each is accepted once
    (a 503 while the broker is away, then the same payout when sent again), reaches its final
    state (the bank's results that could not be delivered meanwhile are fetched by polling),
    and its callback reaches the client once per final state."""
    await payouts.bank_behaviour(**{**QUIET, "failRate": 0.2})
    payers = [f"62229911000000{i:02d}" for i in range(4)]
    await payouts.fund(dict.fromkeys(payers, 5_000_000))
    clearing_before = await clearing_total(payouts.env.pool)
    load = PayoutLoad(payouts.http, payouts.key_id, payouts.secret, payers, payouts.receiver.url)
    load.start()
    try:

        async def flowing() -> bool:
            return len(load.accepted) >= 40

        await wait_until(flowing, timeout_s=30)
        stopping_at = time.monotonic()
        await asyncio.to_thread(broker.stop)
        stopped_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        restarting_at = time.monotonic()
        await asyncio.to_thread(broker.start)
        restarted_at = time.monotonic()
        await asyncio.sleep(5.0)  # and payouts go on arriving after it
    finally:
        await load.stop()
    assert load.unexpected == []

    before = load.sent_between(0, stopping_at)
    during = load.sent_between(stopped_at, restarting_at)
    after = load.sent_between(restarted_at, time.monotonic())
    assert before and during and after, (len(before), len(during), len(after))
    assert set(load.first_sent) == set(load.accepted)

    # While the broker was away: refused as unavailable (the answer's audit entry could not be
    # made durable), promptly; never a success, never another refusal.
    away = [t for t in load.tries if t.sent_at >= stopped_at and t.answered_at <= restarting_at]
    assert away, "no payout was sent while the broker was down"
    assert {(t.status, t.error_code) for t in away} == {(503, "E013_UNAVAILABLE")}
    slow = sorted((t for t in load.tries if t.seconds >= ANSWER_BOUND_S), key=lambda t: t.sent_at)
    assert slow == [], [
        f"{t.seconds:.1f}s: {t.status} {t.error_code}, sent {t.sent_at - stopped_at:+.1f}s "
        f"after the stop ({restarting_at - stopped_at:.1f}s down, up {restarted_at - stopped_at:.1f}s)"
        for t in slow[:8]
    ]

    # One payout per requestId, whatever the number of tries.
    pay_ids = list(load.accepted.values())
    assert len(set(pay_ids)) == len(pay_ids)
    stored = await payouts.env.pool.fetchval(
        "SELECT count(*) FROM payouts WHERE request_id = ANY($1::text[])", list(load.accepted)
    )
    assert stored == len(pay_ids)

    states = await assert_settled_once(payouts, pay_ids, payers, clearing_before)
    assert states["SUCCESS"] > 0 and states["FAILED"] > 0, states
    assert_all_alive(payouts)
    await asyncio.gather(*(s.wait_ready(timeout_s=30) for s in payouts.services))
