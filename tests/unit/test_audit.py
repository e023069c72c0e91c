"""The audit log's pure parts: masking of parameters, the entry's JSON, the hash chain."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from fundhub.audit.chain import GENESIS, ChainRow, canonical, link, verify
from fundhub.audit.entry import AuditEntry, body_params, error_code_of, http_params
from fundhub.audit.masking import HIDDEN, MAX_KEYS, field_kind, mask

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
