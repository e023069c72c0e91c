"""Typed results, read from the gateway's camelCase JSON. Amounts are int minor units (fen)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fundhub.client.errors import UnexpectedPayload

PROCESSING = "PROCESSING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"


def _req(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    # bool is an int in Python but never an amount or an id on this wire.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UnexpectedPayload(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def _opt(data: Mapping[str, Any], key: str, kind: type) -> Any:
    return None if data.get(key) is None else _req(data, key, kind)


@dataclass(frozen=True)
class Payee:
    """Who receives a payout: the name and number on the account, and its bank."""

    account_name: str
    account_no: str
    bank_name: str

    def to_wire(self) -> dict[str, str]:
        return {
            "accountName": self.account_name,
            "accountNo": self.account_no,
            "bankName": self.bank_name,
        }


@dataclass(frozen=True)
class Payout:
    """A payout's current state. ``biz_code`` is PROCESSING until the bank settles it.

    A payout the bank returned after paying reads FAILED with ``error_code`` E014_RETURNED.
    """

    pay_id: str
    request_id: str | None
    biz_code: str
    supplier_id: str | None
    amount: int
    currency: str | None
    timestamp: str
    error_code: str | None = None
    msg: str | None = None
    extension: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.biz_code != PROCESSING

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Payout:
        """From a response body or a callback body (both have the same shape)."""
        extension = data.get("extension")
        if extension is not None and not isinstance(extension, dict):
            raise UnexpectedPayload(f"extension: expected object, got {extension!r}")
        return cls(
            pay_id=_req(data, "payId", str),
            request_id=_opt(data, "requestId", str),
            biz_code=_req(data, "bizCode", str),
            supplier_id=_opt(data, "supplierId", str),
            amount=_req(data, "amount", int),
            currency=_opt(data, "currency", str),
            timestamp=_req(data, "timestamp", str),
            error_code=_opt(data, "errorCode", str),
            msg=_opt(data, "msg", str),
            extension=dict(extension or {}),
        )


@dataclass(frozen=True)
class Movement:
    """One posting on an account; ``amount`` is signed (negative leaves the bucket)."""

    movement_id: int
    entry_id: str
    kind: str
    bucket: str
    amount: int
    currency: str | None
    ref_type: str | None
    ref_id: str | None
    description: str
    at: str

    @classmethod
    def from_wire(cls, data: Any) -> Movement:
        if not isinstance(data, Mapping):
            raise UnexpectedPayload(f"movement: expected object, got {data!r}")
        return cls(
            movement_id=_req(data, "movementId", int),
            entry_id=_req(data, "entryId", str),
            kind=_req(data, "kind", str),
            bucket=_req(data, "bucket", str),
            amount=_req(data, "amount", int),
            currency=_opt(data, "currency", str),
            ref_type=_opt(data, "refType", str),
            ref_id=_opt(data, "refId", str),
            description=_opt(data, "description", str) or "",
            at=_req(data, "at", str),
        )


def _movements(data: Mapping[str, Any], key: str) -> tuple[Movement, ...]:
    items = data.get(key)
    if not isinstance(items, list):
        raise UnexpectedPayload(f"{key}: expected array, got {items!r}")
    return tuple(Movement.from_wire(item) for item in items)


@dataclass(frozen=True)
class Balance:
    """An account's buckets as of ``as_of``, with its latest movements from the same snapshot."""

    account_id: str
    currency: str
    available: int
    frozen: int
    pending: int
    total: int
    as_of: str
    movements: tuple[Movement, ...] = ()

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Balance:
        return cls(
            account_id=_req(data, "accountId", str),
            currency=_req(data, "currency", str),
            available=_req(data, "available", int),
            frozen=_req(data, "frozen", int),
            pending=_req(data, "pending", int),
            total=_req(data, "total", int),
            as_of=_req(data, "asOf", str),
            movements=_movements(data, "movements") if "movements" in data else (),
        )


@dataclass(frozen=True)
class Page:
    """One page of movements, newest first; ``next_cursor`` is None on the last page."""

    account_id: str
    items: tuple[Movement, ...]
    next_cursor: str | None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Page:
        return cls(
            account_id=_req(data, "accountId", str),
            items=_movements(data, "items"),
            next_cursor=_opt(data, "nextCursor", str),
        )
