"""Alipay as a protocol: its async notify (a signed form) as a ``ChannelEvent``, the signature
of our gateway requests and the check of its answers. No I/O.

A notification is ``application/x-www-form-urlencoded``. It is read strictly before anything
else: bounded size and count, every name once (a parameter given twice could be read one way
here and another way by whoever reads it next), valid UTF-8, no NUL. Its canonical string is
every parameter but ``sign`` and ``sign_type``, URL-decoded, sorted by name, ``k=v`` joined
with ``&`` (parameters with an empty value are dropped: nothing signs them); ``sign`` is
SHA256withRSA of it under Alipay's public key for the ``app_id``. Then ``seller_id`` must be
the app's: Alipay's key verifies any app's notices where one key serves several apps.

Amounts are yuan strings (``"12.30"``), read into exact fen by ``common.money.parse_yuan``.

Our requests are forms to the gateway (``app_id``, ``method``, ``charset``, ``sign_type``
``RSA2``, ``timestamp``, ``version``, ``biz_content``…) signed over every non-empty parameter
but ``sign`` with the app's private key; an answer is ``{"<method>_response": {...}, "sign":
"..."}`` whose ``sign`` covers the exact text of the response object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from fundhub.channels.events import Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.channels.notification import (
    NotificationRefused,
    channel_event,
    china_time,
    ident,
    malformed,
    strict_object,
    text,
    unverified,
)
from fundhub.common.clock import format_bank_time
from fundhub.common.forms import form_value
from fundhub.common.money import MoneyError, parse_yuan
from fundhub.common.signing import (
    rsa2_sign,
    rsa2_signing_string,
    rsa2_verify,
    rsa_sha256_sign,
    rsa_sha256_verify,
)

# A real notice is 1 to 2 KiB (subject, body and fund_bill_list are its long parts).
MAX_NOTIFY_BYTES = 16 * 1024
MAX_PARAMS = 64
MAX_VALUE_CHARS = 4096
SIGN_EXCLUDES = ("sign", "sign_type")
ANSWER_SUCCESS = "success"  # the exact 7 characters Alipay waits for
ANSWER_FAIL = "fail"
NOTIFY_TYPE = "trade_status_sync"
SIGN_TYPE = "RSA2"
CHARSET = "utf-8"
GATEWAY_VERSION = "1.0"

TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
TRADE_CLOSED = "TRADE_CLOSED"
WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
_TRADE_STATUSES = frozenset({TRADE_SUCCESS, TRADE_FINISHED, TRADE_CLOSED, WAIT_BUYER_PAY})

_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_NOTIFY_ID = re.compile(r"[\x21-\x7e]{1,128}")
_WHITESPACE = re.compile(r"[ \t\r\n]*")
MAX_ANSWER_BYTES = 64 * 1024


# --- notifications -------------------------------------------------------------------------


def parse_form(body: bytes) -> dict[str, str]:
    """The notice's parameters: at most ``MAX_PARAMS``, each name once and well-formed, each
    value valid UTF-8 of at most ``MAX_VALUE_CHARS`` without NUL; empty ones dropped."""
    if len(body) > MAX_NOTIFY_BYTES:
        raise malformed(f"body: more than {MAX_NOTIFY_BYTES} bytes")
    try:
        fields = body.decode("utf-8").split("&")
    except UnicodeDecodeError:
        raise malformed("body: not UTF-8") from None
    if len(fields) > MAX_PARAMS:
        raise malformed(f"body: more than {MAX_PARAMS} parameters")
    params: dict[str, str] = {}
    for field in fields:
        name, equals, value = field.partition("=")
        if not equals or not _PARAM_NAME.fullmatch(name):
            raise malformed("body: a parameter that is not name=value")
        value = _form_decoded(value)
        if name in params:
            raise malformed(f"{name}: given twice")
        if len(value) > MAX_VALUE_CHARS or "\x00" in value:
            raise malformed(f"{name}: longer than {MAX_VALUE_CHARS} characters or not text")
        params[name] = value
    return {name: value for name, value in params.items() if value != ""}


def _form_decoded(value: str) -> str:
    """``application/x-www-form-urlencoded``: ``+`` is a space, ``%XX`` a byte of UTF-8.

    By hand rather than ``parse_qsl``, which cost the gateway more than the RSA verification."""
    try:
        return form_value(value)
    except UnicodeDecodeError:
        raise malformed("body: a value that is not UTF-8") from None


def check_public(params: Mapping[str, str]) -> None:
    """What makes it an async notify of the trade API, before the signature is checked."""
    ident(params, "app_id")
    text(params, "sign", 1024)
    if not _NOTIFY_ID.fullmatch(params.get("notify_id", "")):
        raise malformed("notify_id: missing or not 1 to 128 printable characters")
    if params.get("sign_type") != SIGN_TYPE:
        raise unverified("sign_type is not RSA2")
    if params.get("notify_type", NOTIFY_TYPE) != NOTIFY_TYPE:
        raise malformed("notify_type: not trade_status_sync")
    if params.get("charset", CHARSET).lower() != CHARSET:
        raise malformed("charset: only utf-8 is taken")


def canonical_string(params: Mapping[str, str]) -> bytes:
    """What ``sign`` covers: every parameter but ``sign`` and ``sign_type``, sorted, k=v&k=v."""
    return rsa2_signing_string(params, SIGN_EXCLUDES)


def verifies(params: Mapping[str, str], public_key: RSAPublicKey) -> bool:
    return rsa2_verify(params, params.get("sign", ""), public_key, SIGN_EXCLUDES)


def sign_notification(params: Mapping[str, str], private_key: RSAPrivateKey) -> str:
    """Sign as Alipay signs its notices (the simulator's side)."""
    return rsa2_sign(params, private_key, SIGN_EXCLUDES)


def check_owner(params: Mapping[str, str], app_id: str, seller_id: str) -> None:
    """A genuine notice for another seller (one Alipay key may serve several apps)."""
    if params.get("app_id") != app_id or params.get("seller_id") != seller_id:
        raise unverified("a notification for another Alipay app")


def yuan(params: Mapping[str, str], name: str) -> int:
    try:
        return parse_yuan(text(params, name, 20))
    except MoneyError:
        raise malformed(f"{name}: not yuan with at most two decimals") from None


def event_of(params: Mapping[str, str]) -> ChannelEvent | None:
    """The verified notice as a ``ChannelEvent``; None for ``WAIT_BUYER_PAY`` (nothing
    happened that anyone acts on: acknowledged, not published)."""
    status = text(params, "trade_status", 32)
    if status not in _TRADE_STATUSES:
        raise malformed(f"trade_status {status!r} is not one of Alipay's")
    if status == WAIT_BUYER_PAY:
        return None
    notify_time = china_time(params, "notify_time")
    assert notify_time is not None
    common: dict[str, Any] = {
        "channel": Channel.ALIPAY,
        "app_id": ident(params, "app_id"),
        "merchant_ref": ident(params, "seller_id"),
        "notification_id": params["notify_id"],
        "out_trade_no": ident(params, "out_trade_no"),
        "transaction_id": ident(params, "trade_no"),
        "total_fen": yuan(params, "total_amount"),
    }
    refund_no = ident(params, "out_biz_no", required=False)
    if refund_no or "refund_fee" in params:
        if status == TRADE_FINISHED:
            raise malformed("a refund notice of a finished trade")
        if not refund_no:
            raise malformed("refund_fee without out_biz_no")
        return channel_event(
            **common,
            kind=EventKind.REFUND,
            occurred_at=_when(params, "gmt_refund", notify_time),
            out_refund_no=refund_no,
            refund_status=RefundStatus.SUCCESS,
            refunded_total_fen=yuan(params, "refund_fee"),
        )
    if status == TRADE_CLOSED:
        return channel_event(
            **common, kind=EventKind.CLOSED, occurred_at=_when(params, "gmt_close", notify_time)
        )
    return channel_event(
        **common, kind=EventKind.PAYMENT, occurred_at=_when(params, "gmt_payment", notify_time)
    )


def _when(params: Mapping[str, str], name: str, otherwise: datetime) -> datetime:
    return china_time(params, name, required=False) or otherwise


# --- our requests and Alipay's answers -------------------------------------------------------


def request_params(
    app_id: str,
    method: str,
    biz_content: Mapping[str, Any],
    private_key: RSAPrivateKey,
    now: datetime,
    notify_url: str | None = None,
) -> dict[str, str]:
    """A signed gateway request: the public parameters, ``biz_content`` as JSON, ``sign``."""
    params = {
        "app_id": app_id,
        "method": method,
        "format": "JSON",
        "charset": CHARSET,
        "sign_type": SIGN_TYPE,
        "timestamp": format_bank_time(now),
        "version": GATEWAY_VERSION,
        "biz_content": json.dumps(dict(biz_content), ensure_ascii=False, separators=(",", ":")),
    }
    if notify_url:
        params["notify_url"] = notify_url
    params["sign"] = rsa2_sign(params, private_key, ("sign",))
    return params


def request_verifies(params: Mapping[str, str], public_key: RSAPublicKey) -> bool:
    """A gateway request's signature (the simulator's side): every parameter but ``sign``."""
    return rsa2_verify(params, params.get("sign", ""), public_key, ("sign",))


def response_name(method: str) -> str:
    """``alipay.trade.precreate`` answers in ``alipay_trade_precreate_response``."""
    return method.replace(".", "_") + "_response"


@dataclass(frozen=True)
class Answer:
    """An answer of the gateway: its response object, that object's exact text, its sign."""

    node: dict[str, Any]
    raw: str
    sign: str | None

    @property
    def code(self) -> str:
        return str(self.node.get("code", ""))

    def verifies(self, public_key: RSAPublicKey) -> bool:
        return self.sign is not None and rsa_sha256_verify(
            self.raw.encode("utf-8"), self.sign, public_key
        )


def read_answer(body: bytes, method: str) -> Answer:
    """The response object of ``method`` (or ``error_response``) with its exact text, which the
    signature covers; ValueError for anything else."""
    if len(body) > MAX_ANSWER_BYTES:
        raise ValueError("answer larger than 64 KiB")
    document_text = body.decode("utf-8")
    try:
        document = strict_object(document_text, "answer", max_keys=16)
    except NotificationRefused as exc:
        raise ValueError(exc.reason) from None
    for name in (response_name(method), "error_response"):
        node = document.get(name)
        if isinstance(node, dict):
            sign = document.get("sign")
            raw = _raw_member(document_text, name)
            return Answer(node, raw, sign if isinstance(sign, str) else None)
    raise ValueError(f"answer without {response_name(method)}")


def _raw_member(document: str, name: str) -> str:
    """The exact text of the top-level member ``name`` of a JSON object (already validated)."""
    decoder = json.JSONDecoder()
    index = _WHITESPACE.match(document, 0).end()  # type: ignore[union-attr]
    if document[index : index + 1] != "{":
        raise ValueError("answer: not a JSON object")
    index += 1
    while True:
        index = _WHITESPACE.match(document, index).end()  # type: ignore[union-attr]
        key, index = decoder.raw_decode(document, index)
        index = _WHITESPACE.match(document, index).end()  # type: ignore[union-attr]
        if document[index : index + 1] != ":":
            raise ValueError("answer: not a JSON object")
        start = _WHITESPACE.match(document, index + 1).end()  # type: ignore[union-attr]
        _, end = decoder.raw_decode(document, start)
        if key == name:
            return document[start:end]
        index = _WHITESPACE.match(document, end).end()  # type: ignore[union-attr]
        if document[index : index + 1] != ",":
            raise ValueError(f"answer: no member {name}")
        index += 1


def signed_answer(method: str, node: Mapping[str, Any], private_key: RSAPrivateKey) -> bytes:
    """An answer as Alipay writes it (the simulator's side): the node, then its ``sign``."""
    raw = json.dumps(dict(node), ensure_ascii=False, separators=(",", ":"))
    sign = rsa_sha256_sign(raw.encode("utf-8"), private_key)
    return (f'{{"{response_name(method)}":{raw},"sign":"{sign}"}}').encode()
