"""A sub-merchant's life, its material versions and its settlement accounts. Pure: no I/O.

    merchant    PENDING_REVIEW -> ACTIVE | REJECTED      (the depository reviews version 1)
                REJECTED -> PENDING_REVIEW               (a new version, reviewed as a new member)
                ACTIVE -> CLOSING -> CLOSED | ACTIVE     (the depository confirms or refuses)
    version     PENDING_REVIEW -> APPROVED | REJECTED
    binding     VERIFYING -> AWAITING_CONFIRMATION | FAILED        (the micro-deposit is sent)
                AWAITING_CONFIRMATION -> CONFIRMING                (the merchant reports an amount)
                CONFIRMING -> VERIFIED | AWAITING_CONFIRMATION | FAILED (the 5th wrong amount)
                VERIFIED -> REPLACED                               (another account verified)
                any unfinished -> SUPERSEDED                       (another account asked for)

An ACTIVE merchant trades on its approved version while a newer one is reviewed: only the
version in force changes when the review approves it. Its verified settlement account stays the
one withdrawals use until another is verified.

Two kinds of function: the *decisions* the API takes on a request (refusing with a clear code
what the state does not allow: ``FundhubError``), and ``on_result``, what the depository's
answer to one of our requests does. Each depository request is answered once (its row is DONE
after), so a result reaching ``on_result`` in a state it does not fit is stale: it changes
nothing, and when it cannot be explained by a later request superseding it, it raises an alert.

Every change a client should hear of is an ``Event`` with a key unique per merchant: the
callback to ``notifyUrl`` is sent once per key (``callback_deliveries``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from fundhub.common.errors import ErrorCode, FundhubError

# Wrong amounts after which a binding fails (the bank allows a few tries a day, 小额鉴权).
MAX_CONFIRMATIONS = 5
TOO_MANY_WRONG_AMOUNTS = f"the micro-deposit amount was reported wrong {MAX_CONFIRMATIONS} times"
AMOUNT_MISMATCH = "the amount does not match the micro-deposit"


class MerchantState(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    ACTIVE = "ACTIVE"
    REJECTED = "REJECTED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"

    @property
    def biz_code(self) -> str:
        """The wire ``bizCode``: waiting on the depository is PROCESSING."""
        if self in (MerchantState.PENDING_REVIEW, MerchantState.CLOSING):
            return "PROCESSING"
        return "FAILED" if self is MerchantState.REJECTED else "SUCCESS"

    @property
    def http_status(self) -> int:
        return 202 if self.biz_code == "PROCESSING" else 200


class VersionState(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class BindingState(StrEnum):
    VERIFYING = "VERIFYING"
    AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION"
    CONFIRMING = "CONFIRMING"
    VERIFIED = "VERIFIED"
    REPLACED = "REPLACED"
    FAILED = "FAILED"
    SUPERSEDED = "SUPERSEDED"

    @property
    def in_progress(self) -> bool:
        return self in _UNFINISHED


_UNFINISHED = frozenset(
    {BindingState.VERIFYING, BindingState.AWAITING_CONFIRMATION, BindingState.CONFIRMING}
)


class RequestKind(StrEnum):
    """What we ask the depository: open a member (review its first version, or a new one after
    a rejection), review a material change, bind a settlement account (it sends the
    micro-deposit), confirm the amount the merchant reported, close the member; and register an
    existing account (data initialisation: a merchant that traded before the depository, whose
    version 1 it takes as it stands, its result settled as an OPEN's)."""

    OPEN = "OPEN"
    MATERIALS = "MATERIALS"
    BIND = "BIND"
    CONFIRM = "CONFIRM"
    CLOSE = "CLOSE"
    REGISTER = "REGISTER"


class ResultStatus(StrEnum):
    """The depository's word on one request (``depository.DepositoryAnswer``)."""

    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    state: MerchantState
    approved_version: int | None
    latest_version: int
    version_pending: bool  # the latest version is under review
    binding_in_use: str | None = None
    reason: str | None = None
    member_no: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", MerchantState(self.state))


@dataclass(frozen=True)
class Binding:
    binding_id: str
    state: BindingState
    failed_attempts: int = 0
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", BindingState(self.state))

    @property
    def attempts_left(self) -> int:
        return max(0, MAX_CONFIRMATIONS - self.failed_attempts)


@dataclass(frozen=True)
class Event:
    """A change the client hears of: ``type`` names it on the wire, ``key`` is unique per
    merchant (a version, a binding or a request number in it) and dedupes its callback."""

    type: str
    key: str


@dataclass(frozen=True)
class VersionChange:
    version: int
    state: VersionState
    reason: str | None = None


@dataclass(frozen=True)
class Change:
    """What one depository result does: the new rows (None: unchanged) and the events.

    ``replaced`` is the binding that was in use until ``binding`` was verified."""

    merchant: Merchant | None = None
    version: VersionChange | None = None
    binding: Binding | None = None
    replaced: str | None = None
    events: tuple[Event, ...] = ()
    stale: bool = False
    alert: bool = False
    note: str = ""


# --- the API's decisions -----------------------------------------------------------------------


def _conflict(message: str) -> FundhubError:
    return FundhubError(ErrorCode.MERCHANT_STATE_CONFLICT, message)


@dataclass(frozen=True)
class NewVersion:
    """A material change to record: the version's number, and the request that reviews it."""

    version: int
    kind: RequestKind
    merchant_state: MerchantState


def change_materials(
    merchant: Merchant, pending_fingerprint: str | None, in_force_fingerprint: str | None, new: str
) -> NewVersion | None:
    """What ``POST …/materials`` does; None when the body is already the version under review
    or, with none under review, the version in force (a repeated request changes nothing)."""
    state = merchant.state
    if state in (MerchantState.CLOSING, MerchantState.CLOSED):
        raise _conflict(f"the merchant is {state}: its material can no longer change")
    if merchant.version_pending:
        if new == pending_fingerprint:
            return None
        raise _conflict(
            f"version {merchant.latest_version} is under review; send a change once it is decided"
        )
    following = merchant.latest_version + 1
    if state is MerchantState.ACTIVE:
        if new == in_force_fingerprint:
            return None
        return NewVersion(following, RequestKind.MATERIALS, MerchantState.ACTIVE)
    # REJECTED (PENDING_REVIEW always has its version under review): a new member review.
    return NewVersion(following, RequestKind.OPEN, MerchantState.PENDING_REVIEW)


@dataclass(frozen=True)
class BindDecision:
    """``create``: a new binding to verify; ``supersede``: the unfinished one it replaces."""

    create: bool
    supersede: str | None = None


def bind_account(
    merchant: Merchant,
    latest: Binding | None,
    latest_fingerprint: str | None,
    in_use_fingerprint: str | None,
    new: str,
) -> BindDecision:
    """What ``POST …/settlement-account`` does. The account being verified again, or the one in
    use with nothing being verified, changes nothing; another account starts a verification
    (superseding an unfinished one), while the verified account stays in use."""
    if merchant.state is not MerchantState.ACTIVE:
        raise _conflict(f"the merchant is {merchant.state}: only an ACTIVE merchant binds accounts")
    unfinished = latest if latest is not None and latest.state.in_progress else None
    if unfinished is not None and new == latest_fingerprint:
        return BindDecision(create=False)
    superseded = unfinished.binding_id if unfinished is not None else None
    if new == in_use_fingerprint:
        return BindDecision(create=False, supersede=superseded)
    return BindDecision(create=True, supersede=superseded)


def confirm_amount(merchant: Merchant, latest: Binding | None) -> Binding:
    """``POST …/settlement-account/verify``: the binding now CONFIRMING (one amount at a time)."""
    if merchant.state is not MerchantState.ACTIVE:
        raise _conflict(f"the merchant is {merchant.state}")
    if latest is None or latest.state is not BindingState.AWAITING_CONFIRMATION:
        shown = "no settlement account" if latest is None else f"the account is {latest.state}"
        if latest is not None and latest.state is BindingState.CONFIRMING:
            shown = "the previous amount is still being checked; retry in a moment"
        raise _conflict(f"no micro-deposit awaits confirmation: {shown}")
    return replace(latest, state=BindingState.CONFIRMING)


@dataclass(frozen=True)
class Buckets:
    available: int
    frozen: int
    pending: int

    @property
    def empty(self) -> bool:
        return self.available == 0 and self.frozen == 0 and self.pending == 0


def close(merchant: Merchant, buckets: Buckets, unsettled_orders: int) -> Merchant:
    """``POST …/close``: CLOSING until the depository confirms, or a refusal saying why."""
    if merchant.state is not MerchantState.ACTIVE:
        raise _conflict(f"the merchant is {merchant.state}: only an ACTIVE merchant can close")
    if merchant.version_pending:
        raise _conflict(f"version {merchant.latest_version} is under review; close once decided")
    if not buckets.empty:
        raise FundhubError(
            ErrorCode.MERCHANT_BALANCE_NOT_ZERO,
            f"the merchant's account holds available {buckets.available}, frozen "
            f"{buckets.frozen}, pending {buckets.pending}: every bucket must be 0",
        )
    if unsettled_orders > 0:
        raise FundhubError(
            ErrorCode.MERCHANT_HAS_UNSETTLED_ORDERS,
            f"the merchant has {unsettled_orders} order(s) not settled yet",
        )
    return replace(merchant, state=MerchantState.CLOSING, reason=None)


# --- what the depository's answer does ----------------------------------------------------------


def on_result(
    kind: RequestKind,
    request_id: str,
    merchant: Merchant,
    version: int | None,
    binding: Binding | None,
    status: ResultStatus,
    reason: str | None,
    member_no: str | None = None,
) -> Change:
    """The change one final result of the request makes (PROCESSING changes nothing)."""
    if status is ResultStatus.PROCESSING:
        return Change(stale=True, note="still processing")
    ok = status is ResultStatus.SUCCESS
    why = reason or ("the depository gave no reason" if not ok else None)
    if kind in (RequestKind.OPEN, RequestKind.REGISTER):
        return _opened(merchant, version, ok, why, member_no)
    if kind is RequestKind.MATERIALS:
        return _reviewed(merchant, version, ok, why)
    if kind is RequestKind.BIND:
        return _deposit(binding, ok, why)
    if kind is RequestKind.CONFIRM:
        return _confirmed(merchant, binding, ok, why)
    return _closed(merchant, request_id, ok, why)


def _stale(note: str, alert: bool = True) -> Change:
    return Change(stale=True, alert=alert, note=note)


def _opened(
    merchant: Merchant, version: int | None, ok: bool, reason: str | None, member_no: str | None
) -> Change:
    if (
        merchant.state is not MerchantState.PENDING_REVIEW
        or version != merchant.latest_version
        or not merchant.version_pending
    ):
        return _stale(f"a review of version {version} for a merchant {merchant.state}")
    assert version is not None
    if ok:
        moved = replace(
            merchant,
            state=MerchantState.ACTIVE,
            approved_version=version,
            version_pending=False,
            member_no=member_no or merchant.member_no,
            reason=None,
        )
        return Change(
            merchant=moved,
            version=VersionChange(version, VersionState.APPROVED),
            events=(Event("MERCHANT_APPROVED", f"ACTIVE:{version}"),),
            note="PENDING_REVIEW -> ACTIVE",
        )
    moved = replace(merchant, state=MerchantState.REJECTED, version_pending=False, reason=reason)
    return Change(
        merchant=moved,
        version=VersionChange(version, VersionState.REJECTED, reason),
        events=(Event("MERCHANT_REJECTED", f"REJECTED:{version}"),),
        note="PENDING_REVIEW -> REJECTED",
    )


def _reviewed(merchant: Merchant, version: int | None, ok: bool, reason: str | None) -> Change:
    if version != merchant.latest_version or not merchant.version_pending:
        return _stale(f"a review of version {version}, which is not under review")
    assert version is not None
    if ok:
        moved = replace(merchant, approved_version=version, version_pending=False)
        return Change(
            merchant=moved,
            version=VersionChange(version, VersionState.APPROVED),
            events=(Event("MATERIALS_APPROVED", f"MATERIALS_APPROVED:{version}"),),
            note=f"version {version} in force",
        )
    return Change(
        merchant=replace(merchant, version_pending=False),
        version=VersionChange(version, VersionState.REJECTED, reason),
        events=(Event("MATERIALS_REJECTED", f"MATERIALS_REJECTED:{version}"),),
        note=f"version {version} rejected; version {merchant.approved_version} stays in force",
    )


def _deposit(binding: Binding | None, ok: bool, reason: str | None) -> Change:
    if binding is None or binding.state is not BindingState.VERIFYING:
        return _superseded_or_stale(binding, "a micro-deposit")
    if ok:
        return Change(
            binding=replace(binding, state=BindingState.AWAITING_CONFIRMATION, reason=None),
            events=(
                Event("SETTLEMENT_ACCOUNT_DEPOSIT_SENT", f"DEPOSIT_SENT:{binding.binding_id}"),
            ),
            note="micro-deposit sent",
        )
    return _binding_failed(binding, reason)


def _confirmed(merchant: Merchant, binding: Binding | None, ok: bool, reason: str | None) -> Change:
    if binding is None or binding.state is not BindingState.CONFIRMING:
        return _superseded_or_stale(binding, "a confirmation")
    if ok:
        verified = replace(binding, state=BindingState.VERIFIED, reason=None)
        return Change(
            merchant=replace(merchant, binding_in_use=binding.binding_id),
            binding=verified,
            replaced=merchant.binding_in_use,
            events=(Event("SETTLEMENT_ACCOUNT_VERIFIED", f"VERIFIED:{binding.binding_id}"),),
            note="settlement account verified and in use",
        )
    wrong = binding.failed_attempts + 1
    if wrong >= MAX_CONFIRMATIONS:
        return _binding_failed(replace(binding, failed_attempts=wrong), TOO_MANY_WRONG_AMOUNTS)
    again = replace(
        binding,
        state=BindingState.AWAITING_CONFIRMATION,
        failed_attempts=wrong,
        reason=reason or AMOUNT_MISMATCH,
    )
    return Change(
        binding=again,
        events=(
            Event("SETTLEMENT_ACCOUNT_AMOUNT_MISMATCH", f"MISMATCH:{binding.binding_id}:{wrong}"),
        ),
        note=f"wrong amount {wrong} of {MAX_CONFIRMATIONS}",
    )


def _binding_failed(binding: Binding, reason: str | None) -> Change:
    return Change(
        binding=replace(binding, state=BindingState.FAILED, reason=reason),
        events=(Event("SETTLEMENT_ACCOUNT_FAILED", f"ACCOUNT_FAILED:{binding.binding_id}"),),
        note="binding failed",
    )


def _superseded_or_stale(binding: Binding | None, what: str) -> Change:
    if binding is not None and binding.state is BindingState.SUPERSEDED:
        return _stale(f"{what} for a superseded binding", alert=False)
    shown = "no binding" if binding is None else f"a binding {binding.state}"
    return _stale(f"{what} for {shown}")


def _closed(merchant: Merchant, request_id: str, ok: bool, reason: str | None) -> Change:
    if merchant.state is not MerchantState.CLOSING:
        return _stale(f"a close result for a merchant {merchant.state}")
    if ok:
        return Change(
            merchant=replace(merchant, state=MerchantState.CLOSED),
            events=(Event("MERCHANT_CLOSED", "CLOSED"),),
            note="CLOSING -> CLOSED",
        )
    return Change(
        merchant=replace(merchant, state=MerchantState.ACTIVE, reason=reason),
        events=(Event("MERCHANT_CLOSE_REFUSED", f"CLOSE_REFUSED:{request_id}"),),
        note="CLOSING -> ACTIVE: the depository refused to close",
    )
