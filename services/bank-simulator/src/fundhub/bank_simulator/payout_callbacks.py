"""After the answer: a payout's outcome lands, and the bank tells ``notify_url``, signed.

Results are reported in batches, as banks commonly do for batch payouts: the results due for
one ``notify_url`` within a few milliseconds go out as ONE notification, method
``bkfunds.payout.results.notify``, ``biz_content`` = ``{"results": [<result>, ...]}``. It is
signed exactly like the transfer notify (same public parameters, RSA2 over them), so one RSA
signature and one POST serve many payouts; and it is delivered with the bank's retries
(``BankSender``: HTTP 200 ``success`` or try again), the whole batch each time. Following each
transfer's plan a result may come twice (its copy in a later batch, or the same one), late (a
RETURNED after the SUCCESS, possibly overtaking a SUCCESS still being retried), or never.
The single form (``bkfunds.payout.result.notify``, ``build_result_notification``) stays
available for scenarios that want it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import orjson
import structlog

from fundhub.bank_simulator.bank_notifier import BankNotifier
from fundhub.bank_simulator.notifications import (
    DEFAULT_EXCLUDES,
    PrivateKey,
    private_key,
    sign_params,
)
from fundhub.bank_simulator.payouts_bank import PayoutBank, Transfer
from fundhub.bank_simulator.sender import DeliveryObserver
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.payouts.bank import RESULT_METHOD, RESULTS_METHOD
from fundhub.payouts.bank_results import MAX_BATCH_RESULTS

log = structlog.get_logger("fundhub.bank_simulator.payout_callbacks")

_LOGGED_IDS = 10


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
    text = json.dumps(dict(biz), ensure_ascii=False, separators=(",", ":"))
    return signed_notification(RESULT_METHOD, text, app_id, key, now, excludes)


def build_results_notification(
    items: Sequence[Mapping[str, str]],
    app_id: str,
    key: PrivateKey,
    now: datetime | None = None,
    excludes: Collection[str] = DEFAULT_EXCLUDES,
) -> dict[str, str]:
    """The signed parameters of ``bkfunds.payout.results.notify`` carrying every item (each a
    ``result_biz``); 1 to MAX_BATCH_RESULTS of them, as the receiver accepts no other count."""
    if not 0 < len(items) <= MAX_BATCH_RESULTS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_RESULTS} results, not {len(items)}")
    # orjson: this runs for every batch, and its output is the same compact UTF-8 JSON.
    text = orjson.dumps({"results": [dict(item) for item in items]}).decode()
    return signed_notification(RESULTS_METHOD, text, app_id, key, now, excludes)


def signed_notification(
    method: str,
    biz_content: str,
    app_id: str,
    key: PrivateKey,
    now: datetime | None,
    excludes: Collection[str],
) -> dict[str, str]:
    """A notification of ``method`` carrying ``biz_content``: the bank's public parameters,
    signed RSA2 like every notification it sends (payout results, split results)."""
    params = {
        "app_id": app_id,
        "method": method,
        "format": "json",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": format_bank_time(now or utcnow()),
        "version": "1.0",
        "biz_content": biz_content,
    }
    params["sign"] = sign_params(params, key, excludes)
    return params


class PayoutNotifier(BankNotifier):
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
        super().__init__(
            "payout",
            max_connections,
            retries=retries,
            retry_interval_s=retry_interval_s,
            timeout_s=timeout_s,
            observer=observer,
        )
        self._outboxes = self.result_batches(self._deliver, MAX_BATCH_RESULTS)
        self.batches_sent = 0

    def follow(self, transfer: Transfer) -> None:
        """Start a newly accepted transfer's timeline in the background."""
        self.spawn(self._timeline(transfer), f"payout-{transfer.bank_request_id}")

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
        """Queue the transfer's current result (and a copy, if planned), or withhold it
        (``never_answer_rate``: the outcome's callback never comes, polling must find it)."""
        plan = transfer.plan
        if not plan.callback and not always:
            self.bank.stats.callbacks_withheld += 1
            return
        biz = result_biz(transfer)  # taken now: the transfer may move on before it is sent
        url = transfer.order.notify_url
        self._enqueue(url, biz)
        if plan.duplicate:
            self.bank.stats.callbacks_duplicated += 1
            tag = f"{transfer.bank_request_id}-{transfer.status.value}"
            self.spawn(self._enqueue_later(url, biz, plan.duplicate_after_s), f"cb-dup-{tag}")

    async def _enqueue_later(self, url: str, biz: dict[str, str], delay_s: float) -> None:
        await asyncio.sleep(delay_s)  # a later copy: a later batch, unless the first still waits
        self._enqueue(url, biz)

    def _enqueue(self, url: str, biz: dict[str, str]) -> None:
        self._outboxes.enqueue(url, biz)

    async def _deliver(self, url: str, batch: list[dict[str, str]]) -> None:
        stats = self.bank.stats
        try:
            # RSA signing (~1 ms) releases the GIL: off the loop, it leaves the API responsive.
            params = await asyncio.to_thread(
                build_results_notification, batch, self.app_id, self._key
            )
        except Exception:  # a bug: counted and logged, the loop goes on with later results
            stats.callbacks_failed += len(batch)
            log.exception("payout_callback_batch_unsigned", results=len(batch))
            return
        stats.callbacks_sent += len(batch)
        self.batches_sent += 1
        delivery = await self.sender(url).send(params)
        if delivery.ok:
            stats.callbacks_delivered += len(batch)
            return
        stats.callbacks_failed += len(batch)
        log.error(
            "payout_callback_gave_up",
            results=len(batch),
            bank_request_ids=[biz["bank_request_id"] for biz in batch[:_LOGGED_IDS]],
            attempts=delivery.attempts,
            reason=delivery.answer,
        )
