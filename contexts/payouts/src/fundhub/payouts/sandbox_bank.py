"""The sandbox's bank: the simulator, told each payout's scenario before the payout itself.

Wraps the worker's ``BankPayoutAdapter`` in a sandbox deployment only (payment-worker's
``main``); a live worker never builds it. Before every submit it reads the scenarios of the
orders' payIds and posts them to the simulator, so a scenario holds whatever the timing and on
every resubmission (the simulator applies one only to a transfer it has not seen yet). If the
simulator cannot take them the submit is ``BankUnavailable``, retried as any bank outage is.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
import orjson

from fundhub.common.db import Pool
from fundhub.payouts.bank import (
    BankAnswer,
    BankPayoutAdapter,
    BankRequestRefused,
    BankUnavailable,
    PayoutOrder,
)
from fundhub.payouts.sandbox import SCENARIOS_PATH
from fundhub.payouts.sandbox_store import scenarios_of

_JSON_HEADERS = {"Content-Type": "application/json"}


class SandboxBank:
    """A ``BankPayoutAdapter`` that sends the payouts' sandbox scenarios first."""

    def __init__(
        self,
        bank: BankPayoutAdapter,
        pool: Pool,
        session: aiohttp.ClientSession,
        simulator_url: str,
        timeout_s: float = 5.0,
    ) -> None:
        self._bank = bank
        self._pool = pool
        self._session = session
        self._url = simulator_url.rstrip("/") + SCENARIOS_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _announce(self, orders: Sequence[PayoutOrder]) -> None:
        scenarios = await scenarios_of(self._pool, [o.bank_request_id for o in orders])
        if not scenarios:
            return
        body = orjson.dumps({"scenarios": [s.to_wire() for s in scenarios]})
        try:
            async with self._session.post(
                self._url, data=body, headers=_JSON_HEADERS, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise BankUnavailable(f"simulator refused the scenarios: {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BankUnavailable(f"simulator unreachable: {type(exc).__name__}") from None

    async def submit(self, order: PayoutOrder) -> BankAnswer:
        await self._announce([order])
        return await self._bank.submit(order)

    async def submit_many(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        await self._announce(orders)
        return await self._bank.submit_many(orders)

    async def query(self, bank_request_id: str) -> BankAnswer | None:
        return await self._bank.query(bank_request_id)
