"""The simulator's notifications: the seed's fields, formats and a genuine RSA2 signature."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from support.seed import REQUIRED_BIZ, seed_request

from fundhub.bank_simulator.notifications import (
    METHOD,
    Store,
    TransferSpec,
    biz_content,
    build_many,
    build_notification,
    resign,
)
from fundhub.bank_simulator.scenarios import plan_transfers
from fundhub.bank_transfers.notification import (
    check_protocol,
    check_public_params,
    notification_message_id,
    parse_transfer_biz_content,
)
from fundhub.common.signing import (
    generate_rsa_keypair,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
)

APP_ID = "20210911888888888888888888"
NOW = datetime(2025, 6, 1, 7, 20, 33, tzinfo=UTC)  # 15:20:33 in GMT+8

# The seed's request example, verbatim (its biz_content even has one closing brace too many).
SEED_EXAMPLE = seed_request()

PUBLIC_PARAMS = {"app_id", "method", "format", "charset", "sign_type", "timestamp", "version"}


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_keypair()


def spec(**changes: object) -> TransferSpec:
    base = TransferSpec(record_id="R00000001", in_acct_no="6222020000000001", trans_amount=12345)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_notification_carries_every_required_field(keys: tuple[str, str]) -> None:
    private_pem, _ = keys
    params = build_notification(spec(), APP_ID, private_pem, now=NOW)

    assert PUBLIC_PARAMS | {"biz_content", "sign"} <= params.keys()
    assert params["method"] == METHOD
    assert params["format"] == "json"
    assert params["charset"] == "utf-8"
    assert params["sign_type"] == "RSA2"
    assert params["version"] == "1.0"
    assert params["app_id"] == APP_ID
    assert params["timestamp"] == "2025-06-01 15:20:33"
    assert all(isinstance(value, str) for value in params.values())

    biz = json.loads(params["biz_content"])
    assert biz.keys() >= set(REQUIRED_BIZ)
    assert all(isinstance(value, str) and value for value in biz.values())
    assert biz["trans_amount"] == "12345"
    assert biz["ccy_code"] == "RMB"
    assert biz["deduct_status"] == "0"
    assert biz["reverse_flag"] == "0"
    assert biz["channel"] == "02"
    assert biz["trans_time"] == "2025-06-01 15:20:33"
    assert biz["host_tx_date"] == "2025-06-01"
    assert "deduct_channel_trade_no" not in biz  # nothing deducted yet
    assert "store_list" not in biz


def test_signature_verifies_with_the_matching_public_key_only(keys: tuple[str, str]) -> None:
    private_pem, public_pem = keys
    params = build_notification(spec(), APP_ID, private_pem, now=NOW)

    assert rsa2_verify(params, params["sign"], load_public_key(public_pem))
    # Exactly what the shared signing module produces for the same parameters.
    assert params["sign"] == rsa2_sign(params, private_pem)

    _, other_public = generate_rsa_keypair()
    assert not rsa2_verify(params, params["sign"], load_public_key(other_public))
    tampered = dict(params, biz_content=params["biz_content"].replace("12345", "99999"))
    assert not rsa2_verify(tampered, params["sign"], load_public_key(public_pem))


def test_biz_content_is_compact_and_keeps_chinese_text() -> None:
    text = biz_content(spec(in_acct_name="收款方账户户名"), now=NOW)

    assert ", " not in text and ": " not in text
    assert "收款方账户户名" in text
    assert list(json.loads(text))[:4] == ["channel", "node_id", "record_id", "trans_time"]


def test_follow_up_notices_of_a_record_agree_on_the_bank_numbers() -> None:
    arrival = json.loads(biz_content(spec(trans_time=NOW)))
    deducted = json.loads(biz_content(spec(trans_time=NOW, deduct_status="1")))
    other = json.loads(biz_content(spec(record_id="R00000002", trans_time=NOW)))

    for key in ("channel_trade_no", "host_flow_no", "trans_time", "host_tx_date"):
        assert arrival[key] == deducted[key]
    assert arrival["channel_trade_no"] != other["channel_trade_no"]
    assert deducted["deduct_status"] == "1"
    assert deducted["deduct_channel_trade_no"]


def test_optional_fields_and_store_list() -> None:
    stores = (Store("S0001", "门店0001"), Store("S0002", "门店0002"))
    biz = json.loads(
        biz_content(
            spec(fee=100, post_fee=100, merchant_id="10000000123", store_list=stores), now=NOW
        )
    )

    assert biz["fee"] == "100" and biz["post_fee"] == "100"
    assert biz["merchant_id"] == "10000000123"
    assert json.loads(biz["store_list"]) == [
        {"store_id": "S0001", "store_name": "门店0001"},
        {"store_id": "S0002", "store_name": "门店0002"},
    ]


def test_icbc_channel_leaves_out_what_icbc_does_not_send() -> None:
    biz = json.loads(biz_content(spec(channel="04", fee=100), now=NOW))

    assert biz["channel"] == "04"
    assert biz["host_flow_no"] == "" and biz["host_tx_date"] == ""
    assert "fee" not in biz and "reverse_flag" not in biz


@pytest.mark.parametrize(
    "changes",
    [
        {"trans_amount": 0},
        {"trans_amount": -1},
        {"deduct_status": "2"},
        {"reverse_flag": "9"},
        {"record_id": ""},
        {"record_id": "x" * 33},
        {"fee": -1},
    ],
)
def test_spec_refuses_what_the_bank_never_sends(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        spec(**changes)


def test_spec_refuses_non_integer_amounts() -> None:
    with pytest.raises(TypeError):
        spec(trans_amount=12.5)


def test_build_many_signs_each_notice_with_one_timestamp(keys: tuple[str, str]) -> None:
    private_pem, public_pem = keys
    specs = [spec(record_id=f"R{n:08d}") for n in range(5)]
    batch = build_many(specs, APP_ID, private_pem, now=NOW)

    assert [json.loads(p["biz_content"])["record_id"] for p in batch] == [
        s.record_id for s in specs
    ]
    assert {p["timestamp"] for p in batch} == {"2025-06-01 15:20:33"}
    public = load_public_key(public_pem)
    assert all(rsa2_verify(p, p["sign"], public) for p in batch)


def test_resign_refreshes_timestamp_and_signature_of_the_seed_example(
    keys: tuple[str, str],
) -> None:
    private_pem, public_pem = keys
    later = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)
    fresh = resign(SEED_EXAMPLE, private_pem, now=later)

    assert fresh["timestamp"] == "2026-11-21 16:00:00"
    assert fresh["biz_content"] == SEED_EXAMPLE["biz_content"]
    assert {k: v for k, v in fresh.items() if k not in {"timestamp", "sign"}} == {
        k: v for k, v in SEED_EXAMPLE.items() if k not in {"timestamp", "sign"}
    }
    assert fresh["sign"] != SEED_EXAMPLE["sign"]
    assert rsa2_verify(fresh, fresh["sign"], load_public_key(public_pem))
    assert SEED_EXAMPLE["timestamp"] == "2024-04-29 17:14:51"  # the original is untouched


def test_excluded_parameters_stay_out_of_the_signature(keys: tuple[str, str]) -> None:
    private_pem, public_pem = keys
    params = build_notification(spec(), APP_ID, private_pem, now=NOW, excludes=("sign", "app_id"))
    public = load_public_key(public_pem)

    changed = dict(params, app_id="another")
    assert rsa2_verify(changed, params["sign"], public, excludes=("sign", "app_id"))
    assert not rsa2_verify(params, params["sign"], public)


def test_biz_content_reproduces_the_seed_example_field_for_field() -> None:
    example = TransferSpec(
        record_id="1234",
        in_acct_no="15489516846",
        trans_amount=100000,
        deduct_status="6",
        trans_time=NOW,
        channel_trade_no="10000000001",
        merchant_name="商户名称",
        merchant_id="10000000123",
        cloud_merchant_id="4204564615348",
        in_acct_name="收款方账户户名",
        in_acct_bank_name="xxxx银行",
        fee=100,
        post_fee=100,
        deduct_channel_trade_no="10000000002",
        out_acct_name="付款方账户名称",
        out_acct_bank_name="xxxx银行",
        host_flow_no="300000000001",
        use_ex="资金用途",
        remark="备注",
        store_list=(Store("S0001", "门店0001"), Store("S0002", "门店0002")),
    )
    # The seed's text minus the stray closing brace at its end.
    assert biz_content(example) == SEED_EXAMPLE["biz_content"][:-1]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"deduct_status": "6"},
        {"deduct_status": "1", "fee": 100, "post_fee": 0},
        {"reverse_flag": "1"},
        {"channel": "04"},
        {"store_list": (Store("S1", "门店1"),), "merchant_id": "10000000123"},
    ],
)
def test_notifications_pass_the_shared_protocol_validation(
    keys: tuple[str, str], changes: dict[str, object]
) -> None:
    private_pem, _ = keys
    params = build_notification(spec(**changes), APP_ID, private_pem, now=NOW)

    check_public_params(params)
    check_protocol(params, NOW, tolerance_s=600)
    notice = parse_transfer_biz_content(params["biz_content"])
    assert notice.record_id == "R00000001"
    assert notice.trans_amount == 12345
    assert notice.currency == "CNY"
    assert notice.trans_time == NOW


def test_repeated_notices_of_one_record_share_the_message_id(keys: tuple[str, str]) -> None:
    private_pem, _ = keys
    (phase,) = plan_transfers(random.Random(1), 3, ["6222"], 1, 9, duplicates=2, at=NOW)
    first = build_many(phase.specs, APP_ID, private_pem, now=NOW)
    later = build_many(phase.specs, APP_ID, private_pem, now=NOW + timedelta(minutes=3))

    ids = Counter(notification_message_id(APP_ID, p["biz_content"]) for p in first + later)
    assert len(ids) == 3 and set(ids.values()) == {4}
