"""Every kind of bad notification is refused with its reason: nothing published, nothing posted."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from support.kafka import message_count
from support.ledger import counts

from e2e.conftest import Stack
from fundhub.bank_simulator.notifications import TransferSpec, build_notification, resign
from fundhub.common.clock import utcnow
from fundhub.common.signing import generate_rsa_keypair
from fundhub.common.topics import topics

Params = dict[str, Any]


def _biz(change: Callable[[dict[str, Any]], None]) -> Callable[[Params, str], Params]:
    """Edit biz_content, then sign correctly: only the content is wrong."""

    def apply(params: Params, key: str) -> Params:
        biz = json.loads(params["biz_content"])
        change(biz)
        params["biz_content"] = json.dumps(biz, ensure_ascii=False)
        return resign(params, key)

    return apply


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda biz: biz.__setitem__(field, value)


def _drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda biz: biz.pop(field)


def _tamper(params: Params, key: str) -> Params:
    signed = resign(params, key)
    biz = json.loads(signed["biz_content"])
    biz["trans_amount"] = "999999"
    signed["biz_content"] = json.dumps(biz)
    return signed


def _other_key(params: Params, key: str) -> Params:
    return resign(params, generate_rsa_keypair()[0])


def _unknown_app(params: Params, key: str) -> Params:
    params["app_id"] = "20990101000000000000000000"
    return resign(params, key)


def _at(delta: timedelta) -> Callable[[Params, str], Params]:
    return lambda params, key: resign(params, key, now=utcnow() + delta)


def _public(field: str, value: Any) -> Callable[[Params, str], Params]:
    def apply(params: Params, key: str) -> Params:
        signed = resign(params, key)
        signed[field] = value
        # A non-string cannot be signed at all: it is sent under the previous signature.
        return resign(signed, key) if isinstance(value, str) else signed

    return apply


CASES: dict[str, tuple[Callable[[Params, str], Params], str]] = {
    "tampered amount": (_tamper, "signature"),
    "signed by another key": (_other_key, "signature"),
    "unknown app_id": (_unknown_app, "app_id"),
    "stale timestamp": (_at(timedelta(minutes=-11)), "timestamp"),
    "future timestamp": (_at(timedelta(minutes=11)), "timestamp"),
    "bad sign_type": (_public("sign_type", "RSA"), "sign_type"),
    "bad version": (_public("version", "2.0"), "version"),
    "bad format": (_public("format", "xml"), "format"),
    "bad charset": (_public("charset", "GBK"), "charset"),
    "app_id not a string": (_public("app_id", 20210911888888888888888888), "app_id"),
    "biz_content not JSON": (_public("biz_content", "{not json"), "biz_content"),
    "biz_content a JSON array": (_public("biz_content", "[]"), "biz_content"),
    "missing in_acct_no": (_biz(_drop("in_acct_no")), "in_acct_no"),
    "missing record_id": (_biz(_drop("record_id")), "record_id"),
    "amount as a number": (_biz(_set("trans_amount", 100)), "trans_amount"),
    "negative amount": (_biz(_set("trans_amount", "-100")), "trans_amount"),
    "decimal amount": (_biz(_set("trans_amount", "100.50")), "trans_amount"),
    "17-digit amount": (_biz(_set("trans_amount", "1" * 17)), "trans_amount"),
    "oversize record_id": (_biz(_set("record_id", "r" * 33)), "record_id"),
    "oversize in_acct_name": (_biz(_set("in_acct_name", "名" * 101)), "in_acct_name"),
    "unknown channel": (_biz(_set("channel", "09")), "channel"),
    "unknown deduct_status": (_biz(_set("deduct_status", "2")), "deduct_status"),
    "unknown reverse_flag": (_biz(_set("reverse_flag", "3")), "reverse_flag"),
    "unknown currency": (_biz(_set("ccy_code", "USD")), "ccy_code"),
    "bad trans_time": (_biz(_set("trans_time", "2025/06/01 15:20:33")), "trans_time"),
    "bad host_tx_date": (_biz(_set("host_tx_date", "20250601")), "host_tx_date"),
    "store_list not an array": (_biz(_set("store_list", '{"store_id":"S1"}')), "store_list"),
    "store without a name": (_biz(_set("store_list", '[{"store_id":"S1"}]')), "store_list"),
    "NUL in a name": (_biz(_set("in_acct_name", "a\u0000b")), "in_acct_name"),
    "NUL in a public parameter": (_public("app_auth_token", "t\u0000"), "app_auth_token"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_with_reason_and_nothing_changes(stack: Stack, case: str) -> None:
    make, reason_word = CASES[case]
    key = stack.env.bank.private_pem
    good = build_notification(
        TransferSpec(
            record_id=f"bad-{abs(hash(case)) % 10**8}", in_acct_no="6222000555001", trans_amount=100
        ),
        stack.env.app_id,
        key,
    )
    names = topics(stack.env.settings)
    published_before = [
        await message_count(stack.env.settings, t)
        for t in (names.bank_transfer_notify, names.bank_notify_unhandled)
    ]
    ledger_before = await counts(stack.env.pool)

    response = await stack.post(make(dict(good), key))

    assert response.text.startswith("fail"), response.text
    assert reason_word in response.text, response.text
    assert response.status_code in (400, 401, 413)
    published_after = [
        await message_count(stack.env.settings, t)
        for t in (names.bank_transfer_notify, names.bank_notify_unhandled)
    ]
    assert published_after == published_before
    assert await counts(stack.env.pool) == ledger_before


async def test_malformed_json_body_is_refused(stack: Stack) -> None:
    response = await stack.http.post(
        "/callbacks/bank", content=b'{"app_id": "x", ', headers={"content-type": "application/json"}
    )
    assert (
        response.status_code == 400 and response.text.startswith("fail") and "JSON" in response.text
    )


async def test_key_order_and_whitespace_do_not_matter(stack: Stack) -> None:
    notice = build_notification(
        TransferSpec(record_id="order-1", in_acct_no="6222000555002", trans_amount=100),
        stack.env.app_id,
        stack.env.bank.private_pem,
    )
    reordered = dict(reversed(list(notice.items())))
    body = json.dumps(reordered, indent=4, ensure_ascii=False).encode()
    response = await stack.http.post(
        "/callbacks/bank", content=body, headers={"content-type": "application/json"}
    )
    assert response.text == "success"
