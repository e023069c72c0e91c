"""WeChat Pay's trade bill (``/v3/bill/tradebill``, bill_type ALL or REFUND), read strictly.

The file: a header line naming the columns; one line per payment or refund, each value
prefixed with a backtick (so spreadsheets keep long numbers as text); then the summary's header
and its one line. Amounts are yuan with two decimals (a refund's fee negative). Nothing is
loaded unless every line reads and the summary agrees with the details, column by column.

A line's ``fee_fen`` is the fee it is about: charged on a payment, given back on a refund
(written negative there), so never negative; ``Totals.fee_fen`` is the file's net fee.

Values are cut at ``,``` (a comma followed by the next value's backtick) rather than by a CSV
reader: WeChat Pay does not quote, so a comma inside a product name is data, and one ``split``
per line is the fastest reading there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date

from fundhub.reconciliation.bill_bytes import inflated, text_lines
from fundhub.reconciliation.bill_fields import Amounts, Times, signed_yuan, yuan, yuan_text
from fundhub.reconciliation.gc_pause import collector_paused
from fundhub.reconciliation.statement import (
    LineKind,
    LineStream,
    Source,
    Statement,
    StatementLine,
    StatementRejected,
    Totals,
)

ALL_COLUMNS = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
]
REFUND_COLUMNS = [*ALL_COLUMNS, "退款申请时间", "退款成功时间"]
SUMMARY_COLUMNS = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]
HEADERS = {",".join(ALL_COLUMNS): ALL_COLUMNS, ",".join(REFUND_COLUMNS): REFUND_COLUMNS}
SUMMARY_HEADER = ",".join(SUMMARY_COLUMNS)
# Each summary column and the detail column it adds up.
SUMMED = {
    "应结订单总金额": "应结订单金额",
    "退款总金额": "退款金额",
    "充值券退款总金额": "充值券退款金额",
    "手续费总金额": "手续费",
    "订单总金额": "订单金额",
    "申请退款总金额": "申请退款金额",
}
PAYMENT_STATES = frozenset({"SUCCESS", "REVOKED", "CLOSED", "NOTPAY", "USERPAYING", "PAYERROR"})
REFUND_STATES = frozenset({"SUCCESS", "PROCESSING", "CHANGE", "REFUNDCLOSE", "ABNORMAL", "CLOSED"})
DEFAULT_FILE = "wechatpay-tradebill.csv"
_C = {name: index for index, name in enumerate(ALL_COLUMNS)}


def parse_wechatpay_bill(data: bytes, day: date, file: str = DEFAULT_FILE) -> Statement:
    """The bill of ``day`` (gzip or not) as a ``Statement``; ``StatementRejected`` otherwise."""
    with collector_paused():
        return stream_wechatpay_bill((data,), day, file).whole()


def stream_wechatpay_bill(
    chunks: Iterable[bytes], day: date, file: str = DEFAULT_FILE
) -> LineStream:
    """The bill read as its bytes come (gzip or not): each detail line given as soon as it is
    read; the summary checked at the end, its refusal raised from the last ``next``."""
    stream = LineStream(Source.WECHATPAY, day, file)
    stream.feed(_details(text_lines(inflated(chunks, file), "utf-8", file), stream, file))
    return stream


def _details(rows: Iterator[str], stream: LineStream, file: str) -> Iterator[StatementLine]:
    """The detail lines, the summed columns added up on the way, then the summary checked."""
    header = next(rows, None)
    if header is None:
        raise StatementRejected(file, 0, "empty file")
    columns = HEADERS.get(header)
    if columns is None:
        raise StatementRejected(file, 1, "not the header of a trade bill of type ALL or REFUND")
    width = len(columns)
    i_time, i_mchid, i_txid, i_order = (
        _C["交易时间"],
        _C["商户号"],
        _C["微信订单号"],
        _C["商户订单号"],
    )
    i_state, i_currency = _C["交易状态"], _C["货币种类"]
    i_settle, i_refund_id, i_refund_no = _C["应结订单金额"], _C["微信退款单号"], _C["商户退款单号"]
    i_refund, i_coupon_refund, i_refund_state = _C["退款金额"], _C["充值券退款金额"], _C["退款状态"]
    i_fee, i_total, i_asked = _C["手续费"], _C["订单金额"], _C["申请退款金额"]
    settle = refund = coupon_refund = fee = total = asked = payments = 0
    settle_of, refund_of = Amounts("应结订单金额"), Amounts("退款金额")
    coupon_refund_of, fee_of = Amounts("充值券退款金额"), Amounts("手续费", signed=True)
    asked_of = Amounts("申请退款金额")
    times = Times("交易时间")
    merchant = ""  # the bill's 商户号: the first line's, the same on every line
    payment_kind, refund_kind, line = LineKind.PAYMENT, LineKind.REFUND, StatementLine
    line_no = 1
    for row in rows:
        line_no += 1
        if row[:1] != "`":
            if row == SUMMARY_HEADER:
                break
            raise StatementRejected(file, line_no, _not_a_detail(row, header))
        values = row[1:].split(",`")
        if len(values) != width:
            raise StatementRejected(
                file, line_no, f"{len(values)} values where the header names {width}"
            )
        try:
            state = values[i_state]
            line_total = yuan(values[i_total], "订单金额")  # differs line by line: read directly
            settle_text = values[i_settle]
            # Mostly the order's amount again (no coupon): read once.
            line_settle = line_total if settle_text == values[i_total] else settle_of[settle_text]
            line_refund = refund_of[values[i_refund]]
            line_coupon_refund = coupon_refund_of[values[i_coupon_refund]]
            line_fee = fee_of[values[i_fee]]
            line_asked = asked_of[values[i_asked]]
            if values[i_currency] != "CNY":
                raise ValueError(f"货币种类: {values[i_currency]!r}, not CNY")
            if values[i_mchid] != merchant:
                if not values[i_mchid]:
                    raise ValueError("商户号: empty")
                if merchant:
                    raise ValueError(f"商户号 {values[i_mchid]} in a bill of {merchant}")
                merchant = stream.merchant = values[i_mchid]
            if state == "REFUND":
                kind, reference, source_ref = (
                    refund_kind,
                    values[i_refund_no],
                    values[i_refund_id],
                )
                amount, status, line_fee_given = line_refund, values[i_refund_state], -line_fee
                if line_fee > 0:
                    raise ValueError("手续费: a refund's fee is given back, never charged")
                if status not in REFUND_STATES:
                    raise ValueError(f"退款状态: {status!r} is not a refund status")
                if not reference or not source_ref:
                    raise ValueError("a refund without 商户退款单号 or 微信退款单号")
            elif state in PAYMENT_STATES:
                kind, reference, source_ref = payment_kind, values[i_order], values[i_txid]
                amount, status, line_fee_given = line_total, state, line_fee
                if line_fee < 0:
                    raise ValueError("手续费: negative on a payment")
                payments += amount
                if not reference or not source_ref:
                    raise ValueError("a payment without 商户订单号 or 微信订单号")
            else:
                raise ValueError(f"交易状态: {state!r} is not a trade state")
            occurred_at = times[values[i_time]]
        except ValueError as exc:
            raise StatementRejected(file, line_no, str(exc)) from None
        yield line(
            line_no, kind, reference, source_ref, amount, line_fee_given, status, occurred_at
        )
        settle += line_settle
        refund += line_refund
        coupon_refund += line_coupon_refund
        fee += line_fee
        total += line_total
        asked += line_asked
    else:
        raise StatementRejected(file, line_no, "no summary after the details")
    sums = {
        "payments": payments,
        "应结订单金额": settle,
        "退款金额": refund,
        "充值券退款金额": coupon_refund,
        "手续费": fee,
        "订单金额": total,
        "申请退款金额": asked,
    }
    stream.end(_summary(rows, line_no, line_no - 2, sums, file))


def _not_a_detail(row: str, header: str) -> str:
    if row == header:
        return "the header again (a duplicate header)"
    if not row.strip():
        return "an empty line among the details"
    return "a value without its backtick (not a detail line)"


def _summary(rows: Iterator[str], at: int, count: int, sums: dict[str, int], file: str) -> Totals:
    """The summary line under its header (line ``at``), checked against the details."""
    line_no = at + 1
    row = next(rows, None)
    if row is None:
        raise StatementRejected(file, at, "a summary header without its line")
    for extra_no, extra in enumerate(rows, line_no + 1):
        if extra.strip():
            raise StatementRejected(file, extra_no, "a line after the summary")
    if row[:1] != "`":
        raise StatementRejected(file, line_no, "a summary value without its backtick")
    values = row[1:].split(",`")
    if len(values) != len(SUMMARY_COLUMNS):
        raise StatementRejected(
            file, line_no, f"{len(values)} summary values where {len(SUMMARY_COLUMNS)} are named"
        )
    written = dict(zip(SUMMARY_COLUMNS, values, strict=True))
    if not written["总交易单数"].isdigit() or not written["总交易单数"].isascii():
        raise StatementRejected(file, line_no, f"总交易单数: {written['总交易单数']!r}")
    if int(written["总交易单数"]) != count:
        raise StatementRejected(
            file, line_no, f"总交易单数 {written['总交易单数']} but the details hold {count} lines"
        )
    amounts: dict[str, int] = {}
    for name, detail in SUMMED.items():
        try:
            amounts[name] = signed_yuan(written[name], name)
        except ValueError as exc:
            raise StatementRejected(file, line_no, str(exc)) from None
        if amounts[name] != sums[detail]:
            raise StatementRejected(
                file,
                line_no,
                f"{name} {written[name]} but the details' {detail} add up to "
                f"{yuan_text(sums[detail])}",
            )
    return Totals(count, sums["payments"], amounts["退款总金额"], amounts["手续费总金额"])
