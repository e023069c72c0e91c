"""POST /v1/payouts bodies: strict parsing, refusals that name the field, stable fingerprints."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from fundhub.payouts.request import (
    EXTENSION_MAX_BYTES,
    PAY_ID_PATTERN,
    InvalidPayout,
    Payee,
    PayoutRequest,
    new_pay_id,
    parse_payout_request,
)
from fundhub.webhooks.destinations import CallbackAddresses

AMOUNT_MESSAGE = "amount: must be a positive integer of at most 16 digits"


def body(**changes: Any) -> dict[str, Any]:
    """A valid request; a change to None removes the field."""
    document: dict[str, Any] = {
        "requestId": "req-2025.06.01:0001",
        "supplierId": "SUP10001",
        "payerAccountId": "6222020000000001",
        "amount": 1000,
        "currency": "CNY",
        "payee": {
            "accountName": "上海某某供应链有限公司",
            "accountNo": "6217000010001234567",
            "bankName": "中国建设银行上海分行",
        },
        "purpose": "invoice 2025-0601",
        "callbackUrl": "https://erp.example.com/hooks/payouts",
        "extension": {"orderNo": "SO-1", "lines": [1, 2.5, None, True]},
    }
    return changed(document, changes)


def changed(document: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``changes`` made in place: a change to None removes the field."""
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def raw(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def refusal(document: Any) -> str:
    with pytest.raises(InvalidPayout) as caught:
        parse_payout_request(document if isinstance(document, bytes) else raw(document))
    return str(caught.value)


CALLBACK_NOT_ALLOWED = (
    "callbackUrl: must not point to a loopback, private, link-local, multicast or reserved "
    "address (in any notation) or to localhost"
)
CALLBACK_INVALID = (
    "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info"
)
INTERNAL_CALLBACKS = [
    "http://127.0.0.1/cb",
    "http://127.0.0.1:8000/cb",
    "https://127.0.0.1./cb",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0/",
    "http://0.0.0.0:5432/",
    "http://localhost/",
    "http://LOCALHOST:8003/",
    "http://localhost./",
    "http://admin.localhost/",
    "http://[::1]/",
    "http://[::1]:8000/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::]/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://10.0.0.5/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
]


@pytest.mark.parametrize("url", INTERNAL_CALLBACKS)
def test_callback_urls_inside_are_refused_in_every_notation(url: str) -> None:
    assert refusal(body(callbackUrl=url)) == CALLBACK_NOT_ALLOWED


@pytest.mark.parametrize(
    "url",
    [
        "http://%31%32%37.0.0.1/",
        "http://127.0.0.1\\.example.com/",
        "http://example..com/",
        "http://256.0.0.1/",
        "http://08.0.0.1/",
        "http://1.2.3.4.5/",
    ],
)
def test_callback_hosts_that_are_neither_name_nor_address_are_invalid(url: str) -> None:
    assert refusal(body(callbackUrl=url)) == CALLBACK_INVALID


@pytest.mark.parametrize(
    "url",
    [
        "https://erp.example.com/hooks/payouts",
        "https://callbacks.example.com./hooks",
        "http://8.8.8.8:8080/cb",
        "https://[2001:4860:4860::8888]/cb",
        "https://localhost.example.com/cb",  # a public name: its addresses are checked later
    ],
)
def test_public_callback_urls_are_accepted(url: str) -> None:
    assert parse_payout_request(raw(body(callbackUrl=url))).callback_url == url


def test_an_allowed_range_lets_a_local_receiver_through() -> None:
    allow = CallbackAddresses.allowing(["127.0.0.1/32"])
    for url in ("http://127.0.0.1:8080/cb", "http://localhost:8080/cb", "http://0x7f000001/"):
        request = parse_payout_request(raw(body(callbackUrl=url)), allow)
        assert request.callback_url == url
    with pytest.raises(InvalidPayout, match="must not point"):
        parse_payout_request(raw(body(callbackUrl="http://10.0.0.1/")), allow)


def payee(**changes: Any) -> dict[str, Any]:
    return changed(dict(body()["payee"]), changes)


def test_a_valid_request_parses() -> None:
    request = parse_payout_request(raw(body()))
    assert request.request_id == "req-2025.06.01:0001"
    assert request.amount == 1000
    assert request.currency == "CNY"
    assert request.payee == Payee(
        account_name="上海某某供应链有限公司",
        account_no="6217000010001234567",
        bank_name="中国建设银行上海分行",
    )
    assert request.extension == {"orderNo": "SO-1", "lines": [1, 2.5, None, True]}


def test_optional_fields_may_be_absent_or_null() -> None:
    minimal = parse_payout_request(raw(body(purpose=None, callbackUrl=None, extension=None)))
    assert (minimal.purpose, minimal.callback_url, minimal.extension) == (None, None, None)
    nulls = body()
    nulls.update(purpose=None, callbackUrl=None, extension=None)
    assert parse_payout_request(raw(nulls)) == minimal
    assert parse_payout_request(raw(nulls)).fingerprint() == minimal.fingerprint()


def test_rmb_is_read_as_cny() -> None:
    assert parse_payout_request(raw(body(currency="RMB"))).currency == "CNY"
    assert parse_payout_request(raw(body(currency="USD"))).currency == "USD"


@pytest.mark.parametrize(
    "amount",
    [0, -1, 1.0, 10.5, "1000", True, False, 10**16, -(10**15), [1000], {"v": 1}],
)
def test_amount_must_be_a_positive_integer_of_at_most_16_digits(amount: Any) -> None:
    assert refusal(body(amount=amount)) == AMOUNT_MESSAGE


def test_amount_bounds() -> None:
    assert parse_payout_request(raw(body(amount=1))).amount == 1
    assert parse_payout_request(raw(body(amount=10**16 - 1))).amount == 10**16 - 1
    without = raw(body(amount=None))[:-1]
    assert refusal(without + b', "amount": 1e3}') == AMOUNT_MESSAGE
    assert refusal(without + b', "amount": 1000.0}') == AMOUNT_MESSAGE
    assert refusal(without + b', "amount": ' + b"9" * 40 + b"}") == AMOUNT_MESSAGE


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("requestId", "", "requestId: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
        ("requestId", "x" * 65, "requestId: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
        ("requestId", "has space", "requestId: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
        ("requestId", 12, "requestId: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
        (
            "supplierId",
            "",
            "supplierId: must be 1 to 32 characters, not blank, without control characters",
        ),
        (
            "supplierId",
            "s" * 33,
            "supplierId: must be 1 to 32 characters, not blank, without control characters",
        ),
        (
            "supplierId",
            "   ",
            "supplierId: must be 1 to 32 characters, not blank, without control characters",
        ),
        (
            "supplierId",
            "a\tb",
            "supplierId: must be 1 to 32 characters, not blank, without control characters",
        ),
        (
            "payerAccountId",
            "acct/1",
            "payerAccountId: must be 1 to 32 characters of A-Z a-z 0-9 _ -",
        ),
        (
            "payerAccountId",
            "1" * 33,
            "payerAccountId: must be 1 to 32 characters of A-Z a-z 0-9 _ -",
        ),
        ("currency", "XYZ", "currency: must be one of CNY, EUR, HKD, USD (RMB is read as CNY)"),
        ("currency", "cny", "currency: must be one of CNY, EUR, HKD, USD (RMB is read as CNY)"),
        ("currency", 156, "currency: must be one of CNY, EUR, HKD, USD (RMB is read as CNY)"),
        ("payee", "someone", "payee: must be an object with accountName, accountNo and bankName"),
        ("payee", [], "payee: must be an object with accountName, accountNo and bankName"),
        (
            "purpose",
            "p" * 201,
            "purpose: must be a string of at most 200 characters without control characters",
        ),
        (
            "purpose",
            5,
            "purpose: must be a string of at most 200 characters without control characters",
        ),
        (
            "callbackUrl",
            "ftp://erp.example.com/x",
            "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info",
        ),
        (
            "callbackUrl",
            "https://",
            "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info",
        ),
        (
            "callbackUrl",
            "not a url",
            "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info",
        ),
        (
            "callbackUrl",
            "https://user:pw@erp.example.com/",
            "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info",
        ),
        (
            "callbackUrl",
            "https://erp.example.com:99999/",
            "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info",
        ),
        (
            "callbackUrl",
            "https://erp.example.com/" + "a" * 500,
            "callbackUrl: must be an http(s) URL of at most 512 ASCII characters, without user info",
        ),
        (
            "extension",
            [1, 2],
            f"extension: must be a JSON object of at most {EXTENSION_MAX_BYTES} bytes",
        ),
        (
            "extension",
            "{}",
            f"extension: must be a JSON object of at most {EXTENSION_MAX_BYTES} bytes",
        ),
        (
            "extension",
            {"blob": "x" * EXTENSION_MAX_BYTES},
            f"extension: must be a JSON object of at most {EXTENSION_MAX_BYTES} bytes",
        ),
    ],
)
def test_each_refusal_names_its_field(field: str, value: Any, message: str) -> None:
    assert refusal(body(**{field: value})) == message


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "accountName",
            "",
            "payee.accountName: must be 1 to 100 characters, not blank, without control characters",
        ),
        (
            "accountName",
            "n" * 101,
            "payee.accountName: must be 1 to 100 characters, not blank, without control characters",
        ),
        ("accountNo", "6217-0000", "payee.accountNo: must be 1 to 34 characters of A-Z a-z 0-9"),
        ("accountNo", "1" * 35, "payee.accountNo: must be 1 to 34 characters of A-Z a-z 0-9"),
        (
            "accountNo",
            6217000010001234567,
            "payee.accountNo: must be 1 to 34 characters of A-Z a-z 0-9",
        ),
        (
            "bankName",
            "b" * 121,
            "payee.bankName: must be 1 to 120 characters, not blank, without control characters",
        ),
    ],
)
def test_payee_refusals_name_the_nested_field(field: str, value: Any, message: str) -> None:
    assert refusal(body(payee=payee(**{field: value}))) == message


def test_limits_are_inclusive() -> None:
    request = parse_payout_request(
        raw(
            body(
                requestId="r" * 64,
                supplierId="s" * 32,
                payerAccountId="a" * 32,
                payee=payee(accountName="n" * 100, accountNo="1" * 34, bankName="b" * 120),
                purpose="p" * 200,
                callbackUrl="http://h.example/" + "a" * (512 - len("http://h.example/")),
                extension={"blob": "x" * (EXTENSION_MAX_BYTES - len('{"blob":""}'))},
            )
        )
    )
    assert len(request.request_id) == 64


def test_extension_size_counts_utf8_bytes_of_compact_json() -> None:
    fits = {"k": "界" * ((EXTENSION_MAX_BYTES - len('{"k":""}')) // 3)}
    assert parse_payout_request(raw(body(extension=fits))).extension == fits
    too_big = {"k": fits["k"] + "界"}
    assert refusal(body(extension=too_big)).startswith("extension: ")


@pytest.mark.parametrize(
    "field", ["requestId", "supplierId", "payerAccountId", "amount", "currency", "payee"]
)
def test_missing_required_fields(field: str) -> None:
    assert refusal(body(**{field: None})) == f"{field}: required"


def test_missing_payee_field() -> None:
    assert refusal(body(payee=payee(accountNo=None))) == "payee.accountNo: required"


def test_unknown_fields_are_refused() -> None:
    assert refusal(body(unknownField=1)) == "unknownField: not allowed"
    assert refusal(body(payee=payee(iban="DE00"))) == "payee.iban: not allowed"


def test_snake_case_names_are_not_wire_names() -> None:
    document = body(requestId=None)
    document["request_id"] = "req-1"
    assert refusal(document) == "requestId: required"


def test_a_long_unknown_name_is_shortened_in_the_message() -> None:
    message = refusal(body(**{"x" * 500: 1}))
    assert message == "x" * 64 + "…: not allowed"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "body: not valid JSON"),
        (b"{", "body: not valid JSON"),
        (b"[1, 2]", "body: not a JSON object"),
        (b'"text"', "body: not a JSON object"),
        (b"null", "body: not a JSON object"),
        (b"\xff\xfe{}", "body: not UTF-8"),
        (b'{"amount": NaN}', "body: not valid JSON"),
        (b'{"amount": Infinity}', "body: not valid JSON"),
        (b'{"extension": {"v": 1e999}}', "body: not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body: not valid JSON"),
        (b'{"amount": 1, "amount": 2}', "body: duplicate key amount"),
    ],
)
def test_bodies_that_are_not_a_json_object(payload: bytes, message: str) -> None:
    assert refusal(payload) == message


def test_nul_and_lone_surrogates_are_refused() -> None:
    assert refusal(body(purpose="a\x00b")) == "purpose: contains NUL or invalid Unicode"
    text = raw(body(purpose=None))[:-1] + b', "purpose": "\\ud800"}'
    assert refusal(text) == "purpose: contains NUL or invalid Unicode"
    nested = body(extension={"k": "\x00"})
    assert refusal(nested) == "extension.k: contains NUL or invalid Unicode"


def test_fingerprint_ignores_key_order_and_whitespace() -> None:
    document = body()
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode()
    shuffled = dict(reversed(list(document.items())))
    shuffled["payee"] = dict(reversed(list(document["payee"].items())))
    spaced = json.dumps(shuffled, indent=4, ensure_ascii=False).encode()
    fingerprints = {parse_payout_request(payload).fingerprint() for payload in (compact, spaced)}
    assert len(fingerprints) == 1
    (fingerprint,) = fingerprints
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0


def test_rmb_and_cny_mean_the_same_request() -> None:
    assert (
        parse_payout_request(raw(body(currency="RMB"))).fingerprint()
        == parse_payout_request(raw(body(currency="CNY"))).fingerprint()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"requestId": "req-2"},
        {"supplierId": "SUP10002"},
        {"payerAccountId": "6222020000000002"},
        {"amount": 1001},
        {"currency": "USD"},
        {"payee": {**body()["payee"], "accountNo": "6217000010001234568"}},
        {"payee": {**body()["payee"], "accountName": "另一家公司"}},
        {"payee": {**body()["payee"], "bankName": "中国银行"}},
        {"purpose": "invoice 2025-0602"},
        {"purpose": None},
        {"callbackUrl": "https://erp.example.com/hooks/other"},
        {"extension": {"orderNo": "SO-2", "lines": [1, 2.5, None, True]}},
        {"extension": {}},
        {"extension": None},
    ],
)
def test_any_field_change_changes_the_fingerprint(change: dict[str, Any]) -> None:
    original = parse_payout_request(raw(body())).fingerprint()
    assert parse_payout_request(raw(body(**change))).fingerprint() != original


def test_canonical_json_is_the_normalised_request() -> None:
    request = parse_payout_request(raw(body(currency="RMB", purpose=None)))
    canonical = request.canonical_json()
    decoded = json.loads(canonical)
    assert canonical == json.dumps(
        decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert decoded["currency"] == "CNY"
    assert "purpose" not in decoded
    assert list(decoded) == sorted(decoded)
    assert PayoutRequest.model_validate(decoded) == request


def test_the_model_is_frozen() -> None:
    request = parse_payout_request(raw(body()))
    with pytest.raises(ValueError, match="frozen"):
        request.amount = 5  # type: ignore[misc]


def test_new_pay_id() -> None:
    pay_id = new_pay_id(date(2025, 6, 1), 42)
    assert pay_id == "PAY202506010000000042"
    assert PAY_ID_PATTERN.fullmatch(pay_id)
    assert new_pay_id(date(2025, 12, 31), 9_999_999_999) == "PAY202512319999999999"
    with pytest.raises(ValueError):
        new_pay_id(date(2025, 6, 1), 10**10)
    with pytest.raises(ValueError):
        new_pay_id(date(2025, 6, 1), -1)
    with pytest.raises(TypeError):
        new_pay_id(date(2025, 6, 1), True)
