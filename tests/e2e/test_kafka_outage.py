"""The broker stopped and restarted under load: `success` only when durable, nothing lost.

The broker is the run's own (``owned_env``), never the one the session shares."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.cli.devstack import Infra

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(owned_env: ModuleEnv) -> ModuleEnv:
    return owned_env


@dataclass
class Answer:
    record_id: str
    sent_at: float
    answered_at: float
    success: bool


async def test_broker_restart_never_acknowledges_what_is_not_durable(
    stack: Stack, owned_infra_handle: Infra
) -> None:
    node = owned_infra_handle.kafka
    assert node is not None
    rng = random.Random(11)
    specs = [
        TransferSpec(
            record_id=f"outage-{i}",
            in_acct_no=f"6222002{rng.randint(0, 29):05d}",
            trans_amount=rng.randint(1, 9999),
        )
        for i in range(400)
    ]
    notifications = build_many(specs, stack.env.app_id, stack.env.bank.private_pem)
    answers: list[Answer] = []
    pending = list(zip(specs, notifications, strict=True))

    async def bank() -> None:
        """Deliver each notification, retrying failures as the bank does (faster here)."""
        queue = list(pending)
        while queue:
            spec, params = queue.pop(0)
            sent = time.monotonic()
            try:
                response = await stack.post(params)
                ok = response.status_code == 200 and response.text == "success"
            except Exception:
                ok = False
            answers.append(Answer(spec.record_id, sent, time.monotonic(), ok))
            if not ok:
                queue.append((spec, params))
                await asyncio.sleep(0.2)
            else:
                await asyncio.sleep(0.01)

    banks = [asyncio.create_task(bank()) for _ in range(1)]

    async def flowing() -> bool:
        return sum(1 for a in answers if a.success) >= 60

    await wait_until(flowing, timeout_s=60)
    await asyncio.to_thread(node.stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(8)  # notifications keep arriving while the broker is gone
    restart_at = time.monotonic()
    await asyncio.to_thread(node.start)
    await asyncio.gather(*banks)

    during = [a for a in answers if a.sent_at > stopped_at and a.answered_at < restart_at]
    assert during, "no notification arrived while the broker was down"
    assert not any(a.success for a in during), "answered success while Kafka was down"

    acknowledged = {a.record_id for a in answers if a.success}
    assert acknowledged == {s.record_id for s in specs}

    async def all_in_ledger() -> bool:
        n = await stack.env.pool.fetchval(
            "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE 'outage-%'"
        )
        return bool(n == len(specs))

    await wait_until(all_in_ledger, timeout_s=90)
    await asyncio.sleep(1)
    per_record = await stack.env.pool.fetch(
        "SELECT ref_id, count(*) AS n FROM journal_entries WHERE ref_id LIKE 'outage-%' GROUP BY ref_id"
    )
    assert len(per_record) == len(specs) and all(r["n"] == 1 for r in per_record)
    await assert_ledger_invariants(stack.env.pool)
