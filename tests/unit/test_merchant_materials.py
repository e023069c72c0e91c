"""Merchant bodies: strict parsing, identity and licence numbers checked to their check
character, refusals naming the field, notifyUrl held to the callback rule, stable fingerprints."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.merchants import (
    LICENCES,
    RESIDENT_ID_X,
    RESIDENT_IDS,
    account,
    individual,
    materials,
    raw,
    registration,
)

from fundhub.merchants.identity import is_resident_id, is_uscc, resident_id_check, uscc_check
from fundhub.merchants.materials import (
    InvalidMerchant,
    parse_confirmation,
    parse_materials,
    parse_registration,
    parse_settlement_account,
)
from fundhub.webhooks.destinations import CallbackAddresses


def refusal(document: Any) -> str:
    with pytest.raises(InvalidMerchant) as caught:
        parse_registration(document if isinstance(document, bytes) else raw(document))
    return str(caught.value)


@pytest.mark.parametrize("number", [*RESIDENT_IDS, RESIDENT_ID_X])
def test_resident_ids_with_their_check_character_are_valid(number: str) -> None:
    assert is_resident_id(number)
    assert resident_id_check(number[:17]) == number[17]


@pytest.mark.parametrize(
    "number",
    [
        "110101199003074574",  # wrong check digit
        "11010519491231002x",  # lower-case x
        "110101199002304578",  # 30 February
        "110101189003074573",  # born before 1900 (and its check no longer holds)
        "01010119900307457X",  # leading zero
        "11010119900307457",  # 17 characters
        "1101011990030745733",
    ],
)
def test_impossible_resident_ids_are_refused(number: str) -> None:
    assert not is_resident_id(number)


@pytest.mark.parametrize("code", LICENCES)
def test_credit_codes_with_their_check_character_are_valid(code: str) -> None:
    assert is_uscc(code)
    assert uscc_check(code[:17]) == code[17]


@pytest.mark.parametrize(
    "code", ["91350100M000100Y44", "91350100M000100Y4", "91350100M000100YI3", "9135o100M000100Y43"]
)
def test_impossible_credit_codes_are_refused(code: str) -> None:
    assert not is_uscc(code)


def test_an_enterprise_and_an_individual_parse() -> None:
    enterprise = parse_registration(raw(registration("M-1")))
    assert enterprise.merchant_no == "M-1"
    assert enterprise.licence is not None and enterprise.licence.licence_no == LICENCES[0]
    person = parse_registration(raw(individual("M-2")))
    assert person.type == "INDIVIDUAL" and person.licence is None
    assert person.materials().normalised()["legalPerson"]["idNumber"] == RESIDENT_IDS[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"merchantNo": ""}, "merchantNo: must be 1 to 32"),
        ({"merchantNo": "x" * 33}, "merchantNo: must be 1 to 32"),
        ({"merchantNo": "a b"}, "merchantNo: must be 1 to 32"),
        ({"name": "   "}, "name: must be 1 to 100"),
        ({"name": "a\nb"}, "name: must be 1 to 100"),
        ({"type": "PERSON"}, "type: must be INDIVIDUAL or ENTERPRISE"),
        ({"licence": None}, "licence: must be an object with licenceNo"),
        (
            {
                "legalPerson": {
                    "name": "张三",
                    "idType": "RESIDENT_ID",
                    "idNumber": "110101199003074574",
                }
            },
            "legalPerson.idNumber: must be a valid number",
        ),
        (
            {"legalPerson": {"name": "张三", "idType": "PASSPORT", "idNumber": "e1234567"}},
            "legalPerson.idNumber: must be a valid number",
        ),
        (
            {"legalPerson": {"name": "张三", "idType": "DRIVING_LICENCE", "idNumber": "X"}},
            "legalPerson.idType: must be RESIDENT_ID, PASSPORT or TRAVEL_PERMIT",
        ),
        ({"licence": {"licenceNo": "91350100M000100Y44"}}, "licence.licenceNo: must be an 18"),
        (
            {"licence": {"licenceNo": LICENCES[0], "validUntil": "2035-02-30"}},
            "licence.validUntil: must be a date",
        ),
        ({"contact": {"name": "李四", "phone": "12345"}}, "contact.phone: must be a mainland"),
        (
            {"contact": {"name": "李四", "phone": "13800138000", "email": "not-an-address"}},
            "contact.email: must be an e-mail address",
        ),
        ({"contact": None}, "contact: required"),
        ({"notifyUrl": "ftp://erp.example/cb"}, "notifyUrl: must be an http(s) URL"),
        ({"notifyUrl": "https://user:pw@erp.example/cb"}, "notifyUrl: must be an http(s) URL"),
        ({"extra": 1}, "extra: not allowed"),
    ],
)
def test_each_refusal_names_its_field(change: dict[str, Any], message: str) -> None:
    body = registration("M-1")
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    assert refusal(body).startswith(message)


def test_an_individual_with_a_licence_is_refused() -> None:
    body = individual("M-2")
    body["licence"] = {"licenceNo": LICENCES[0]}
    assert refusal(body).startswith("licence: must be an object")


def test_types_are_strict_and_the_json_bounded() -> None:
    assert refusal(registration(1)).startswith("merchantNo: must be")  # type: ignore[arg-type]
    assert refusal(b'{"merchantNo": "a", "merchantNo": "b"}') == "body: duplicate key merchantNo"
    assert refusal(b"[]") == "body: not a JSON object"
    assert refusal(b"\xff") == "body: not UTF-8"
    deep: Any = "x"
    for _ in range(6):
        deep = {"k": deep}
    assert "nested deeper" in refusal(raw(registration("M-1", contact=deep)))
    many = {f"k{i}": i for i in range(40)}
    assert refusal(raw(many)) == "body: an object of more than 32 keys"
    assert refusal(raw(registration("M-\u0000"))).startswith("merchantNo: contains NUL")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/cb", "http://0x7f000001/", "http://localhost/cb", "http://10.1.2.3/"]
)
def test_a_notify_url_inside_is_refused_as_payouts_callbacks_are(url: str) -> None:
    assert refusal(registration("M-1", notifyUrl=url)).startswith(
        "notifyUrl: must not point to a loopback"
    )
    allowed = CallbackAddresses.allowing(["127.0.0.1/32"])
    if url == "http://127.0.0.1/cb":
        parsed = parse_registration(raw(registration("M-1", notifyUrl=url)), allowed)
        assert parsed.notify_url == url


def test_the_fingerprint_is_the_meaning_not_the_bytes() -> None:
    body = registration("M-1", notifyUrl="https://erp.example/cb")
    one = parse_registration(raw(body))
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    assert parse_registration(reordered).fingerprint() == one.fingerprint()
    other = parse_registration(raw(registration("M-1", notifyUrl="https://erp.example/cb2")))
    assert other.fingerprint() != one.fingerprint()
    # The material's own fingerprint ignores what is not material (merchantNo, notifyUrl).
    assert other.materials().fingerprint() == one.materials().fingerprint()
    assert parse_materials(raw(materials())).fingerprint() == one.materials().fingerprint()


def test_a_material_change_takes_no_merchant_no() -> None:
    with pytest.raises(InvalidMerchant, match="merchantNo: not allowed"):
        parse_materials(raw({**materials(), "merchantNo": "M-1"}))


def test_settlement_accounts_and_amounts() -> None:
    parsed = parse_settlement_account(raw(account()))
    assert parsed.account_no == "6222020200112233445"
    with pytest.raises(InvalidMerchant, match="accountNo: must be 1 to 34"):
        parse_settlement_account(raw(account("6222-0202")))
    assert parse_confirmation(b'{"amount": 50}').amount == 50
    for bad in (b'{"amount": 0}', b'{"amount": 51}', b'{"amount": "12"}', b'{"amount": 1.0}'):
        with pytest.raises(InvalidMerchant, match="amount: must be an integer of fen from 1"):
            parse_confirmation(bad)
