"""Sub-merchants brought on board through the API, as a platform does it: registered
(``POST /v1/merchants``), reviewed by the depository (the bank simulator), a settlement account
bound and verified by the micro-deposit the bank made (read from the simulator, as the merchant
reads its bank statement). The states are waited for in the database, not by polling the API
(whose read limit a test of thousands of objects would meet)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from support.merchants import account, registration
from support.platform import Platform


@dataclass(frozen=True)
class Onboarded:
    merchant_id: str
    merchant_no: str
    account_id: str
    account_no: str  # the verified settlement account (empty when none was bound)


async def wait_rows(
    platform: Platform, sql: str, ids: Sequence[str], timeout_s: float = 60.0
) -> None:
    """Until ``sql`` (a count over ``$1``, the ids) reaches ``len(ids)``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        count = await platform.env.pool.fetchval(sql, list(ids))
        if count == len(ids):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{count} of {len(ids)} after {timeout_s}s: {sql}")
        await asyncio.sleep(0.2)


async def register(
    platform: Platform, count: int, prefix: str = "M", name: str = "Shop"
) -> list[Onboarded]:
    """``count`` merchants registered at once (PENDING_REVIEW), callbacks to the receiver.
    A ``name`` starting with REJECT is rejected by the depository (the simulator's rule)."""
    run = uuid.uuid4().hex[:6]

    async def one(i: int) -> Onboarded:
        merchant_no = f"{prefix}-{run}-{i:03d}"
        body = {
            **registration(merchant_no, f"{name} {run} {i:03d}"),
            "notifyUrl": platform.notify_url,
        }
        answer = await platform.call("POST", "/v1/merchants", body)
        assert answer.status == 202, answer.body
        return Onboarded(answer.body["merchantId"], merchant_no, answer.body["accountId"], "")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def wait_active(platform: Platform, merchants: Sequence[Onboarded]) -> None:
    await wait_rows(
        platform,
        "SELECT count(*) FROM merchants WHERE merchant_id = ANY($1) AND state = 'ACTIVE'",
        [m.merchant_id for m in merchants],
    )


async def verify_accounts(platform: Platform, merchants: Sequence[Onboarded]) -> list[Onboarded]:
    """Each merchant's settlement account bound, micro-deposited and confirmed: VERIFIED."""
    ids = [m.merchant_id for m in merchants]
    numbers = {m.merchant_id: f"62220202{secrets.randbelow(10**11):011d}" for m in merchants}

    async def bind(m: Onboarded) -> None:
        path = f"/v1/merchants/{m.merchant_id}/settlement-account"
        answer = await platform.call("POST", path, account(numbers[m.merchant_id], m.merchant_no))
        assert answer.status == 202, answer.body

    await asyncio.gather(*(bind(m) for m in merchants))
    await wait_rows(
        platform,
        "SELECT count(*) FROM merchant_settlement_accounts WHERE merchant_id = ANY($1)"
        " AND state = 'AWAITING_CONFIRMATION'",
        ids,
    )

    async def confirm(m: Onboarded) -> None:
        deposit = await platform.sim(
            platform.bank, "GET", f"/depository/v1/simulator/micro-deposits/{m.merchant_id}"
        )
        assert 1 <= deposit["amount"] <= 50, deposit
        path = f"/v1/merchants/{m.merchant_id}/settlement-account/verify"
        answer = await platform.call("POST", path, {"amount": deposit["amount"]})
        assert answer.status == 202, answer.body

    await asyncio.gather(*(confirm(m) for m in merchants))
    await wait_rows(
        platform,
        "SELECT count(*) FROM merchants m JOIN merchant_settlement_accounts a"
        " ON a.binding_id = m.settlement_binding"
        " WHERE m.merchant_id = ANY($1) AND a.state = 'VERIFIED'",
        ids,
    )
    return [
        Onboarded(m.merchant_id, m.merchant_no, m.account_id, numbers[m.merchant_id])
        for m in merchants
    ]
