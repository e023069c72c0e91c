"""The audit log's pure parts: masking of parameters, the entry's JSON, the hash chain."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson

from fundhub.audit import masking
from fundhub.audit.chain import GENESIS, ChainRow, canonical, link, verify
from fundhub.audit.entry import (
    KEPT_HEADERS,
    AuditEntry,
    body_params,
    entry_json,
    error_code_of,
    http_params,
    kept_headers,
)
from fundhub.audit.masking import HIDDEN, MAX_KEYS, field_kind, mask, mask_generic
from fundhub.common.clock import iso_utc_us

SEED = json.loads(Path("tests/fixtures/seed_transfer_notify.json").read_text(encoding="utf-8"))


def test_field_kinds_by_name_in_any_spelling() -> None:
    for secret in ("sign", "X-Signature", "secret", "webhook_secret", "password", "masterKey"):
        assert field_kind(secret) == "secret", secret
    for number in ("in_acct_no", "out_acct_no", "accountNo", "payee_acct_no", "idNo", "mobile"):
        assert field_kind(number) == "number", number
    for name in ("in_acct_name", "accountName", "name", "payeeName"):
        assert field_kind(name) == "name", name
    for kept in ("sign_type", "amount", "requestId", "app_id", "trans_amount", "X-Api-Key"):
        assert field_kind(kept) is None, kept


def test_the_seed_notification_keeps_no_secret_nor_account_number() -> None:
    masked = mask(SEED)
    assert masked["sign"] == HIDDEN
    assert masked["sign_type"] == "RSA2"
    biz = masked["biz_content"]  # nested JSON opened and masked
    assert biz["in_acct_no"] == "****6846"
    assert biz["out_acct_no"] == "****6548"
    assert biz["in_acct_name"] == "收**"
    assert biz["trans_amount"] == "100000"
    text = json.dumps(masked, ensure_ascii=False)
    assert SEED["sign"] not in text
    assert "15489516846" not in text and "624615616476846548" not in text
    assert "收款方账户户名" not in text


def test_a_payout_body_keeps_its_shape_not_the_payee() -> None:
    body = {
        "requestId": "r-1",
        "amount": 100,
        "payee": {"accountName": "张三", "accountNo": "6222020200112233445", "bankName": "ICBC"},
        "extension": {"idNo": "110101199001011234", "phone": "13800138000", "note": "x"},
    }
    params = body_params(json.dumps(body).encode(), "application/json")["body"]
    assert params["payee"] == {"accountName": "张**", "accountNo": "****3445", "bankName": "ICBC"}
    assert params["extension"] == {"idNo": "****1234", "phone": "****8000", "note": "x"}
    assert params["amount"] == 100


def test_masking_is_bounded_whatever_is_sent() -> None:
    wide = {f"k{i}": i for i in range(70_000)}
    masked = mask(wide)
    assert len(masked) == MAX_KEYS + 1
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    assert "…" in json.dumps(mask(deep), ensure_ascii=False)
    assert body_params(b"{" + b" " * 70_000 + b"}", "application/json") == {
        "_body": "70002 bytes, not kept"
    }
    assert body_params(b"not json", "application/json") == {"_body": "8 bytes, not JSON"}


def test_http_params_hide_the_signature_header_and_secrets_in_the_query() -> None:
    params = http_params(
        "/v1/accounts/A/transactions",
        b"cursor=5&secret=s3cr3t",
        {"x-api-key": "ak_1", "x-signature": "ab" * 32, "user-agent": "x"},
        b"",
    )
    assert params["headers"] == {"x-api-key": "ak_1", "x-signature": HIDDEN}
    assert params["query"] == {"cursor": "5", "secret": HIDDEN}


def test_error_code_of_an_answer() -> None:
    assert error_code_of(b'{"statusCode":400,"errorCode":"E001"}') == "E001"
    assert error_code_of(b'{"statusCode":200,"bizCode":"SUCCESS"}') is None
    assert error_code_of(b"success") is None


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        id=f"e{n}",
        at=datetime(2026, 11, 30, 12, 0, n % 60, tzinfo=UTC),
        kind="http",
        actor="ak_1",
        source="127.0.0.1",
        route="GET /v1/accounts/{accountId}/balance",
        params={"path": "/v1/accounts/A/balance"},
        status=200,
        error_code=None,
        latency_ms=1.5,
        correlation_id=f"c{n}",
    )


def test_entry_json_round_trip() -> None:
    entry = _entry(1)
    assert AuditEntry.from_json(json.loads(canonical(entry.to_json()))) == entry


def _chain(n: int) -> list[ChainRow]:
    rows, previous = [], GENESIS
    for i in range(1, n + 1):
        entry = _entry(i)
        body = canonical(entry.to_json())
        previous = link(previous, body)
        rows.append(
            ChainRow(i, body, previous, {"actor": entry.actor, "route": entry.route, "status": 200})
        )
    return rows


def test_an_intact_chain_verifies() -> None:
    rows = _chain(5)
    result = verify(rows, head=(5, rows[-1].hash))
    assert result.ok and result.checked == 5


def test_an_edited_entry_is_found() -> None:
    rows = _chain(5)
    edited = rows[2].body.replace(b'"status":200', b'"status":201')
    rows[2] = replace(rows[2], body=edited)
    result = verify(rows, head=(5, rows[-1].hash))
    assert [p.seq for p in result.problems or []] == [3, 3]  # its hash, and the column


def test_an_edited_query_column_is_found() -> None:
    rows = _chain(3)
    rows[1] = replace(rows[1], columns={**rows[1].columns, "actor": "ak_other"})
    assert [p.seq for p in verify(rows, head=(3, rows[-1].hash)).problems or []] == [2]


def test_a_deleted_entry_is_found() -> None:
    rows = _chain(5)
    del rows[2]
    problems = verify(rows, head=(5, rows[-1].hash)).problems or []
    assert problems and problems[0].seq == 4 and "missing" in problems[0].reason


def test_a_deleted_last_entry_is_found_by_the_head() -> None:
    rows = _chain(5)
    head = (5, rows[-1].hash)
    assert not verify(rows[:-1], head=head).ok


def test_an_inserted_entry_is_found() -> None:
    rows = _chain(4)
    forged = _entry(99)
    body = canonical(forged.to_json())
    rows.insert(2, ChainRow(3, body, link(rows[1].hash, body), dict(rows[1].columns)))
    problems = verify(rows, head=(4, rows[-1].hash)).problems or []
    assert problems  # the next entries no longer link, and their numbers repeat


def test_the_chain_continues_from_an_archived_boundary() -> None:
    rows = _chain(6)
    rest = rows[3:]
    assert verify(rest, start_seq=3, start_hash=rows[2].hash, head=(6, rows[-1].hash)).ok
    assert not verify(rest, start_seq=3, start_hash=GENESIS, head=(6, rows[-1].hash)).ok


# --- Masking by plans (per object shape) equals the generic walk, whatever is sent ---

# Names of every kind (secret, number, name, kept, and the exception sign_type), in several
# spellings, so that generated documents exercise each branch of the masking.
_NAMES = [
    "sign", "sign_type", "X-Signature", "webhook_secret", "password", "token", "key", "masterKey",
    "in_acct_no", "accountNo", "payee_acct_no", "idNo", "mobile", "tel", "iban", "card_no",
    "in_acct_name", "accountName", "name", "payeeName", "realName", "email", "contact_email",
    "licence_no", "buyer_logon_id",
    "amount", "requestId", "app_id", "biz_content", "extension", "note", "payee", "items",
    "", " ", "k" * 64, "k" * 65, "k" * 300, "名字", "账户号",
]  # fmt: skip


class _Generator:
    """Random documents of every shape the masking meets, at most ``budget`` values each."""

    def __init__(self, seed: int, budget: int = 300) -> None:
        self.rng = random.Random(seed)
        self.budget = budget
        self.left = budget

    def document(self) -> object:
        self.left = self.budget
        return self._value(0)

    def _value(self, depth: int) -> object:
        self.left -= 1
        rng = self.rng
        choice = rng.randrange(14) if self.left > 0 and depth < 10 else rng.randrange(7)
        if choice == 0:
            return rng.randrange(-(10**12), 10**12)
        if choice == 1:
            return rng.choice([True, False, None, 0, -1, 1.5, 1e308])
        if choice == 2:
            return "x" * rng.choice([0, 1, 6, 7, 255, 256, 257, 1000])
        if choice == 3:  # looks like JSON, is not
            return rng.choice(
                ["{", "[", "{not json", "[1,", "{}", "[]", '{"a":1}x', "{" + "a" * 300]
            )
        if choice == 4:
            return "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 25)))
        if choice == 5:
            people = ["张三", "A", "", "Acme Ltd", "6222020200112233445", "ak_live_1", "o@a.b"]
            return rng.choice([*people, "@x", "a@"])
        if choice == 6:
            return "v" + str(rng.randrange(1000))
        if choice == 7:  # JSON held in a string, as the bank's biz_content
            return json.dumps(self._value(depth + 1), ensure_ascii=rng.random() < 0.5)
        if choice == 8:
            return [self._value(depth + 1) for _ in range(rng.choice([0, 1, 3, 32, 33]))]
        size = rng.choice([0, 1, 3, 9, 19, 31, 32, 33, 64, 65, 70])
        keys = [rng.choice(_NAMES) + (str(rng.randrange(40)) if rng.random() < 0.5 else "")
                for _ in range(size)]  # fmt: skip
        return {key: self._value(depth + 1) for key in keys}


def test_masking_by_plan_equals_the_generic_walk_on_generated_documents() -> None:
    generator = _Generator(seed=20261130)
    for _ in range(3000):
        document = generator.document()
        expected = mask_generic(document)
        assert mask(document) == expected  # the shapes' plans made now
        assert mask(document) == expected  # and used


def test_masking_by_plan_equals_the_generic_walk_on_the_hot_routes_bodies() -> None:
    payout = {
        "requestId": "r-1",
        "supplierId": "SUP1",
        "payerAccountId": "6222020000000001",
        "amount": 100,
        "currency": "CNY",
        "payee": {"accountName": "张三", "accountNo": "6222020200112233445", "bankName": "ICBC"},
        "callbackUrl": "https://erp.example.com/cb",
        "extension": {"idNo": "110101199001011234", "phone": "13800138000", "note": "x"},
    }
    batch = dict(SEED, biz_content=json.dumps({"results": [json.loads(SEED["biz_content"])] * 40}))
    for document in (SEED, payout, batch, json.loads(SEED["biz_content"])):
        for _ in range(2):
            assert mask(document) == mask_generic(document)
            assert orjson.dumps(mask(document)) == orjson.dumps(mask_generic(document))


def test_masking_by_plan_equals_the_generic_walk_on_hostile_shapes() -> None:
    deep: dict[str, object] = {"amount": 1}
    for _ in range(12):
        deep = {"a": deep, "n": 7, "name": "Zed", "sign": {"x": 1}}
    hostile: list[object] = [
        deep,
        {f"k{i}": i for i in range(70_000)},  # wide: cut at MAX_KEYS
        {f"accountNo{i}": "6222020200112233445" for i in range(33)},  # just over a plan
        *({f"k{i}": i for i in range(n)} for n in (MAX_KEYS, MAX_KEYS + 1, MAX_KEYS + 6)),
        {"k" * 5000: "v", "k" * 5000 + "x": "w"},  # long keys, the same once cut
        {1: "a", 2.5: "b", None: "c", False: "d", "1": "e"},  # keys JSON never sends
        {"accountNo": {"nested": "6222020200112233445"}, "name": ["a", "b"], "idNo": True},
        {"payee": {"accountNo": 12345678901, "name": 0, "phone": -1}},
        {"biz_content": "[" * 5000 + "]" * 5000},  # nested JSON too deep to parse
        {"biz_content": json.dumps({"biz_content": json.dumps({"in_acct_no": "1234567890"})})},
        [[[[[[[[[1, "2", {"sign": "s"}]]]]]]]]],
        {"x": [{"accountNo": str(i)} for i in range(40)]},
    ]
    for document in hostile:
        for _ in range(2):
            assert mask(document) == mask_generic(document)


def test_the_plans_kept_are_bounded_whatever_shapes_arrive() -> None:
    for i in range(masking.PLAN_CACHE * 3):
        document = {f"field{i}": "v", "accountNo": "6222020200112233445"}
        assert mask(document) == mask_generic(document)
        assert len(masking._plans) <= masking.PLAN_CACHE
    masking._plans.clear()
    mask({"k" * (masking.PLAN_MAX_KEY_LENGTH + 1): 1})
    mask({f"k{i}": i for i in range(masking.PLAN_MAX_KEYS + 1)})
    assert masking._plans == {}  # long keys and wide objects are walked, never kept


def test_kept_headers_are_those_of_the_decoded_dictionary() -> None:
    raw = [
        (b"host", b"gw"),
        (b"x-signature", b"first"),
        (b"content-type", b"application/json"),
        (b"x-api-key", b"ak_1"),
        (b"x-signature", b"second"),
        (b"x-nonce", "é".encode("latin-1")),
        (b"user-agent", b"x"),
    ]
    decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    expected = {name: value for name, value in decoded.items() if name in KEPT_HEADERS}
    assert kept_headers(raw) == expected
    assert list(kept_headers(raw)) == list(expected)


def test_an_entry_built_as_json_reads_back_to_the_same_json() -> None:
    """The gateway builds entries with ``entry_json``; the audit-writer hashes
    ``from_json(...).to_json()``: the two must agree byte for byte, or the chain would cover
    something other than what was sent."""
    sent = entry_json(
        id="e1",
        at=iso_utc_us(1_764_522_826_000_001_999),
        kind="http",
        actor=None,
        source="127.0.0.1",
        route="POST /callbacks/bank",
        params={"path": "/callbacks/bank", "body": mask(SEED)},
        status=200,
        error_code=None,
        latency_ms=1.25,
        correlation_id="c1",
    )
    assert canonical(AuditEntry.from_json(sent).to_json()) == canonical(sent)
    assert sent["at"] == "2025-11-30T17:13:46.000001Z"
