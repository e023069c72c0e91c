"""The transfer notification against the seed's tables: its own example, then every refusal."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.seed import REQUIRED_BIZ, seed_request

from fundhub.bank_transfers import notification as bank_notify
from fundhub.bank_transfers.notification import (
    PUBLIC_PARAM_SPEC,
    TRANSFER_NOTIFY_METHOD,
    NotifyRejected,
    StoreEntry,
    check_protocol,
    check_public_params,
    notification_message_id,
    parse_transfer_biz_content,
)
from fundhub.common.clock import BANK_TZ

SEED_SENT_AT = datetime(2024, 4, 29, 17, 14, 51, tzinfo=BANK_TZ)


# The seed's biz_content ends in one stray "}" (``...]"}}``): as printed it is not JSON, and a
# strict parser must refuse it. Everything else is taken as printed.
SEED_BIZ_CONTENT_AS_PRINTED: str = seed_request()["biz_content"]
assert SEED_BIZ_CONTENT_AS_PRINTED.endswith('"}}')
SEED_BIZ_CONTENT = SEED_BIZ_CONTENT_AS_PRINTED[:-1]


def seed_params() -> dict[str, Any]:
    params = seed_request()
    params["biz_content"] = SEED_BIZ_CONTENT
    return params


def seed_biz() -> dict[str, Any]:
    biz: dict[str, Any] = json.loads(seed_params()["biz_content"])
    return biz


def parse(biz: dict[str, Any]) -> bank_notify.TransferNotice:
    return parse_transfer_biz_content(json.dumps(biz, ensure_ascii=False))


def rejected(biz: dict[str, Any]) -> str:
    with pytest.raises(NotifyRejected) as info:
        parse(biz)
    return info.value.reason


# --- the seed's own example ----------------------------------------------------------------


def test_seed_example_passes_public_and_protocol_checks() -> None:
    params = seed_params()
    assert params["method"] == TRANSFER_NOTIFY_METHOD
    check_public_params(params)
    check_protocol(params, SEED_SENT_AT + timedelta(minutes=9), tolerance_s=600)


def test_seed_example_as_printed_is_not_json() -> None:
    with pytest.raises(NotifyRejected) as info:
        parse_transfer_biz_content(SEED_BIZ_CONTENT_AS_PRINTED)
    assert info.value.reason == "biz_content: not a JSON object"


def test_seed_example_parses_to_the_right_values() -> None:
    notice = parse_transfer_biz_content(seed_params()["biz_content"])
    assert notice.channel == "02"
    assert notice.node_id == "00026713"
    assert notice.record_id == "1234"
    assert notice.trans_time == datetime(2025, 6, 1, 15, 20, 33, tzinfo=BANK_TZ)
    assert notice.trans_time.utcoffset() == timedelta(hours=8)
    assert notice.channel_trade_no == "10000000001"
    assert notice.merchant_name == "商户名称"
    assert notice.merchant_id == "10000000123"
    assert notice.cloud_merchant_id == "4204564615348"
    assert notice.in_acct_name == "收款方账户户名"
    assert notice.in_acct_bank_name == "xxxx银行"
    assert notice.in_acct_no == "15489516846"
    assert notice.trans_amount == 100000
    assert notice.ccy_code == "RMB"
    assert notice.currency == "CNY"
    assert notice.fee == 100
    assert notice.post_fee == 100
    assert notice.bind_status == "1"
    assert notice.deduct_status == "6"
    assert notice.deduct_channel_trade_no == "10000000002"
    assert notice.out_acct_name == "付款方账户名称"
    assert notice.out_acct_bank_name == "xxxx银行"
    assert notice.out_acct_no == "624615616476846548"
    assert notice.host_flow_no == "300000000001"
    assert notice.host_tx_date == date(2025, 6, 1)
    assert notice.reverse_flag == "0"
    assert notice.use_ex == "资金用途"
    assert notice.remark == "备注"
    assert notice.store_list == (
        StoreEntry(store_id="S0001", store_name="门店0001"),
        StoreEntry(store_id="S0002", store_name="门店0002"),
    )


def _record_columns() -> set[str]:
    schema = (
        Path(bank_notify.__file__).parent / "migrations" / "0004_bank_transfers.sql"
    ).read_text(encoding="utf-8")
    block = schema.split("CREATE TABLE bank_transfer_records (", 1)[1].split("\n);", 1)[0]
    return {
        match.group(1)
        for line in block.splitlines()
        if (match := re.match(r"\s+([a-z_]+)\s+[a-z]", line)) and match.group(1) != "primary"
    }


def test_record_fields_are_columns_of_bank_transfer_records() -> None:
    fields = parse_transfer_biz_content(seed_params()["biz_content"]).to_record_fields()
    columns = _record_columns()
    assert set(fields) <= columns
    not_from_the_notice = {
        "app_id",
        "state",
        "account_id",
        "held_available",
        "held_frozen",
        "deducted_amount",
        "reversed_amount",
        "notifications_applied",
        "first_seen_at",
        "updated_at",
    }
    assert columns - set(fields) == not_from_the_notice
    assert fields["trans_time"] == datetime(2025, 6, 1, 15, 20, 33, tzinfo=BANK_TZ)
    assert fields["host_tx_date"] == date(2025, 6, 1)
    assert fields["fee"] == 100
    assert fields["trans_amount"] == 100000
    assert fields["store_list"] == [
        {"store_id": "S0001", "store_name": "门店0001"},
        {"store_id": "S0002", "store_name": "门店0002"},
    ]
    json.dumps(fields["store_list"])  # storable as jsonb


# --- public parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [name for name, (_, required) in PUBLIC_PARAM_SPEC.items() if required]
)
@pytest.mark.parametrize("absent", ["drop", None, ""])
def test_missing_public_parameter(name: str, absent: str | None) -> None:
    params = seed_params()
    if absent == "drop":
        del params[name]
    else:
        params[name] = absent
    with pytest.raises(NotifyRejected) as info:
        check_public_params(params)
    assert info.value.reason == f"missing parameter {name}"


def test_public_parameter_of_wrong_type() -> None:
    params = {**seed_params(), "timestamp": 1714382091}
    with pytest.raises(NotifyRejected) as info:
        check_public_params(params)
    assert info.value.reason == "timestamp: not a string"


def test_oversize_public_parameter() -> None:
    with pytest.raises(NotifyRejected) as info:
        check_public_params({**seed_params(), "app_id": "9" * 33})
    assert info.value.reason == "app_id: longer than 32 characters"
    with pytest.raises(NotifyRejected):
        check_public_params({**seed_params(), "app_auth_token": "t" * 129})


def test_public_parameter_lengths_fit_real_values() -> None:
    # 19-character timestamps and 344-character RSA-2048 signatures are what the bank sends.
    check_public_params({**seed_params(), "sign": "A" * 344, "app_auth_token": "t" * 128})
    check_public_params({**seed_params(), "sign": "A" * 1024})
    with pytest.raises(NotifyRejected):
        check_public_params({**seed_params(), "sign": "A" * 1025})
    with pytest.raises(NotifyRejected):
        check_public_params({**seed_params(), "timestamp": "2024-04-29 17:14:51 "})


def test_unknown_public_parameters_are_allowed_if_strings() -> None:
    check_public_params({**seed_params(), "notify_id": "n1", "empty": None})
    with pytest.raises(NotifyRejected) as info:
        check_public_params({**seed_params(), "notify_id": 7})
    assert info.value.reason == "notify_id: not a string"


# --- protocol values and the clock window --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("format", "JSON"), ("charset", "UTF-8"), ("charset", "Utf-8")],
)
def test_protocol_accepts_case_variants(name: str, value: str) -> None:
    check_protocol({**seed_params(), name: value}, SEED_SENT_AT, tolerance_s=600)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("format", "xml"),
        ("charset", "GBK"),
        ("sign_type", "RSA"),
        ("sign_type", "rsa2"),
        ("version", "2.0"),
    ],
)
def test_protocol_refuses_other_values(name: str, value: str) -> None:
    with pytest.raises(NotifyRejected) as info:
        check_protocol({**seed_params(), name: value}, SEED_SENT_AT, tolerance_s=600)
    assert info.value.reason.startswith(f"{name}: ")


@pytest.mark.parametrize("skew_s", [-600, 0, 600])
def test_timestamp_inside_the_window(skew_s: int) -> None:
    check_protocol(seed_params(), SEED_SENT_AT + timedelta(seconds=skew_s), tolerance_s=600)


@pytest.mark.parametrize("skew_s", [-601, 601, 86400])
def test_timestamp_outside_the_window(skew_s: int) -> None:
    with pytest.raises(NotifyRejected) as info:
        check_protocol(seed_params(), SEED_SENT_AT + timedelta(seconds=skew_s), tolerance_s=600)
    assert info.value.reason == "timestamp outside the allowed window"


def test_window_compares_instants_not_wall_clocks() -> None:
    check_protocol(seed_params(), SEED_SENT_AT.astimezone(UTC), tolerance_s=0)


@pytest.mark.parametrize(
    "value",
    [
        "2024/04/29 17:14:51",
        "2024-04-29T17:14:51",
        "2024-4-29  17:14:51",
        "2024-02-30 17:14:51",
        "2024-04-29 24:00:00",
        "2024-04-29 17:14",
    ],
)
def test_timestamp_of_the_wrong_shape(value: str) -> None:
    with pytest.raises(NotifyRejected) as info:
        check_protocol({**seed_params(), "timestamp": value}, SEED_SENT_AT, tolerance_s=600)
    assert info.value.reason == "timestamp: expected yyyy-MM-dd HH:mm:ss"


# --- business parameters: refusals ---------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "", "{", "[]", '["a"]', '"text"', "null", "42"])
def test_biz_content_not_a_json_object(text: str) -> None:
    with pytest.raises(NotifyRejected) as info:
        parse_transfer_biz_content(text)
    assert info.value.reason == "biz_content: not a JSON object"


@pytest.mark.parametrize("name", REQUIRED_BIZ)
@pytest.mark.parametrize("absent", ["drop", None, ""])
def test_missing_required_biz_field(name: str, absent: str | None) -> None:
    biz = seed_biz()
    if absent == "drop":
        del biz[name]
    else:
        biz[name] = absent
    assert rejected(biz) == f"biz_content.{name}: missing"


@pytest.mark.parametrize("name", [*REQUIRED_BIZ, "merchant_name", "fee", "store_list"])
@pytest.mark.parametrize("value", [100000, 1.5, True, ["02"], {"a": "b"}])
def test_biz_field_of_wrong_type(name: str, value: object) -> None:
    assert rejected({**seed_biz(), name: value}) == f"biz_content.{name}: not a string"


@pytest.mark.parametrize(
    ("name", "max_len"),
    [
        ("channel", 2),
        ("node_id", 8),
        ("record_id", 32),
        ("channel_trade_no", 64),
        ("merchant_name", 255),
        ("merchant_id", 32),
        ("cloud_merchant_id", 64),
        ("in_acct_name", 100),
        ("in_acct_bank_name", 120),
        ("in_acct_no", 32),
        ("deduct_channel_trade_no", 64),
        ("out_acct_name", 100),
        ("out_acct_bank_name", 120),
        ("out_acct_no", 32),
        ("host_flow_no", 32),
        ("use_ex", 300),
        ("remark", 100),
    ],
)
def test_oversize_biz_field(name: str, max_len: int) -> None:
    reason = rejected({**seed_biz(), name: "1" * (max_len + 1)})
    assert reason == f"biz_content.{name}: longer than {max_len} characters"


def test_lengths_count_characters_not_bytes() -> None:
    notice = parse({**seed_biz(), "merchant_name": "商" * 255, "remark": "备" * 100})
    assert notice.merchant_name == "商" * 255
    assert rejected({**seed_biz(), "merchant_name": "商" * 256}).startswith(
        "biz_content.merchant_name: longer"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("channel", "03"),
        ("channel", "2"),
        ("bind_status", "2"),
        ("deduct_status", "2"),
        ("deduct_status", "9"),
        ("reverse_flag", "3"),
        ("ccy_code", "USD"),
        ("ccy_code", "rmb"),
    ],
)
def test_bad_enumeration(name: str, value: str) -> None:
    assert rejected({**seed_biz(), name: value}).startswith(f"biz_content.{name}: not one of")


@pytest.mark.parametrize("name", ["trans_amount", "fee", "post_fee"])
@pytest.mark.parametrize(
    "value", ["-1", "1.00", "+1", "01", "00", "1e5", " 1", "1 ", "１００", "0x10", "1_000"]
)
def test_bad_amount(name: str, value: str) -> None:
    assert (
        rejected({**seed_biz(), name: value})
        == f"biz_content.{name}: not a non-negative integer amount"
    )


@pytest.mark.parametrize("name", ["trans_amount", "fee", "post_fee"])
def test_amount_of_17_digits(name: str) -> None:
    assert rejected({**seed_biz(), name: "1" * 17}).startswith(f"biz_content.{name}: ")


def test_amount_limits_accepted() -> None:
    notice = parse({**seed_biz(), "trans_amount": "9" * 16, "fee": "0", "post_fee": "0"})
    assert notice.trans_amount == 9_999_999_999_999_999
    assert notice.fee == 0
    assert notice.post_fee == 0
    assert parse({**seed_biz(), "trans_amount": "0"}).trans_amount == 0


@pytest.mark.parametrize(
    "value",
    [
        "2025-06-01T15:20:33",
        "2025-06-31 15:20:33",
        "2025-06-01 25:20:33",
        "2025-6-1 15:20:33",
        "2025-06-01",
        "2025-06-01 15:20:33+08",
    ],
)
def test_bad_trans_time(value: str) -> None:
    reason = rejected({**seed_biz(), "trans_time": value})
    assert reason.startswith("biz_content.trans_time: ")


@pytest.mark.parametrize(
    "value", ["2025/06/01", "2025-13-01", "20250601", "2025-02-30", "25-06-01"]
)
def test_bad_host_tx_date(value: str) -> None:
    assert rejected({**seed_biz(), "host_tx_date": value}).startswith("biz_content.host_tx_date: ")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[{", "biz_content.store_list: not a JSON array"),
        ('{"store_id":"S1","store_name":"n"}', "biz_content.store_list: not a JSON array"),
        ('["S1"]', "biz_content.store_list[0]: not a JSON object"),
        ('[{"store_id":"S1"}]', "biz_content.store_list[0].store_name: missing"),
        ('[{"store_id":"S1","store_name":""}]', "biz_content.store_list[0].store_name: missing"),
        (
            '[{"store_id":"S1","store_name":"n"},{"store_id":2,"store_name":"n"}]',
            "biz_content.store_list[1].store_id: not a string",
        ),
        (
            json.dumps([{"store_id": "S" * 51, "store_name": "n"}]),
            "biz_content.store_list[0].store_id: longer than 50 characters",
        ),
        (
            json.dumps([{"store_id": "S1", "store_name": "门" * 101}]),
            "biz_content.store_list[0].store_name: longer than 100 characters",
        ),
    ],
)
def test_bad_store_list(value: str, reason: str) -> None:
    assert rejected({**seed_biz(), "store_list": value}) == reason


def test_store_list_as_a_bare_array_is_the_wrong_type() -> None:
    value = [{"store_id": "S1", "store_name": "n"}]
    assert rejected({**seed_biz(), "store_list": value}) == "biz_content.store_list: not a string"


# --- business parameters: what is accepted -------------------------------------------------


def test_optional_fields_may_be_absent_empty_or_null() -> None:
    biz = seed_biz()
    optional = [
        "merchant_name",
        "merchant_id",
        "cloud_merchant_id",
        "in_acct_bank_name",
        "fee",
        "post_fee",
        "deduct_channel_trade_no",
        "out_acct_bank_name",
        "reverse_flag",
        "use_ex",
        "remark",
        "store_list",
    ]
    for index, name in enumerate(optional):
        if index % 3 == 0:
            del biz[name]
        else:
            biz[name] = "" if index % 3 == 1 else None
    notice = parse(biz)
    for name in optional:
        assert getattr(notice, name) is None
    assert notice.to_record_fields()["store_list"] is None


def test_empty_store_list_array() -> None:
    assert parse({**seed_biz(), "store_list": "[]"}).store_list == ()


def test_icbc_may_leave_host_fields_empty() -> None:
    biz = {**seed_biz(), "channel": "04", "host_flow_no": "", "reverse_flag": ""}
    del biz["host_tx_date"]
    del biz["fee"]
    del biz["post_fee"]
    notice = parse(biz)
    assert notice.channel == "04"
    assert notice.host_flow_no is None
    assert notice.host_tx_date is None
    assert notice.fee is None
    assert notice.reverse_flag is None


def test_icbc_host_fields_still_validated_when_present() -> None:
    assert rejected({**seed_biz(), "channel": "04", "host_tx_date": "2025/06/01"}).startswith(
        "biz_content.host_tx_date: "
    )


def test_pingan_needs_host_fields() -> None:
    assert rejected({**seed_biz(), "host_flow_no": ""}) == "biz_content.host_flow_no: missing"


def test_cny_and_unknown_keys() -> None:
    notice = parse({**seed_biz(), "ccy_code": "CNY", "new_field": 12, "another": {"x": 1}})
    assert notice.currency == "CNY"
    assert notice.ccy_code == "CNY"


def test_unicode_escapes_parse_like_raw_text() -> None:
    escaped = json.dumps(seed_biz(), ensure_ascii=True)
    assert parse_transfer_biz_content(escaped) == parse(seed_biz())


# --- message ids -----------------------------------------------------------------------------


def test_message_id_survives_reserialisation() -> None:
    params = seed_params()
    original = notification_message_id(params["app_id"], params["biz_content"])
    pretty = json.dumps(dict(reversed(list(seed_biz().items()))), indent=2, ensure_ascii=True)
    assert notification_message_id(params["app_id"], pretty) == original
    assert notification_message_id(params["app_id"], params["biz_content"]) == original


def test_message_id_distinguishes_content_and_app() -> None:
    params = seed_params()
    original = notification_message_id(params["app_id"], params["biz_content"])
    deducted = json.dumps({**seed_biz(), "deduct_status": "1"})
    assert notification_message_id(params["app_id"], deducted) != original
    assert notification_message_id("another-app", params["biz_content"]) != original


def test_message_id_of_text_that_is_not_json() -> None:
    assert notification_message_id("a", "{oops") == notification_message_id("a", "{oops")
    assert notification_message_id("a", "{oops") != notification_message_id("a", "{oops ")


@pytest.mark.parametrize(
    "biz",
    [
        '{"b": "收款方", "a": 1, "c": [1, {"z": null, "y": true}]}',
        '{ "record_id" : "D1", "trans_amount": "100000", "remark": "tab\\there \\u00e9 \\" / ok" }',
        '{"n": -12, "f": 1.5, "u64": 18446744073709551615}',
        "not json at all",
        "[1, 2, 3]",
    ],
)
def test_message_id_is_the_stdlib_canonical_form(biz: str) -> None:
    """The id must not change with the JSON library: the bank's retries dedupe by it."""
    import json
    import uuid

    try:
        canonical = json.dumps(
            json.loads(biz), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
    except ValueError:
        canonical = biz
    expected = str(uuid.uuid5(uuid.NAMESPACE_URL, "fundhub:" + "app\x1f" + canonical))
    assert notification_message_id("app", biz) == expected


@pytest.mark.parametrize(
    "biz", ['{"lone": "\\ud800", "a": 1}', '{"big": 12345678901234567890123}', '{"x": 1.5e300}']
)
def test_message_id_of_unusual_json_is_stable(biz: str) -> None:
    first = notification_message_id("app", biz)
    assert first == notification_message_id("app", biz)
    assert first != notification_message_id("app", biz.replace("1", "2"))
