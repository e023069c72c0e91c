"""The gateway's side of orders: creating one (recorded, registered with the depository, its
payment created at the channel), reading it, and admitting its refunds.

**Creation is synchronous**, because the platform needs the payment's parameters in the
answer. It goes in three steps, each idempotent, so a client that got no answer (or a 503) sends
the same request again and the order is completed, never duplicated:

1. One transaction records the order and its parts (``(key, orderNo)`` is unique: concurrent
   copies meet in ``ON CONFLICT`` and the later ones read the first), after checking every
   receiver is an ACTIVE merchant of the key (locked against a concurrent close).
2. The depository registers it under the order id (it dedupes), each try bounded by
   ``FUNDHUB_DEPOSITORY_TIMEOUT_S``.
3. The channel creates the payment under the same id as ``out_trade_no`` (it dedupes too),
   bounded by ``FUNDHUB_CHANNEL_TIMEOUT_S``; its parameters are stored (the first ones stay).

An outage in step 2 or 3 answers 503 E013 and leaves the order CREATED for the retry; a refusal
makes it FAILED (E036_DEPOSITORY_REFUSED, E035_CHANNEL_REFUSED), which the same request reads
again. A request that does not fit (invalid, splits not adding up, a receiver not ACTIVE, a
channel this deployment does not take) writes nothing.

**Refunds** are admitted under the order's row lock, so concurrent requests never promise more
than was paid: each takes its share of what is left of every part (``splits.plan_refund``),
and the refund and its command (``orders.commands.v1``, relayed by payment-worker's outbox
relay) are written in the same transaction. Whether the money is there is payment-worker's to
find out, when it takes it (FAILED E004 otherwise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from fundhub.access.store import NonceReplayed, take_nonce
from fundhub.channels.apps import ChannelApp
from fundhub.channels.events import Channel
from fundhub.channels.ports import (
    ChannelPayments,
    ChannelRefused,
    ChannelUnavailable,
    PaymentOrder,
)
from fundhub.common import db, outbox
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection, Pool
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.merchants.lookup import standings
from fundhub.orders import store
from fundhub.orders.channel_choice import Channels
from fundhub.orders.depository import (
    DepositoryOrders,
    DepositoryRefused,
    DepositoryUnavailable,
    OrderRegistration,
    Receiver,
)
from fundhub.orders.messages import TYPE_REFUND_REQUESTED
from fundhub.orders.metrics import CHANNEL_CALLS
from fundhub.orders.postings import Part, clearing_account, fee_account
from fundhub.orders.request import OrderRequest, RefundRequest, new_order_id, new_refund_id
from fundhub.orders.splits import NotAReceiver, RefundTooLarge, SplitMismatch, plan_refund
from fundhub.orders.states import OrderState, RefundState
from fundhub.orders.store import OrderRow, RefundRow

log = structlog.get_logger(__name__)

# What earlier refunds still take from the parts: those not given back.
_TAKING = frozenset({RefundState.PROCESSING.value, RefundState.SUCCESS.value})


@dataclass(frozen=True)
class OrderView:
    """An order as read in one snapshot: its row, parts and refunds (oldest first)."""

    order: OrderRow
    parts: list[OrderRow]
    refunds: list[RefundRow]


@dataclass(frozen=True)
class RefundView:
    order: OrderRow
    refund: RefundRow
    parts: list[OrderRow]


@dataclass(frozen=True)
class Timing:
    channel_timeout_s: float = 5.0
    refund_first_poll_s: float = 5.0
    refund_deadline_s: float = 86400.0


def _unavailable(message: str) -> FundhubError:
    return FundhubError(ErrorCode.UNAVAILABLE, message)


class OrderDesk:
    def __init__(
        self,
        pool: Pool,
        topics: Topics,
        channels: Channels,
        depository: DepositoryOrders,
        timing: Timing = Timing(),
    ) -> None:
        self._pool = pool
        self._topics = topics
        self._channels = channels
        self._depository = depository
        self._timing = timing
        self._ensured: set[str] = set()  # accounts known to exist (committed)

    # --- creation ------------------------------------------------------------------------------

    async def create(
        self, key_id: str, request: OrderRequest, nonce: str | None = None
    ) -> tuple[OrderView, bool]:
        """The order the request names (new, or the one its orderNo made before), completed as
        far as the depository and the channel allow; and whether this request created it.
        ``nonce``: the request's, recorded in the order's transaction (one round trip less than
        on its own); NonceReplayed, with nothing written, when it was used before."""
        # Looked up before the transaction: the app store may take a connection from the same
        # pool, and with every connection held by a transaction waiting for one, none would end.
        app = await self._channels.app(request.channel)
        async with self._pool.acquire() as conn, conn.transaction():
            if nonce is not None and not await take_nonce(conn, key_id, nonce):
                raise NonceReplayed(nonce)
            row, created, parts = await self._record(conn, key_id, request, app)
        self._ensured.update(_accounts(key_id, request.channel, request.currency))
        if OrderState(row["state"]) is OrderState.CREATED:
            completed = await self._complete(row, self._adapter(request.channel), parts)
            # Just completed and still awaiting its payer: no refund can exist yet, so the row
            # the completion returned and the parts this request wrote are the whole order.
            awaiting = completed is not None and completed["state"] == OrderState.AWAITING_PAYMENT
            if completed is not None and parts is not None and awaiting:
                return OrderView(completed, parts, []), created
        view = await self.read(key_id, request.order_no)
        assert view is not None
        return view, created

    def _adapter(self, channel: Channel) -> ChannelPayments:
        """The channel's adapter, or 503: a channel without one completes no order."""
        adapter = self._channels.adapter(channel)
        if adapter is None:
            raise _unavailable(f"channel: {channel.value} takes no orders here now; retry later")
        return adapter

    def _taking(self, channel: Channel, app: ChannelApp | None) -> ChannelApp:
        """The app that takes the channel's new orders, or 503 (nothing is written): none is
        active, or it cannot call the channel's API (no merchant key registered)."""
        self._adapter(channel)
        if app is None:
            raise _unavailable(f"channel: {channel.value} takes no orders here now; retry later")
        return app

    async def _record(
        self, conn: Connection, key_id: str, request: OrderRequest, app: ChannelApp | None
    ) -> tuple[OrderRow, bool, list[OrderRow] | None]:
        """The order's row: the one its orderNo made before, or a new one (nothing is written
        when a receiver may not trade or the channel takes no orders); whether it is new, and
        then its parts' rows as written.

        The fee and clearing accounts are created on first sight, once per process: ensuring
        them on every order waited for each transaction that had just moved the fee account's
        balance (an insert's conflict check waits for the row version's writer), so every new
        order queued behind the payments and settlements posting to it."""
        fingerprint = request.fingerprint()
        existing = await store.order_by_no(conn, key_id, request.order_no)
        if existing is not None:
            return _same_request(existing, fingerprint, request.order_no), False, None
        parts = await _parts(conn, key_id, request)
        app = self._taking(request.channel, app)
        currency = request.currency
        fee, clearing = _accounts(key_id, request.channel, currency)
        if not {fee, clearing} <= self._ensured:
            await ledger_store.ensure_accounts(
                conn, [(fee, currency, f"platform fee of {key_id}")], [clearing]
            )
        sequence = int(await conn.fetchval("SELECT nextval('order_seq')"))
        row = await store.insert_order(
            conn,
            (
                new_order_id(utcnow().date(), sequence),
                key_id,
                request.order_no,
                fingerprint,
                request.amount,
                currency,
                request.channel.value,
                app.app_id,
                app.merchant_ref,
                request.description,
                request.platform_fee,
                request.notify_url,
            ),
            parts,
        )
        if row is not None:
            log.info("order_created", order_id=row["order_id"], order_no=request.order_no)
            return row, True, store.part_rows(row["order_id"], parts)
        raced = await store.order_by_no(conn, key_id, request.order_no)
        if raced is None:  # the concurrent insert rolled back after all: a retry will do
            raise _unavailable("the order raced a failed copy of itself; send it again")
        return _same_request(raced, fingerprint, request.order_no), False, None

    async def _complete(
        self, row: OrderRow, adapter: ChannelPayments, parts: list[OrderRow] | None
    ) -> OrderRow | None:
        """Register with the depository, then create the channel's payment; each step once.
        The order's row as the payment's parameters were noted, or None when it failed.
        ``parts``: the order's, when the caller has them."""
        order_id = row["order_id"]
        registered_ref: str | None = None
        if row["depository_ref"] is None:
            if parts is None:
                async with self._pool.acquire() as conn:
                    parts = (await store.parts_of(conn, [order_id]))[order_id]
            try:
                registered = await self._depository.register(_registration(row, parts))
            except DepositoryUnavailable as exc:
                log.warning("order_depository_unavailable", order_id=order_id, error=str(exc))
                raise _unavailable(
                    "the depository is out of reach; send the same order again"
                ) from exc
            except DepositoryRefused as exc:
                log.info("order_depository_refused", order_id=order_id, reason=exc.reason)
                await self._fail(order_id, ErrorCode.DEPOSITORY_REFUSED, exc.reason)
                return None
            registered_ref = registered.depository_ref
        payment = PaymentOrder(
            channel=Channel(row["channel"]),
            app_id=row["app_id"],
            out_trade_no=order_id,
            amount_fen=row["amount"],
            currency=row["currency"],
            description=row["description"],
            notify_url=self._channels.notify_url(Channel(row["channel"])),
        )
        label = payment.channel.value
        try:
            async with asyncio.timeout(self._timing.channel_timeout_s):
                params = await adapter.create_payment(payment)
        except (ChannelUnavailable, TimeoutError) as exc:
            CHANNEL_CALLS.labels(label, "create", "unavailable").inc()
            log.warning("order_channel_unavailable", order_id=order_id, error=repr(exc))
            await self._note_registered(order_id, registered_ref)  # the retry skips it
            raise _unavailable(f"{label} is out of reach; send the same order again") from exc
        except ChannelRefused as exc:
            CHANNEL_CALLS.labels(label, "create", "refused").inc()
            log.info("order_channel_refused", order_id=order_id, code=exc.code)
            await self._note_registered(order_id, registered_ref)
            await self._fail(order_id, ErrorCode.CHANNEL_REFUSED, f"{exc.code}: {exc.message}")
            return None
        CHANNEL_CALLS.labels(label, "create", "created").inc()
        async with self._pool.acquire() as conn:
            return await store.note_payment(conn, order_id, dict(params.params), registered_ref)

    async def _note_registered(self, order_id: str, depository_ref: str | None) -> None:
        if depository_ref is not None:
            async with self._pool.acquire() as conn:
                await store.note_registered(conn, order_id, depository_ref)

    async def _fail(self, order_id: str, error: ErrorCode, message: str) -> None:
        async with self._pool.acquire() as conn:
            await store.fail_order(conn, order_id, error.code, message)

    # --- reads ---------------------------------------------------------------------------------

    async def read(self, key_id: str, order_no: str) -> OrderView | None:
        """The key's order (another key's reads as missing), from one snapshot."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            order = await store.order_by_no(conn, key_id, order_no)
            if order is None:
                return None
            parts = (await store.parts_of(conn, [order["order_id"]])).get(order["order_id"], [])
            refunds = await store.refunds_of(conn, order["order_id"])
        return OrderView(order, parts, refunds)

    # --- refunds -------------------------------------------------------------------------------

    async def refund(
        self, key_id: str, order_no: str, request: RefundRequest, correlation_id: str
    ) -> tuple[RefundView, bool]:
        """The refund the request names (new, or the one its refundNo made before), and
        whether this request created it."""
        fingerprint = request.fingerprint()
        async with self._pool.acquire() as conn, conn.transaction():
            order = await conn.fetchrow(
                f"SELECT {store.ORDER_COLUMNS} FROM orders WHERE key_id = $1 AND order_no = $2"
                " FOR UPDATE",
                key_id,
                order_no,
            )
            if order is None:
                raise FundhubError(ErrorCode.NOT_FOUND, f"order {order_no} not found")
            order_row = dict(order)
            order_id = order_row["order_id"]
            parts = (await store.parts_of(conn, [order_id])).get(order_id, [])
            refunds = await store.refunds_of(conn, order_id)
            for existing in refunds:
                if existing["refund_no"] == request.refund_no:
                    if existing["fingerprint"] != fingerprint:
                        raise FundhubError(
                            ErrorCode.IDEMPOTENCY_CONFLICT,
                            f"refundNo: {request.refund_no} was used before with another body",
                        )
                    return RefundView(order_row, existing, parts), False
            if order_row["state"] != OrderState.PAID:
                raise FundhubError(
                    ErrorCode.ORDER_NOT_PAID, f"order {order_no} is {order_row['state']}"
                )
            if order_row["settling_id"] is not None and order_row["settled_at"] is None:
                # Settlement moves what a refund would take from pending: wait for its end.
                raise FundhubError(
                    ErrorCode.SETTLEMENT_IN_PROGRESS,
                    f"order {order_no}: its settlement is under way; refund once it is final",
                )
            allocation = _allocation(request, parts, refunds)
            sequence = int(await conn.fetchval("SELECT nextval('order_refund_seq')"))
            refund_id = new_refund_id(utcnow().date(), sequence)
            refund = await store.insert_refund(
                conn,
                (
                    refund_id,
                    order_id,
                    request.refund_no,
                    fingerprint,
                    request.amount,
                    allocation,
                    request.reason,
                    float(self._timing.refund_first_poll_s),
                    float(self._timing.refund_deadline_s),
                ),
            )
            command = Envelope(
                id=deterministic_id("order-refund", refund_id),
                type=TYPE_REFUND_REQUESTED,
                correlation_id=correlation_id,
                data={"orderId": order_id, "refundId": refund_id},
            )
            await db.write_together(
                conn,
                outbox.outbox_writes([(self._topics.order_commands, order_id, command)]),
                notify=outbox.PAYOUTS_CHANNEL,
            )
        log.info("order_refund_admitted", order_id=order_id, refund_id=refund_id)
        return RefundView(order_row, refund, parts), True


def _accounts(key_id: str, channel: Channel, currency: str) -> tuple[str, str]:
    """The accounts every order of the key through the channel posts to: fee, clearing."""
    return fee_account(key_id, currency), clearing_account(channel, currency)


def _same_request(row: OrderRow, fingerprint: str, order_no: str) -> OrderRow:
    if row["fingerprint"] != fingerprint:
        raise FundhubError(
            ErrorCode.IDEMPOTENCY_CONFLICT, f"orderNo: {order_no} was used before with another body"
        )
    return row


async def _parts(conn: Connection, key_id: str, request: OrderRequest) -> list[Part]:
    """The receivers' accounts, each an ACTIVE merchant of the key (another key's merchant
    reads as unknown, as a missing one), then the platform fee's."""
    found = await standings(conn, key_id, request.merchant_ids())
    parts: list[Part] = []
    for i, split in enumerate(request.splits):
        standing = found.get(split.merchant_id)
        field = f"splits[{i}].merchantId"
        if standing is None:
            raise FundhubError(ErrorCode.MERCHANT_NOT_ACTIVE, f"{field}: unknown merchant")
        if not standing.may_trade:
            raise FundhubError(
                ErrorCode.MERCHANT_NOT_ACTIVE,
                f"{field}: merchant {split.merchant_id} is {standing.state}, not ACTIVE",
            )
        if standing.currency != request.currency:
            raise FundhubError(
                ErrorCode.INVALID_PARAMETER,
                f"{field}: merchant {split.merchant_id} holds {standing.currency}",
            )
        parts.append(Part(i, split.merchant_id, standing.account_id, split.amount))
    fee = fee_account(key_id, request.currency)
    parts.append(Part(len(parts), None, fee, request.platform_fee))
    return parts


def _registration(row: OrderRow, parts: Sequence[OrderRow]) -> OrderRegistration:
    receivers = tuple(
        Receiver(p["merchant_id"], p["account_id"], p["amount"])
        for p in parts
        if p["merchant_id"] is not None
    )
    fee = next(p for p in parts if p["merchant_id"] is None)
    return OrderRegistration(
        order_id=row["order_id"],
        platform=row["key_id"],
        channel=Channel(row["channel"]),
        amount=row["amount"],
        currency=row["currency"],
        description=row["description"],
        receivers=receivers,
        platform_fee=row["platform_fee"],
        fee_account=fee["account_id"],
    )


def _allocation(
    request: RefundRequest, parts: Sequence[OrderRow], refunds: Sequence[RefundRow]
) -> list[int]:
    """Each part's share of the new refund (``splits.plan_refund``), or the refusal."""
    ordered = sorted(parts, key=lambda p: int(p["position"]))
    taken = [0] * len(ordered)
    for refund in refunds:
        if refund["state"] in _TAKING:
            for i, amount in enumerate(refund["allocation"]):
                taken[i] += int(amount)
    named = None
    if request.splits is not None:
        named = {s.merchant_id: s.amount for s in request.splits}
    try:
        return plan_refund(
            request.amount,
            [(p["merchant_id"], int(p["amount"])) for p in ordered],
            taken,
            named,
            request.platform_fee,
        )
    except NotAReceiver as exc:
        assert request.splits is not None
        index = [s.merchant_id for s in request.splits].index(exc.merchant_id)
        raise FundhubError(
            ErrorCode.INVALID_PARAMETER, f"splits[{index}].merchantId: {exc}"
        ) from None
    except SplitMismatch as exc:
        raise FundhubError(ErrorCode.SPLIT_MISMATCH, str(exc)) from None
    except RefundTooLarge as exc:
        where = "amount"
        if exc.part is not None:
            merchant = ordered[exc.part]["merchant_id"]
            if merchant is None:
                where = "platformFee"
            else:
                assert request.splits is not None
                index = [s.merchant_id for s in request.splits].index(merchant)
                where = f"splits[{index}].amount"
        raise FundhubError(ErrorCode.REFUND_EXCEEDS_PAID, f"{where}: {exc}") from None
