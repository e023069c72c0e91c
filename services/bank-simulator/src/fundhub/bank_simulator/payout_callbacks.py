"""After the answer: a payout's outcome lands, and the bank tells ``notify_url``, signed.

The result notification is signed exactly like the transfer notify (same public parameters,
RSA2 over them) with method ``bkfunds.payout.result.notify``, and delivered with the bank's
retries (``BankSender``: HTTP 200 ``success`` or try again). Following each transfer's plan it
may come twice, late (a RETURNED after the SUCCESS, possibly overtaking a SUCCESS still being
retried), or never.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import structlog

from fundhub.bank_simulator.notifications import (
    DEFAULT_EXCLUDES,
    PrivateKey,
    private_key,
    sign_params,
)
from fundhub.bank_simulator.payouts_bank import PayoutBank, Transfer
from fundhub.bank_simulator.sender import BankSender, DeliveryObserver
from fundhub.common.bank_payouts import RESULT_METHOD
from fundhub.common.clock import format_bank_time, utcnow

log = structlog.get_logger("fundhub.bank_simulator.payout_callbacks")


def result_biz(transfer: Transfer) -> dict[str, str]:
    """The result's business fields as of now; ``reason`` is empty unless FAILED or RETURNED."""
    finished = transfer.finished_at or transfer.received_at
    return {
        "bank_request_id": transfer.bank_request_id,
        "bank_txn_id": transfer.bank_txn_id,
        "status": transfer.status.value,
        "reason": transfer.reason or "",
        "amount": str(transfer.order.amount),
        "finished_time": format_bank_time(finished),
    }


def build_result_notification(
    biz: Mapping[str, str],
    app_id: str,
    key: PrivateKey,
    now: datetime | None = None,
    excludes: Collection[str] = DEFAULT_EXCLUDES,
) -> dict[str, str]:
    """The signed parameters of ``bkfunds.payout.result.notify`` carrying ``biz``."""
    params = {
        "app_id": app_id,
        "method": RESULT_METHOD,
        "format": "json",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": format_bank_time(now or utcnow()),
        "version": "1.0",
        "biz_content": json.dumps(dict(biz), ensure_ascii=False, separators=(",", ":")),
    }
    params["sign"] = sign_params(params, key, excludes)
    return params


class PayoutNotifier:
    """Drives each accepted transfer through its plan and delivers its result notifications.

    Usable between ``async with notifier.running():`` and its end, which cancels what is still
    pending (the simulated bank forgets its unsent callbacks when it stops).
    """

    def __init__(
        self,
        bank: PayoutBank,
        app_id: str,
        key: PrivateKey,
        *,
        retries: int = 3,
        retry_interval_s: float = 180.0,
        timeout_s: float = 10.0,
        max_connections: int = 100,
        observer: DeliveryObserver | None = None,
    ) -> None:
        if retries < 0 or retry_interval_s < 0 or timeout_s <= 0:
            raise ValueError("retries, retry_interval_s must be >= 0 and timeout_s > 0")
        self.bank = bank
        self.app_id = app_id
        self._key = private_key(key)
        self.retries = retries
        self.retry_interval_s = retry_interval_s
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None
        self._senders: dict[str, BankSender] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_running(self) -> bool:
        return self._session is not None

    @property
    def pending(self) -> int:
        """Timelines and deliveries not finished yet."""
        return len(self._tasks)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # Idle connections dropped before a server's keep-alive closes them (as open_sender).
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=2.0)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            try:
                yield
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._tasks.clear()
                self._senders.clear()
                self._session = None

    def follow(self, transfer: Transfer) -> None:
        """Start a newly accepted transfer's timeline in the background."""
        self._spawn(self._timeline(transfer), f"payout-{transfer.bank_request_id}")

    async def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (tests, orderly stops); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._session is None:
            work.close()
            raise RuntimeError("the payout notifier is not running")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _timeline(self, transfer: Transfer) -> None:
        plan = transfer.plan
        request_id = transfer.bank_request_id
        await asyncio.sleep(plan.callback_after_s)
        self.bank.settle(request_id, utcnow())
        self._notify(transfer)
        if plan.return_after_s is not None:
            await asyncio.sleep(plan.return_after_s)
            if self.bank.return_payout(request_id, utcnow()):
                # Always announced: the payout is final on our side by then and no longer
                # polled, so a withheld return could only be found by reconciliation.
                self._notify(transfer, always=True)

    def _notify(self, transfer: Transfer, always: bool = False) -> None:
        """Send the transfer's current result (and a copy, if planned), or withhold it
        (``never_answer_rate``: the outcome's callback never comes, polling must find it)."""
        plan = transfer.plan
        if not plan.callback and not always:
            self.bank.stats.callbacks_withheld += 1
            return
        biz = result_biz(transfer)  # taken now: the transfer may move on before it is sent
        url = transfer.order.notify_url
        tag = f"{transfer.bank_request_id}-{transfer.status.value}"
        self._spawn(self._deliver(url, biz, 0.0), f"cb-{tag}")
        if plan.duplicate:
            self.bank.stats.callbacks_duplicated += 1
            self._spawn(self._deliver(url, biz, plan.duplicate_after_s), f"cb-dup-{tag}")

    async def _deliver(self, url: str, biz: dict[str, str], delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)  # a later copy, signed with a later timestamp
        # RSA signing (~1 ms) releases the GIL: off the loop, it leaves the API responsive.
        params = await asyncio.to_thread(build_result_notification, biz, self.app_id, self._key)
        self.bank.stats.callbacks_sent += 1
        delivery = await self._sender(url).send(params)
        if delivery.ok:
            self.bank.stats.callbacks_delivered += 1
        else:
            self.bank.stats.callbacks_failed += 1
            log.error(
                "payout_callback_gave_up",
                bank_request_id=biz["bank_request_id"],
                status=biz["status"],
                attempts=delivery.attempts,
                reason=delivery.answer,
            )

    def _sender(self, url: str) -> BankSender:
        sender = self._senders.get(url)
        if sender is None:
            if self._session is None:
                raise RuntimeError("the payout notifier is not running")
            sender = BankSender(
                self._session,
                url,
                retries=self.retries,
                retry_interval_s=self.retry_interval_s,
                timeout_s=self.timeout_s,
                observer=self._observer,
            )
            self._senders[url] = sender
        return sender
