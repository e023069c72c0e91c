"""What the merchants API does, each request in one transaction: the merchant's row locked, the
state machine's decision (``states``), the rows it writes and the command for payment-worker
(an outbox row), or a refusal with its code and nothing written.

A tenant is its API key: every lookup is by owner, so another tenant's merchant reads exactly as
a missing one (E009), never as forbidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from fundhub.common.db import Connection, Pool
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.topics import Topics
from fundhub.ledger import store as ledger_store
from fundhub.merchants import states, store
from fundhub.merchants.ids import account_id_of, new_binding_id, new_merchant_id, new_request_id
from fundhub.merchants.materials import Materials, Registration, SettlementAccount
from fundhub.merchants.ports import UnsettledOrders
from fundhub.merchants.states import BindingState, Buckets, RequestKind
from fundhub.merchants.wire import MerchantView

log = structlog.get_logger(__name__)

CURRENCY = "CNY"


@dataclass(frozen=True)
class Answered:
    """The merchant after the request; ``underway`` when the depository (or the merchant, for a
    micro-deposit) is still to act on it: the answer is then 202 PROCESSING."""

    view: MerchantView
    underway: bool


def not_found(merchant: str) -> FundhubError:
    return FundhubError(ErrorCode.NOT_FOUND, f"merchant {merchant} not found")


class MerchantAdmission:
    def __init__(
        self,
        pool: Pool,
        topics: Topics,
        first_poll_s: float,
        unsettled_orders: Sequence[UnsettledOrders] = (),
    ) -> None:
        """``unsettled_orders``: every context whose orders may keep a merchant from closing
        (none yet: the orders context adds its implementation here when it has its tables)."""
        self._pool = pool
        self._topics = topics
        self._first_poll_s = first_poll_s
        self._unsettled = tuple(unsettled_orders)

    async def register(
        self, owner_key_id: str, registration: Registration, correlation_id: str
    ) -> Answered:
        """A new merchant with its ledger account and version 1, sent for review; or, for a
        merchantNo seen before, that merchant (same body) or E010 (another body)."""
        fingerprint = registration.fingerprint()
        merchant_id = new_merchant_id()
        account_id = account_id_of(merchant_id)
        async with self._pool.acquire() as conn, conn.transaction():
            created = await store.insert_merchant(
                conn,
                merchant_id,
                owner_key_id,
                registration.merchant_no,
                account_id,
                fingerprint,
                registration.notify_url,
            )
            if not created:
                return await self._existing(conn, owner_key_id, registration, fingerprint)
            await ledger_store.ensure_accounts(
                conn, [(account_id, CURRENCY, f"merchant {registration.merchant_no}")], []
            )
            materials = registration.materials()
            await store.insert_version(
                conn, merchant_id, 1, materials.normalised(), materials.fingerprint()
            )
            await self._request(conn, merchant_id, RequestKind.OPEN, correlation_id, version=1)
            view = await store.fresh_view(conn, merchant_id)
        log.info("merchant_registered", merchant_id=merchant_id)
        return Answered(view, underway=True)

    async def _existing(
        self, conn: Connection, owner_key_id: str, registration: Registration, fingerprint: str
    ) -> Answered:
        row = await store.by_merchant_no(conn, owner_key_id, registration.merchant_no)
        if row is None:  # the conflicting insert rolled back after all: a retry will do
            raise FundhubError(ErrorCode.UNAVAILABLE, "the request raced a failed one; retry")
        if row["fingerprint"] != fingerprint:
            raise FundhubError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                f"merchantNo: {registration.merchant_no} was used before with another body",
            )
        view = await store.view(conn, row)
        return Answered(view, underway=states.MerchantState(row["state"]).biz_code == "PROCESSING")

    async def change_materials(
        self, owner_key_id: str, merchant_id: str, materials: Materials, correlation_id: str
    ) -> Answered:
        """A new version for review (the merchant trades on the version in force meanwhile)."""
        async with self._pool.acquire() as conn, conn.transaction():
            merchant = await self._locked(conn, owner_key_id, merchant_id)
            fingerprints = await store.version_fingerprints(conn, merchant_id)
            pending = (
                fingerprints.get(merchant.latest_version) if merchant.version_pending else None
            )
            in_force = fingerprints.get(merchant.approved_version or 0)
            decision = states.change_materials(merchant, pending, in_force, materials.fingerprint())
            if decision is not None:
                await store.insert_version(
                    conn,
                    merchant_id,
                    decision.version,
                    materials.normalised(),
                    materials.fingerprint(),
                )
                await store.write_merchant(
                    conn,
                    states.Merchant(
                        merchant_id,
                        decision.merchant_state,
                        merchant.approved_version,
                        decision.version,
                        True,
                        merchant.binding_in_use,
                        None if decision.kind is RequestKind.OPEN else merchant.reason,
                        merchant.member_no,
                    ),
                )
                await self._request(
                    conn, merchant_id, decision.kind, correlation_id, version=decision.version
                )
                log.info(
                    "merchant_materials_changed", merchant_id=merchant_id, version=decision.version
                )
            view = await store.fresh_view(conn, merchant_id)
        return Answered(view, underway=bool(view.merchant["version_pending"]))

    async def bind_account(
        self, owner_key_id: str, merchant_id: str, account: SettlementAccount, correlation_id: str
    ) -> Answered:
        """A settlement account to verify by micro-deposit; the verified one stays in use."""
        async with self._pool.acquire() as conn, conn.transaction():
            merchant = await self._locked(conn, owner_key_id, merchant_id)
            latest = await store.latest_binding(conn, merchant_id, lock=True)
            in_use = (
                await store.binding(conn, merchant.binding_in_use)
                if merchant.binding_in_use
                else None
            )
            decision = states.bind_account(
                merchant,
                store.to_binding(latest) if latest is not None else None,
                latest["fingerprint"] if latest is not None else None,
                in_use["fingerprint"] if in_use is not None else None,
                account.fingerprint(),
            )
            if decision.supersede is not None:
                await store.set_binding_state(conn, decision.supersede, BindingState.SUPERSEDED)
            if decision.create:
                binding_id = new_binding_id()
                await store.insert_binding(
                    conn,
                    binding_id,
                    merchant_id,
                    account.account_no,
                    account.account_name,
                    account.bank_name,
                    account.fingerprint(),
                )
                await self._request(
                    conn, merchant_id, RequestKind.BIND, correlation_id, binding_id=binding_id
                )
                log.info("merchant_account_binding", merchant_id=merchant_id, binding_id=binding_id)
            view = await store.fresh_view(conn, merchant_id)
        return Answered(view, underway=_binding_underway(view))

    async def confirm(
        self, owner_key_id: str, merchant_id: str, amount: int, correlation_id: str
    ) -> Answered:
        """The micro-deposit's amount as the merchant read it, sent to the bank to check."""
        async with self._pool.acquire() as conn, conn.transaction():
            merchant = await self._locked(conn, owner_key_id, merchant_id)
            latest = await store.latest_binding(conn, merchant_id, lock=True)
            confirming = states.confirm_amount(
                merchant, store.to_binding(latest) if latest is not None else None
            )
            await store.write_binding(conn, confirming)
            await self._request(
                conn,
                merchant_id,
                RequestKind.CONFIRM,
                correlation_id,
                binding_id=confirming.binding_id,
                amount=amount,
            )
            view = await store.fresh_view(conn, merchant_id)
        return Answered(view, underway=True)

    async def close(self, owner_key_id: str, merchant_id: str, correlation_id: str) -> Answered:
        """CLOSING until the depository confirms; refused while money or orders remain."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await store.lock_merchant(conn, merchant_id, owner_key_id)
            if row is None:
                raise not_found(merchant_id)
            merchant = store.to_merchant(row)
            buckets = Buckets(*await store.buckets_of(conn, row["account_id"]))
            unsettled = 0
            for orders in self._unsettled:
                unsettled += await orders.count(conn, merchant_id)
            closing = states.close(merchant, buckets, unsettled)
            await store.write_merchant(conn, closing)
            latest = await store.latest_binding(conn, merchant_id, lock=True)
            if latest is not None and BindingState(latest["state"]).in_progress:
                await store.set_binding_state(conn, latest["binding_id"], BindingState.SUPERSEDED)
            await self._request(conn, merchant_id, RequestKind.CLOSE, correlation_id)
            view = await store.fresh_view(conn, merchant_id)
        log.info("merchant_closing", merchant_id=merchant_id)
        return Answered(view, underway=True)

    async def get(self, owner_key_id: str, merchant_id: str) -> MerchantView | None:
        async with self._pool.acquire() as conn:
            row = await store.owned(conn, owner_key_id, merchant_id)
            return None if row is None else await store.view(conn, row)

    async def find(self, owner_key_id: str, merchant_no: str) -> MerchantView | None:
        async with self._pool.acquire() as conn:
            row = await store.by_merchant_no(conn, owner_key_id, merchant_no)
            return None if row is None else await store.view(conn, row)

    async def _locked(
        self, conn: Connection, owner_key_id: str, merchant_id: str
    ) -> states.Merchant:
        row = await store.lock_merchant(conn, merchant_id, owner_key_id)
        if row is None:
            raise not_found(merchant_id)
        return store.to_merchant(row)

    async def _request(
        self,
        conn: Connection,
        merchant_id: str,
        kind: RequestKind,
        correlation_id: str,
        *,
        version: int | None = None,
        binding_id: str | None = None,
        amount: int | None = None,
    ) -> None:
        await store.queue_request(
            conn,
            self._topics,
            new_request_id(),
            merchant_id,
            kind,
            correlation_id,
            self._first_poll_s,
            version=version,
            binding_id=binding_id,
            amount=amount,
        )


def _binding_underway(view: MerchantView) -> bool:
    latest = view.bindings[0] if view.bindings else None
    return latest is not None and BindingState(latest["state"]).in_progress
