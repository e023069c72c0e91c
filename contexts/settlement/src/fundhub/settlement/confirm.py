"""The platform confirms an order's settlement now (``POST /v1/orders/{orderNo}/settle``),
instead of waiting for its T+1 cut-off.

One transaction: the order locked, its state checked, a CONFIRMED settlement recorded (PENDING,
due at once) and the scheduler woken; the scheduler registers it with the depository. Confirming
again while it is under way answers the same settlement (nothing new is made); an order already
settled, not paid, or fully refunded is refused with its code. After the bank refused a split,
confirming again makes a new attempt.

Confirmations arriving together share that transaction (``Confirmations``, a group commit as
payouts' admission does): about ten statements for the batch rather than for each order, which
were most of what a confirmation cost the gateway and the database. Each order is still decided
alone, under its own lock, and answered with its own outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fundhub.access.store import NonceReplayed, take_nonces
from fundhub.common.clock import utcnow
from fundhub.common.db import Pool
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.group_commit import GroupCommit
from fundhub.settlement import seams, store
from fundhub.settlement.amounts import InvalidShares, NothingToSettle, settlement_amounts
from fundhub.settlement.scheduler import new_settlements, record
from fundhub.settlement.states import SettlementState, Trigger
from fundhub.settlement.store import SettlementRow

# Orders confirmed in one transaction at most: their locks are held until it commits.
MAX_BATCH = 100


@dataclass(frozen=True)
class Confirmed:
    row: SettlementRow
    created: bool  # False: the settlement under way was answered again


@dataclass(frozen=True)
class Confirmation:
    """One request: the tenant (its API key), its order, and the request's nonce, recorded in
    the confirmation's own transaction (None: recorded by the caller already)."""

    key_id: str
    order_no: str
    nonce: str | None = None


Outcome = Confirmed | FundhubError | NonceReplayed


def not_found(order_no: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"order {order_no} not found")


class Confirmations:
    """``confirm`` for each request; concurrent ones go to the database together."""

    def __init__(self, pool: Pool, bank_app_id: str, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._bank_app_id = bank_app_id
        # One order twice in a batch would be decided twice on one reading: the second waits
        # for the next batch, and finds the first's settlement.
        self._group: GroupCommit[Confirmation, Outcome] = GroupCommit(
            lambda batch: confirm_many(self._pool, batch, self._bank_app_id),
            lambda c: (c.key_id, c.order_no),
            max_batch=max_batch,
        )

    async def confirm(self, key_id: str, order_no: str, nonce: str | None = None) -> Confirmed:
        """Raises the order's refusal, or NonceReplayed for a replayed ``nonce``."""
        outcome = await self._group.submit(Confirmation(key_id, order_no, nonce))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def confirm_many(
    pool: Pool, batch: Sequence[Confirmation], bank_app_id: str
) -> list[Outcome]:
    """Each confirmation's outcome, in one transaction: a refusal is an outcome, not a raise,
    so one order refused does not undo the others. A replayed nonce (used before, or twice in
    the batch) stops its request before its order is read."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    async with pool.acquire() as conn, conn.transaction():
        nonces = [(c.key_id, c.nonce) for c in batch if c.nonce is not None]
        fresh = await take_nonces(conn, nonces) if nonces else set()
        for index, item in enumerate(batch):
            if item.nonce is not None:
                pair = (item.key_id, item.nonce)
                if pair not in fresh:
                    outcomes[index] = NonceReplayed(item.nonce)
                fresh.discard(pair)  # a second use in this batch is a replay too
        wanted = [(c.key_id, c.order_no) for c, o in zip(batch, outcomes, strict=True) if o is None]
        orders = await seams.lock_orders_by_no(conn, wanted)
        latest = await store.latest_of_orders(conn, [o.order_id for o in orders.values()])
        to_settle: dict[str, seams.SettleableOrder] = {}
        for index, item in enumerate(batch):
            if outcomes[index] is not None:
                continue
            order = orders.get((item.key_id, item.order_no))
            try:
                outcomes[index] = _decided(order, latest, item.order_no)
            except FundhubError as refusal:
                outcomes[index] = refusal
                continue
            if outcomes[index] is None and order is not None:
                to_settle[order.order_id] = order
        if to_settle:
            rows, _ = await new_settlements(
                conn, list(to_settle.values()), Trigger.CONFIRMED, bank_app_id, utcnow()
            )
            inserted = {r["order_id"]: r for r in await record(conn, rows)}
            for index, item in enumerate(batch):
                order = orders.get((item.key_id, item.order_no))
                if outcomes[index] is not None or order is None:
                    continue
                row = inserted.get(order.order_id)
                # None: impossible shares (logged by new_settlements), a bug to look at.
                outcomes[index] = (
                    Confirmed(row, created=True)
                    if row is not None
                    else FundhubError(ErrorCode.INTERNAL)
                )
    return [o if o is not None else FundhubError(ErrorCode.INTERNAL) for o in outcomes]


def _decided(
    order: seams.SettleableOrder | None, latest: dict[str, SettlementRow], order_no: str
) -> Confirmed | None:
    """The answer for an order that needs no new settlement; None when it needs one. Raises
    the refusal of an order that may not be settled."""
    if order is None:  # another tenant's order reads as missing
        raise not_found(order_no)
    if not order.paid:
        raise FundhubError(
            ErrorCode.ORDER_NOT_PAID, f"order {order_no} is {order.state}: it is not paid"
        )
    under_way = latest.get(order.order_id)
    if under_way is not None and not SettlementState(under_way["state"]).is_final:
        return Confirmed(under_way, created=False)  # under way: the same settlement again
    if _fully_refunded(order):
        raise FundhubError(ErrorCode.ORDER_FULLY_REFUNDED, f"order {order_no} is fully refunded")
    if order.settled:
        raise FundhubError(ErrorCode.ORDER_SETTLED, f"order {order_no} is settled already")
    if order.refunds_unheld:
        raise FundhubError(
            ErrorCode.REFUND_IN_PROGRESS,
            f"order {order_no}: a refund is being taken; confirm again in a moment",
        )
    return None


def _fully_refunded(order: seams.SettleableOrder) -> bool:
    try:
        settlement_amounts(order.shares)
    except NothingToSettle:
        return True
    except InvalidShares:
        return False  # new_settlements logs it
    return False


async def latest(pool: Pool, key_id: str, order_no: str) -> SettlementRow | None:
    """The tenant's order's settlement (``store.latest_of_order``); None for another's."""
    async with pool.acquire() as conn:
        order_id = await seams.order_id_of(conn, key_id, order_no)
        return None if order_id is None else await store.latest_of_order(conn, order_id)
