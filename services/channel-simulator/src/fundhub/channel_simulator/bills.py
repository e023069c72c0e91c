"""The channels' trade bills, as each writes them the day after, from what the simulator's
book holds: WeChat Pay's CSV (backtick-prefixed values, the summary after the details) and
Alipay's zip of two GBK CSV files (details between their markers, the summary by store).

A day is a calendar day in GMT+8. Its lines: the payments paid that day and the refunds that
succeeded that day (a refund still processing, or closed, is not in any bill). The channel's fee is
``fee_ppm`` parts per million of each payment (0.6 % by default, as WeChat Pay and Alipay charge
most merchants), rounded half up to the fen, and the same share of a refund is given back.

Discrepancies, for tests and demos, change the rows before they are written (``inject``):
drop a line, add one, change its amount, its status or its fee, or write it twice. The files
stay well-formed: the summaries are always the sums of the lines as written.
"""

from __future__ import annotations

import csv
import io
import secrets
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fundhub.channel_simulator.trades import RefundStatus, Trade
from fundhub.channels.events import Channel
from fundhub.common.clock import BANK_TZ

RowKind = Literal["PAYMENT", "REFUND"]

WECHATPAY_COLUMNS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,"
    "退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
WECHATPAY_REFUND_COLUMNS = WECHATPAY_COLUMNS + ",退款申请时间,退款成功时间"
WECHATPAY_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
ALIPAY_COLUMNS = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)
ALIPAY_SUMMARY = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
)
_DASHES = "-" * 40


@dataclass(frozen=True, slots=True)
class BillRow:
    """One line of a bill: a payment, or a refund of one."""

    kind: RowKind
    at: datetime
    app_id: str
    merchant_ref: str
    out_trade_no: str
    transaction_id: str
    total_fen: int
    description: str
    status: str  # WeChat Pay: 交易状态 of a payment, 退款状态 of a refund
    payer: str = ""
    out_refund_no: str = ""
    refund_id: str = ""
    refund_fen: int = 0
    fee_fen: int = 0  # charged on a payment, given back on a refund: never negative
    asked_at: datetime | None = None

    @property
    def reference(self) -> str:
        return self.out_refund_no if self.kind == "REFUND" else self.out_trade_no

    @property
    def amount_fen(self) -> int:
        return self.refund_fen if self.kind == "REFUND" else self.total_fen


class Discrepancy(BaseModel):
    """One injected difference (camelCase on the wire). ``reference``: the line's
    ``out_trade_no`` (a payment) or ``out_refund_no`` (a refund); ``lineKind`` settles which
    when both carry the same number (Alipay's default refund number is the trade's)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    kind: Literal["drop", "add", "amount", "status", "duplicate", "fee"]
    reference: str | None = Field(default=None, min_length=1, max_length=64)
    line_kind: RowKind | None = None
    amount_fen: int | None = Field(default=None, ge=1, le=10**14)
    status: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[A-Z_]+$")
    fee_fen: int | None = Field(default=None, ge=0, le=10**14)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), BANK_TZ)
    return start, start + timedelta(days=1)


DEFAULT_FEE_PPM = 6_000


def channel_fee(amount_fen: int, fee_ppm: int) -> int:
    return (amount_fen * fee_ppm + 500_000) // 1_000_000


def _trade_row(trade: Trade, kind: RowKind, at: datetime, fee_fen: int) -> BillRow:
    """A successful line of ``trade`` with the trade's columns (a refund's own are added)."""
    return BillRow(
        kind,
        at,
        trade.app_id,
        trade.merchant_ref,
        trade.out_trade_no,
        trade.transaction_id,
        trade.total_fen,
        trade.description,
        "SUCCESS",
        payer=trade.payer_openid or "",
        fee_fen=fee_fen,
    )


def day_rows(
    trades: Iterable[Trade], merchant_ref: str, day: date, fee_ppm: int = DEFAULT_FEE_PPM
) -> list[BillRow]:
    """The bill's lines for one merchant (WeChat Pay mchid, Alipay seller), in time order."""
    start, end = day_bounds(day)
    rows: list[BillRow] = []
    for trade in trades:
        if trade.merchant_ref != merchant_ref or trade.paid_at is None:
            continue
        if start <= trade.paid_at < end:
            fee = channel_fee(trade.total_fen, fee_ppm)
            rows.append(_trade_row(trade, "PAYMENT", trade.paid_at, fee))
        for refund in trade.refunds.values():
            done = refund.success_at
            if refund.status is RefundStatus.SUCCESS and done is not None and start <= done < end:
                fee = channel_fee(refund.amount_fen, fee_ppm)
                rows.append(
                    replace(
                        _trade_row(trade, "REFUND", done, fee),
                        out_refund_no=refund.out_refund_no,
                        refund_id=refund.refund_id,
                        refund_fen=refund.amount_fen,
                        asked_at=refund.created_at,
                    )
                )
    rows.sort(key=lambda row: (row.at, row.kind, row.reference))
    return rows


def inject(
    rows: Sequence[BillRow],
    discrepancies: Sequence[Discrepancy],
    channel: Channel,
    day: date,
    app_id: str,
    merchant_ref: str,
) -> list[BillRow]:
    """The rows with the discrepancies applied in order; ValueError names one that cannot be."""
    result = list(rows)
    for number, wanted in enumerate(discrepancies, start=1):
        if wanted.kind == "add":
            result.append(_added(wanted, channel, day, app_id, merchant_ref))
            continue
        if wanted.reference is None:
            raise ValueError(f"discrepancy {number} ({wanted.kind}): reference is required")
        index = _find(result, wanted)
        if index is None:
            raise ValueError(f"discrepancy {number}: no line {wanted.reference} in the bill")
        row = result[index]
        if wanted.kind == "drop":
            del result[index]
        elif wanted.kind == "duplicate":
            result.insert(index + 1, row)
        elif wanted.kind == "amount":
            if wanted.amount_fen is None:
                raise ValueError(f"discrepancy {number} (amount): amountFen is required")
            changed = {"refund_fen" if row.kind == "REFUND" else "total_fen": wanted.amount_fen}
            result[index] = replace(row, **changed)  # type: ignore[arg-type]
        elif wanted.kind == "fee":
            if wanted.fee_fen is None:
                raise ValueError(f"discrepancy {number} (fee): feeFen is required")
            result[index] = replace(row, fee_fen=wanted.fee_fen)
        else:
            if channel is Channel.ALIPAY:
                raise ValueError("Alipay's trade bill has no status column")
            if wanted.status is None:
                raise ValueError(f"discrepancy {number} (status): status is required")
            result[index] = replace(row, status=wanted.status)
    return result


def _find(rows: Sequence[BillRow], wanted: Discrepancy) -> int | None:
    for index, row in enumerate(rows):
        if row.reference == wanted.reference and wanted.line_kind in (None, row.kind):
            return index
    return None


def _added(
    wanted: Discrepancy, channel: Channel, day: date, app_id: str, merchant_ref: str
) -> BillRow:
    """A payment the platform never saw, at noon of the day."""
    digits = "".join(secrets.choice("0123456789") for _ in range(24))
    return BillRow(
        "PAYMENT",
        day_bounds(day)[0] + timedelta(hours=12),
        app_id,
        merchant_ref,
        wanted.reference or f"SIMADD{secrets.token_hex(8)}",
        ("4200" if channel is Channel.WECHATPAY else "2026") + digits,
        wanted.amount_fen or 100,
        "injected",
        wanted.status or "SUCCESS",
        fee_fen=channel_fee(wanted.amount_fen or 100, DEFAULT_FEE_PPM)
        if wanted.fee_fen is None
        else wanted.fee_fen,
    )


# --- WeChat Pay --------------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _wx_time(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(BANK_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _wx_text(text: str) -> str:
    """No value may hold the next value's mark (a backtick) or end the line."""
    return text.replace("`", "'").replace("\r", " ").replace("\n", " ")


def wechatpay_bill(rows: Sequence[BillRow], bill_type: str = "ALL") -> bytes:
    """The bill as ``/v3/bill/tradebill`` gives it (UTF-8, CRLF), ``ALL`` or ``REFUND``."""
    refund_bill = bill_type == "REFUND"
    if refund_bill:
        rows = [row for row in rows if row.kind == "REFUND"]
    out = [WECHATPAY_REFUND_COLUMNS if refund_bill else WECHATPAY_COLUMNS]
    settle = refund = fee = total = 0
    for row in rows:
        is_refund = row.kind == "REFUND"
        row_settle = 0 if is_refund else row.total_fen
        row_refund = row.refund_fen if is_refund else 0
        values = [
            _wx_time(row.at),
            row.app_id,
            row.merchant_ref,
            "0",
            "",
            row.transaction_id,
            row.out_trade_no,
            row.payer,
            "JSAPI" if row.payer else "NATIVE",
            "REFUND" if is_refund else row.status,
            "OTHERS",
            "CNY",
            _yuan(row_settle),
            "0.00",
            row.refund_id if is_refund else "0",
            row.out_refund_no if is_refund else "0",
            _yuan(row_refund),
            "0.00",
            "ORIGINAL" if is_refund else "",
            row.status if is_refund else "",
            _wx_text(row.description),
            "",
            _yuan(-row.fee_fen if is_refund else row.fee_fen),
            "0.60%",
            _yuan(row_settle),
            _yuan(row_refund),
            "",
        ]
        if refund_bill:
            values += [_wx_time(row.asked_at or row.at), _wx_time(row.at)]
        out.append("`" + ",`".join(values))
        settle += row_settle
        refund += row_refund
        fee += -row.fee_fen if is_refund else row.fee_fen
        total += row_settle
    out.append(WECHATPAY_SUMMARY)
    summary = [str(len(rows)), _yuan(settle), _yuan(refund), "0.00", _yuan(fee)]
    out.append("`" + ",`".join([*summary, _yuan(total), _yuan(refund)]))
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


# --- Alipay ------------------------------------------------------------------------------------


def _csv_lines(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _tabbed(values: Sequence[str]) -> list[str]:
    """Alipay pads each value with a tab (so spreadsheets keep long numbers as text)."""
    return [value + "\t" for value in values]


def bill_name(seller_id: str, day: date) -> str:
    return f"{seller_id}_{day:%Y%m%d}.csv.zip"


def alipay_bill(rows: Sequence[BillRow], seller_id: str, day: date) -> tuple[str, bytes]:
    """The bill's zip and its name: ``…_业务明细.csv`` and ``…_业务明细(汇总).csv``, GBK."""
    stem = f"{seller_id}_{day:%Y%m%d}"
    start, end = day_bounds(day)
    period = f"#起始日期：[{start:%Y年%m月%d日 %H:%M:%S}]   终止日期：[{end:%Y年%m月%d日 %H:%M:%S}]"
    details: list[list[str]] = []
    received = fee = total = payments = refunds = 0
    for row in rows:
        is_refund = row.kind == "REFUND"
        row_received = -row.refund_fen if is_refund else row.total_fen
        details.append(
            _tabbed(
                [
                    row.transaction_id,
                    row.out_trade_no,
                    "退款" if is_refund else "交易",
                    row.description.replace("\r", " ").replace("\n", " "),
                    _wx_time(row.asked_at or row.at),
                    _wx_time(row.at),
                    "",
                    "",
                    "",
                    "",
                    "159****0000",
                    _yuan(row.total_fen),
                    _yuan(row_received),
                    "0.00",
                    "0.00",
                    "0.00",
                    "0.00",
                    "",
                    "",
                    "0.00",
                    "0.00",
                    row.out_refund_no if is_refund else "",
                    _yuan(row.fee_fen if is_refund else -row.fee_fen),
                    "0.00",
                    "",
                ]
            )
        )
        received += row_received
        fee += row.fee_fen if is_refund else -row.fee_fen
        total += row.total_fen
        refunds += is_refund
        payments += not is_refund
    now = datetime.now(BANK_TZ)
    detail_text = (
        f"#支付宝业务明细查询\r\n#账号：[{seller_id}]\r\n{period}\r\n"
        f"#{_DASHES}业务明细列表{_DASHES}\r\n"
        + ALIPAY_COLUMNS
        + "\r\n"
        + _csv_lines(details)
        + f"#{_DASHES}业务明细列表结束{_DASHES}\r\n"
        f"#交易合计：{payments}笔，退款合计：{refunds}笔\r\n"
        f"#导出时间：[{now:%Y年%m月%d日 %H:%M:%S}]\r\n"
    )
    sums = [str(payments), str(refunds), _yuan(total), _yuan(received), "0.00", "0.00", "0.00"]
    sums += [_yuan(fee), "0.00", _yuan(received + fee)]
    summary_text = (
        f"#支付宝业务汇总查询\r\n#账号：[{seller_id}]\r\n{period}\r\n"
        f"#{_DASHES}业务汇总列表{_DASHES}\r\n"
        + ALIPAY_SUMMARY
        + "\r\n"
        + _csv_lines([_tabbed(["", "", *sums]), _tabbed(["合计", "", *sums])])
        + f"#{_DASHES}业务汇总列表结束{_DASHES}\r\n"
        f"#导出时间：[{now:%Y年%m月%d日 %H:%M:%S}]\r\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}_业务明细.csv", detail_text.encode("gbk", "replace"))
        archive.writestr(f"{stem}_业务明细(汇总).csv", summary_text.encode("gbk", "replace"))
    return bill_name(seller_id, day), buffer.getvalue()
