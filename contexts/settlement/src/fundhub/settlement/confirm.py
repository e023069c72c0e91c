"""The platform confirms an order's settlement now (``POST /v1/orders/{orderNo}/settle``),
instead of waiting for its T+1 cut-off.

One transaction: the order locked, its state checked, a CONFIRMED settlement recorded (PENDING,
due at once) and the scheduler woken; the scheduler registers it with the depository. Confirming
again while it is under way answers the same settlement (nothing new is made); an order already
settled, not paid, or fully refunded is refused with its code. After the bank refused a split,
confirming again makes a new attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from fundhub.common.clock import utcnow
from fundhub.common.db import Pool
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.settlement import seams, store
from fundhub.settlement.amounts import InvalidShares, NothingToSettle, settlement_amounts
from fundhub.settlement.scheduler import new_settlements, record
from fundhub.settlement.states import SettlementState, Trigger
from fundhub.settlement.store import SettlementRow


@dataclass(frozen=True)
class Confirmed:
    row: SettlementRow
    created: bool  # False: the settlement under way was answered again


def not_found(order_no: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"order {order_no} not found")


async def confirm(pool: Pool, key_id: str, order_no: str, bank_app_id: str) -> Confirmed:
    async with pool.acquire() as conn, conn.transaction():
        order = await seams.lock_order(conn, key_id, order_no)
        if order is None:  # another tenant's order reads as missing
            raise not_found(order_no)
        if not order.paid:
            raise FundhubError(
                ErrorCode.ORDER_NOT_PAID, f"order {order_no} is {order.state}: it is not paid"
            )
        latest = await store.latest_of_order(conn, order.order_id)
        if latest is not None and not SettlementState(latest["state"]).is_final:
            return Confirmed(latest, created=False)  # under way: the same settlement again
        if _fully_refunded(order):
            raise FundhubError(
                ErrorCode.ORDER_FULLY_REFUNDED, f"order {order_no} is fully refunded"
            )
        if order.settled:
            raise FundhubError(ErrorCode.ORDER_SETTLED, f"order {order_no} is settled already")
        if order.refunds_unheld:
            raise FundhubError(
                ErrorCode.REFUND_IN_PROGRESS,
                f"order {order_no}: a refund is being taken; confirm again in a moment",
            )
        rows, _ = await new_settlements(conn, [order], Trigger.CONFIRMED, bank_app_id, utcnow())
        if not rows:  # impossible shares: logged by new_settlements, a bug to look at
            raise FundhubError(ErrorCode.INTERNAL)
        inserted = await record(conn, rows)
        return Confirmed(inserted[0], created=True)


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
