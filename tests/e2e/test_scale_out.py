"""Scale-out on real engines (issue 12): a three-broker KRaft cluster (topics of replication
factor 3, min.insync.replicas 2), two gateways behind HAProxy, two replicas of every consumer
service of the payout and bank-notification flows. Under a steady load through HAProxy a broker
and one replica of each service are SIGKILLed, then restarted: the partitions' leaders and the
consumer groups' partitions move to the survivors and back, and no money is lost or moved twice.

The cluster is the module's own (``owned_cluster``); the database is on the shared Postgres.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import httpx
import pytest
from aiokafka.errors import KafkaError
from conftest import module_env
from support.env import ModuleEnv
from support.kafka import group_assignments, partition_leaders
from support.ledger import assert_ledger_invariants, balances
from support.load_balancer import LoadBalancer
from support.owned_infra import owned_cluster
from support.payout_load import PayoutLoad
from support.processes import Service, callback_dispatcher, gateway, notify_ingest
from support.receivers import ALLOW_LOCAL_RECEIVERS
from support.transfers import assert_credited_once, random_credits, records_with_prefix

from e2e import outages
from e2e.conftest import wait_until
from e2e.test_payouts_flow import (
    QUIET,
    CallbackReceiver,
    PayoutStack,
    assert_paid_exactly,
    bank_simulator,
    clearing_total,
    payment_worker,
    payout_rows,
)
from fundhub.bank_simulator.notifications import build_many
from fundhub.bank_simulator.sender import BankSender, callback_url
from fundhub.bank_transfers.apply import CONSUMER as INGEST_GROUP
from fundhub.cli.devstack.kafka_cluster import KafkaCluster
from fundhub.common.config import Settings
from fundhub.common.topics import topics
from fundhub.payouts.commands import CONSUMER as COMMANDS_GROUP
from fundhub.payouts.results import CONSUMER as RESULTS_GROUP
from fundhub.webhooks.sender import MAX_IN_FLIGHT
from fundhub.webhooks.store import CONSUMER as DISPATCH_GROUP

pytestmark = pytest.mark.slow

PARTITIONS = 6
GROUPS = (INGEST_GROUP, COMMANDS_GROUP, RESULTS_GROUP, DISPATCH_GROUP)
TRANSFERS = 600
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    began = time.monotonic()
    with owned_cluster(3) as running:
        print(f"\ncluster up in {time.monotonic() - began:.1f}s")
        yield running


@pytest.fixture(scope="module")
async def env(
    infra: Settings,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    cluster: KafkaCluster,
) -> AsyncIterator[ModuleEnv]:
    on_cluster = infra.model_copy(
        update={"kafka_bootstrap": cluster.bootstrap, "topic_replication_factor": 3}
    )
    async with module_env(on_cluster, template_db, tmp_path_factory) as made:
        yield made


@dataclass
class Scaled:
    """The stack, two of each: ``replicas[name]`` are a service's processes."""

    stack: PayoutStack
    lb: LoadBalancer
    replicas: dict[str, list[Service]]


@pytest.fixture(scope="module")
async def scaled(env: ModuleEnv) -> AsyncIterator[Scaled]:
    env.register_bank_app()
    gateways = [gateway(env, **ALLOW_LOCAL_RECEIVERS) for _ in range(2)]
    lb = LoadBalancer(gateways, env.tmp)
    sim = bank_simulator(env, lb.url)
    replicas = {
        "gateway": gateways,
        "notify-ingest": [notify_ingest(env) for _ in range(2)],
        "payment-worker": [payment_worker(env, sim.url, lb.url) for _ in range(2)],
        # A POST's timeout of 2 s: a killed dispatcher's leases (timeout + 30 s) expire sooner.
        "callback-dispatcher": [
            callback_dispatcher(
                env, backoff_base_s=0.2, backoff_max_s=1, timeout_s=2, **ALLOW_LOCAL_RECEIVERS
            )
            for _ in range(2)
        ],
    }
    services = [sim, *(s for group in replicas.values() for s in group)]
    receiver = CallbackReceiver()
    await receiver.start()
    began = time.monotonic()
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready(timeout_s=90) for s in services))
        print(f"\n{len(services)} services up in {time.monotonic() - began:.1f}s")
        lb.start()
        await lb.wait_ready()
        created = json.loads(
            env.cli(
                "api-key", "create", "--name", "scaled", "--scopes",
                "payouts:write,payouts:read", "--accounts", "*", "--json",
            )
        )  # fmt: skip
        key_id, secret = created["keyId"], created["secret"]
        receiver.webhook_secret = created["webhookSecret"]
        async with (
            httpx.AsyncClient(base_url=lb.url, timeout=30) as http,
            aiohttp.ClientSession() as session,
        ):
            sender = BankSender(session, callback_url(lb.url), retries=3, retry_interval_s=0.5)
            stack = PayoutStack(
                env, gateways[0], replicas["payment-worker"][0], sim, http, sender,
                key_id, secret, receiver, services,
            )  # fmt: skip
            yield Scaled(stack, lb, replicas)
    finally:
        lb.stop()
        for service in services:
            service.terminate()
        for service in reversed(services):
            service.stop()
        await receiver.stop()


async def _quietly(asking: Awaitable[T]) -> T | None:
    """An admin request's answer, or None when the cluster could not give one yet (the
    client's bootstrap node, or a group's coordinator, was the broker just killed)."""
    try:
        return await asking
    except (KafkaError, OSError):
        return None


async def _groups_settled(settings: Settings, members: int) -> bool:
    """Each group has ``members`` members and together they hold every partition once."""
    for group in GROUPS:
        held = await _quietly(group_assignments(settings, topics(settings).group(group)))
        if held is None or len(held) != members or any(not h for h in held):
            return False
        every = [tp for h in held for tp in h]
        if len(every) != len(set(every)) or len({p for _, p in every}) != PARTITIONS:
            return False
    return True


async def test_broker_and_replicas_killed_under_load_nothing_lost_or_doubled(
    scaled: Scaled, cluster: KafkaCluster
) -> None:
    stack, env = scaled.stack, scaled.stack.env
    settings, pool = env.settings, env.pool
    started = time.monotonic()
    await stack.bank_behaviour(**{**QUIET, "failRate": 0.1})
    payers = [f"62229933000000{i:02d}" for i in range(4)]
    await stack.fund(dict.fromkeys(payers, 5_000_000))
    clearing_before = await clearing_total(pool)
    assert await _groups_settled(settings, 2), "the replicas did not share the partitions"

    accounts = [f"6222003{i:05d}" for i in range(40)]
    specs, owed = random_credits(random.Random(12), "scale-", TRANSFERS, accounts, 99_999)
    notices = build_many(specs, env.app_id, env.bank.private_pem)
    bank = outages.RetryingBank(stack.http)
    delivering = asyncio.create_task(
        bank.deliver([(s.record_id, n) for s, n in zip(specs, notices, strict=True)])
    )
    load = PayoutLoad(scaled.lb.url, stack.key_id, stack.secret, payers, stack.receiver.url)
    load.start()
    try:

        async def flowing() -> bool:
            return len(load.accepted) >= 20 and len(bank.acknowledged()) >= 50

        try:
            await wait_until(flowing, timeout_s=60)
        except AssertionError:
            statuses = Counter(t.status for t in load.tries)
            answers = Counter(a.status for a in bank.answers)
            raise AssertionError(f"no steady load: payouts {statuses}, notices {answers}") from None

        # The broker leading the most partitions, and the first replica of every service.
        leaders = await partition_leaders(settings)
        victim_id = Counter(leader for leader, _ in leaders.values()).most_common(1)[0][0]
        victim = cluster.nodes[victim_id - 1]
        killed = [group[0] for group in scaled.replicas.values()]
        applied_at_kill = await records_with_prefix(pool, "scale-")
        kill_at = time.monotonic()
        for service in killed:
            service.kill()
        victim.kill()

        async def leaders_moved() -> bool:
            now = await _quietly(partition_leaders(settings))
            return now is not None and all(
                leader not in (victim_id, -1) and victim_id not in isr
                for leader, isr in now.values()
            )

        leader_s = await wait_until(leaders_moved, timeout_s=40, interval_s=0.5)

        async def taken_over() -> bool:
            return await _groups_settled(settings, 1)

        await wait_until(taken_over, timeout_s=40, interval_s=0.5)
        rebalance_s = time.monotonic() - kill_at
        print(
            f"\nleaders moved in {leader_s:.1f}s, the groups' partitions {rebalance_s:.1f}s after the kill"
        )
        assert await records_with_prefix(pool, "scale-") > applied_at_kill, "stalled"

        restart_at = time.monotonic()
        for service in killed:
            service.start()
        await asyncio.gather(
            asyncio.to_thread(victim.start), *(s.wait_ready(timeout_s=90) for s in killed)
        )

        async def whole_again() -> bool:
            now = await _quietly(partition_leaders(settings))
            in_sync = now is not None and all(len(isr) == 3 for _, isr in now.values())
            return in_sync and await _groups_settled(settings, 2)

        rejoin_s = await wait_until(whole_again, timeout_s=60, interval_s=0.5)
        print(
            f"whole again {rejoin_s:.1f}s after the restart, at {time.monotonic() - started:.0f}s"
        )
        await asyncio.sleep(2)
    except BaseException:
        delivering.cancel()
        raise
    finally:
        await load.stop()
    await asyncio.wait_for(delivering, timeout=90)
    load_s = time.monotonic() - started

    # Payouts: each accepted once (a 503 or a cut connection was sent again), none refused.
    assert load.unexpected == [], load.unexpected[:5]
    assert set(load.first_sent) == set(load.accepted)
    assert {t.status for t in load.tries} <= {0, 200, 202, 503}
    pay_ids = list(load.accepted.values())
    assert len(set(pay_ids)) == len(pay_ids)
    assert await pool.fetchval(
        "SELECT count(*) FROM payouts WHERE request_id = ANY($1::text[])", list(load.accepted)
    ) == len(pay_ids)
    late = [r for r, at in load.first_sent.items() if at >= restart_at]
    during = [r for r, at in load.first_sent.items() if kill_at <= at < restart_at]
    assert late and during, (len(during), len(late))

    async def final() -> bool:
        rows = await payout_rows(pool, pay_ids)
        return all(r["state"] in outages.FINAL for r in rows.values())

    await wait_until(final, timeout_s=60, interval_s=0.5)
    rows = await payout_rows(pool, pay_ids)
    finals = {(p, r["state"]) for p, r in rows.items()}

    async def delivered() -> bool:
        return finals <= set(stack.receiver.received)

    await wait_until(delivered, timeout_s=60, interval_s=0.5)
    # Callbacks are delivered at least once: a POST is recorded as an attempt by the process
    # that made it, so one that reached the client but was never recorded was made by the
    # dispatcher that died (its lease then expired and the survivor sent it again). Each
    # callback was received as often as attempts were recorded for it, plus at most that one,
    # and no more of those than the killed dispatcher could have had in flight.
    recorded = {
        (r["pay_id"], r["state"]): r["n"]
        for r in await pool.fetch(
            "SELECT d.pay_id, d.state, count(*) AS n FROM callback_attempts a "
            "JOIN callback_deliveries d USING (delivery_id) "
            "WHERE d.pay_id = ANY($1::text[]) AND a.status_code BETWEEN 200 AND 299 "
            "GROUP BY d.pay_id, d.state",
            pay_ids,
        )
    }
    received = stack.receiver.received
    counts = Counter(c for c in received if c[0] in rows)
    assert recorded == dict.fromkeys(finals, 1), "a callback recorded as delivered twice"
    unrecorded = {c: counts[c] - recorded[c] for c in finals}
    assert set(unrecorded.values()) <= {0, 1}, {c: n for c, n in unrecorded.items() if n > 1}
    again = {c for c, n in unrecorded.items() if n == 1}
    assert len(again) <= MAX_IN_FLIGHT, f"{len(again)} sent twice: {sorted(again)[:5]}"
    assert stack.receiver.bad_signatures == 0
    deliveries = await pool.fetch(
        "SELECT pay_id, state, status FROM callback_deliveries WHERE pay_id = ANY($1::text[])",
        pay_ids,
    )
    assert sorted((d["pay_id"], d["state"]) for d in deliveries) == sorted(finals)
    assert {d["status"] for d in deliveries} == {"DELIVERED"}
    await assert_paid_exactly(pool, rows, clearing_before)
    now = await balances(pool)
    assert {p: now[p][1] for p in payers} == dict.fromkeys(payers, 0), "amounts left frozen"

    # Bank notifications: every one acknowledged was applied, each once.
    assert bank.acknowledged() == {s.record_id for s in specs}

    async def all_applied() -> bool:
        return await records_with_prefix(pool, "scale-") == TRANSFERS

    await wait_until(all_applied, timeout_s=60)
    await asyncio.sleep(1)
    await assert_credited_once(pool, "scale-", TRANSFERS, owed)
    await assert_ledger_invariants(pool)
    for group in scaled.replicas.values():
        for service in group:
            assert service.proc is not None and service.proc.poll() is None, service.tail()
    states = Counter(r["state"] for r in rows.values())
    print(
        f"\nscale-out: {len(pay_ids)} payouts {dict(states)}, {TRANSFERS} notifications in "
        f"{load_s:.0f}s; broker {victim_id} killed: leaders moved in {leader_s:.1f}s, the "
        f"groups' partitions {rebalance_s:.1f}s after the kill; whole again {rejoin_s:.1f}s after the "
        f"restart; {len(again)} callbacks sent twice across the dispatcher's kill"
    )
