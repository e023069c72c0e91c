"""Merchant bodies for tests: valid identity and licence numbers written out here (their check
characters computed by hand from GB 11643 and GB 32100, not by the code under test); and, for
the orders' tests, merchants written directly as the merchants context would have registered
them (their rows and ledger accounts)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

# Resident identity numbers (居民身份证) with a correct check character.
RESIDENT_IDS = ("110101199003074573", "310115198511223011", "440300197712310024")
# A well-known published sample, check character X.
RESIDENT_ID_X = "11010519491231002X"
# Unified social credit codes (统一社会信用代码) with a correct check character.
LICENCES = ("91350100M000100Y43", "91110000600037341L", "91310000MA1FL0000N")


def materials(name: str = "Acme Trading", **changes: Any) -> dict[str, Any]:
    """An ENTERPRISE's material; a change to None removes the field."""
    body: dict[str, Any] = {
        "name": name,
        "type": "ENTERPRISE",
        "legalPerson": {"name": "张三", "idType": "RESIDENT_ID", "idNumber": RESIDENT_IDS[0]},
        "licence": {"licenceNo": LICENCES[0], "validUntil": "2035-12-31"},
        "contact": {"name": "李四", "phone": "13800138000", "email": "ops@acme.example"},
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def registration(merchant_no: str, name: str = "Acme Trading", **changes: Any) -> dict[str, Any]:
    return {"merchantNo": merchant_no, **materials(name, **changes)}


def individual(merchant_no: str, name: str = "Wang Wu's shop") -> dict[str, Any]:
    body = registration(merchant_no, name, licence=None)
    body["type"] = "INDIVIDUAL"
    body["legalPerson"] = {"name": "王五", "idType": "RESIDENT_ID", "idNumber": RESIDENT_IDS[1]}
    return body


def account(account_no: str = "6222020200112233445", name: str = "Acme Trading") -> dict[str, Any]:
    return {"accountNo": account_no, "accountName": name, "bankName": "Ping An Bank"}


def raw(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    account_id: str


async def add_merchant(
    pool: asyncpg.Pool, owner_key_id: str, state: str = "ACTIVE", currency: str = "CNY"
) -> Merchant:
    """A merchant of ``owner_key_id`` in ``state``, with its ledger account and balance row."""
    suffix = uuid.uuid4().hex[:16]
    merchant = Merchant(f"mch_{suffix}", f"M{suffix}")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (account_id, kind, currency, name) VALUES ($1, 'customer', $2, $3)",
            merchant.account_id,
            currency,
            f"merchant {merchant.merchant_id}",
        )
        await conn.execute(
            "INSERT INTO account_balances (account_id, currency) VALUES ($1, $2)",
            merchant.account_id,
            currency,
        )
        await conn.execute(
            "INSERT INTO merchants (merchant_id, owner_key_id, merchant_no, state, account_id,"
            " currency) VALUES ($1, $2, $3, $4, $5, $6)",
            merchant.merchant_id,
            owner_key_id,
            f"no-{suffix}",
            state,
            merchant.account_id,
            currency,
        )
    return merchant


async def set_state(pool: asyncpg.Pool, merchant: Merchant, state: str) -> None:
    await pool.execute(
        "UPDATE merchants SET state = $2 WHERE merchant_id = $1", merchant.merchant_id, state
    )
