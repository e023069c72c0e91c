"""Alipay's trade bill (``alipay.data.dataservice.bill.downloadurl.query``, bill_type trade):
a zip of two GBK CSV files, read strictly.

``…_业务明细.csv`` holds the details between its ``#-----…业务明细列表…-----`` and
``#-----…业务明细列表结束…-----`` lines (``#`` lines around them are comments), one line per
payment (业务类型 交易) or refund (退款); values may carry tab characters, which are padding.
``…_业务明细(汇总).csv`` holds the summary by store and its ``合计`` line, which must agree with
the details column by column. Amounts are yuan; a refund's 商家实收 is negative, a payment's
服务费 (the fee) negative, a refund's fee given back positive.

A line's ``fee_fen`` is the fee it is about: charged on a payment, given back on a refund, so
never negative; ``Totals.fee_fen`` is the file's net fee (charged less given back).

The zip is read from a seekable file (its directory is at its end); the details member is
unpacked, decoded and read as it comes, each line given as soon as it is read, so memory does
not grow with the file; the summary member is read after the details and checked against them.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import date
from typing import IO

from fundhub.reconciliation.bill_bytes import MAX_TEXT_BYTES, text_lines, unpacked
from fundhub.reconciliation.bill_fields import Amounts, Times, signed_yuan, yuan, yuan_text
from fundhub.reconciliation.gc_pause import collector_paused
from fundhub.reconciliation.statement import (
    LineKind,
    LineStream,
    Source,
    Statement,
    StatementLine,
    StatementRejected,
    StatementTooLarge,
    Totals,
)

DETAIL_COLUMNS = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
]
SUMMARY_COLUMNS = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
]
DETAIL_SUFFIX = "_业务明细.csv"
SUMMARY_SUFFIX = "_业务明细(汇总).csv"
DETAIL_START, DETAIL_END = "业务明细列表", "业务明细列表结束"
SUMMARY_START, SUMMARY_END = "业务汇总列表", "业务汇总列表结束"
TOTAL_ROW = "合计"
PAYMENT, REFUND = "交易", "退款"
ENCODING = "gbk"
MAX_MEMBERS = 16
MAX_SUMMARY_ROWS = 10_000  # one a store: the summary is held whole
DEFAULT_FILE = "alipay-trade-bill.zip"
# The summary's amount columns and the detail columns they add up (实收净额: see _summary).
SUMMED = {
    "订单金额（元）": "订单金额（元）",
    "商家实收（元）": "商家实收（元）",
    "支付宝优惠（元）": "支付宝优惠（元）",
    "商家优惠（元）": "商家优惠（元）",
    "卡消费金额（元）": "卡消费金额（元）",
    "服务费（元）": "服务费（元）",
    "分润（元）": "分润（元）",
}
_C = {name: index for index, name in enumerate(DETAIL_COLUMNS)}


def parse_alipay_bill(data: bytes, day: date, file: str = DEFAULT_FILE) -> Statement:
    """The bill zip of ``day`` as a ``Statement``; ``StatementRejected`` otherwise."""
    with collector_paused():
        return stream_alipay_bill(io.BytesIO(data), day, file).whole()


def stream_alipay_bill(
    body: IO[bytes], day: date, file: str = DEFAULT_FILE, limit: int = MAX_TEXT_BYTES
) -> LineStream:
    """The bill zip in ``body`` (seekable, read from where it stands) read as its details
    member unpacks: each detail line given as soon as it is read; the summary checked at the
    end, its refusal raised from the last ``next``. ``limit`` bounds each member unpacked."""
    stream = LineStream(Source.ALIPAY, day, file)
    stream.feed(_read(body, stream, file, limit))
    return stream


def _read(body: IO[bytes], stream: LineStream, file: str, limit: int) -> Iterator[StatementLine]:
    try:
        archive = zipfile.ZipFile(body)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise StatementRejected(file, 0, f"not a readable zip ({exc})") from None
    with archive:
        details, summary = (
            _Member(archive, info, name, limit) for name, info in _members(archive, file, limit)
        )
        # ``{seller id}_{yyyymmdd}_业务明细.csv``: the bill's merchant.
        stream.merchant = details.name.rsplit("/", 1)[-1].split("_", 1)[0][:64]
        counts = {PAYMENT: 0, REFUND: 0}
        sums: dict[str, int] = {}
        amounts = [0, 0]  # payments, refunds
        yield from _details(details, counts, sums, amounts)
        stream.end(_summary(summary, counts, sums, amounts))


def member_name(info: zipfile.ZipInfo) -> str:
    """A member's name: Alipay's zips write GBK names without the zip's UTF-8 flag, which
    Python then reads as cp437."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode(ENCODING)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _members(archive: zipfile.ZipFile, file: str, limit: int) -> list[tuple[str, zipfile.ZipInfo]]:
    """The details and the summary member, each found once, their declared sizes bounded."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise StatementRejected(file, 0, f"more than {MAX_MEMBERS} files in the zip")
    named = {member_name(info): info for info in infos if not info.is_dir()}
    found: list[tuple[str, zipfile.ZipInfo]] = []
    for suffix in (DETAIL_SUFFIX, SUMMARY_SUFFIX):
        matches = [name for name in named if name.rsplit("/", 1)[-1].endswith(suffix)]
        if len(matches) != 1:
            raise StatementRejected(
                file, 0, f"{len(matches)} files named …{suffix} in the zip, 1 expected"
            )
        name = matches[0]
        if named[name].file_size > limit:
            raise StatementTooLarge(name, 0, f"larger than {limit} bytes unpacked")
        found.append((name, named[name]))
    return found


class _Member:
    """A member's lines as it unpacks, GBK strictly. UTF-8 sent for GBK mostly decodes as GBK
    into nonsense (the markers then go missing): the member's first bytes tell it apart, to
    name the cause."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int):
        self.name = name
        self._archive, self._info, self._limit = archive, info, limit
        self._head = b""

    def looks_utf8(self) -> bool:
        return _is_utf8_text(self._head)

    def _kept(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if not self._head:
                self._head = chunk
            yield chunk

    def lines(self) -> Iterator[str]:
        name = self.name
        try:
            member = self._archive.open(self._info)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise StatementRejected(name, 0, f"truncated or corrupt in the zip ({exc})") from None
        with member:
            chunks = unpacked(member, self._info.compress_size, name, self._limit)
            try:
                yield from text_lines(self._kept(chunks), ENCODING, name)
            except StatementRejected as exc:
                if exc.line_no and self.looks_utf8():
                    raise StatementRejected(name, 0, "UTF-8 text where GBK is expected") from None
                raise


def _is_utf8_text(raw: bytes) -> bool:
    text = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        decoded = text.decode(raw)  # a character cut at the chunk's end is not an error
    except UnicodeDecodeError:
        return False
    return not decoded.isascii()


def _marker(line: str, word: str) -> bool:
    """``#-----…word…-----``: the word between runs of dashes."""
    return line.startswith("#-") and line.strip("#-\t ") == word


class _Section:
    """The lines between a start and an end marker, read as they come; ``#`` lines before the
    start are comments, as are those after the end. Lines inside go to the CSV reader, where a
    stray comment or marker is a line of the wrong width. ``first_no`` is the line number of
    the section's first line (its header)."""

    def __init__(self, member: _Member, start: str, end: str) -> None:
        name = self.name = member.name
        self.end, self._member = end, member
        lines = self._lines = member.lines()
        self.first_no = 0
        for line_no, line in enumerate(lines, 1):
            if line.startswith("#"):
                if _marker(line, start):
                    self.first_no = line_no + 1
                    break
            elif line.strip():
                raise StatementRejected(name, line_no, f"a line before the {start} marker")
        else:
            self._missing(f"no {start} marker")
        self.ended = False

    def _missing(self, reason: str) -> None:
        if self._member.looks_utf8():
            raise StatementRejected(self.name, 0, "UTF-8 text where GBK is expected")
        raise StatementRejected(self.name, 0, reason)

    def inside(self) -> Iterator[str]:
        for line in self._lines:
            if line.startswith("#-") and _marker(line, self.end):
                self.ended = True
                return
            yield line

    def after(self, last_no: int) -> None:
        """Past the end marker: comments and blank lines only."""
        if not self.ended:
            raise StatementRejected(
                self.name, last_no + 1, f"no {self.end} marker (truncated file?)"
            )
        for line_no, line in enumerate(self._lines, last_no + 2):
            if line.strip() and not line.startswith("#"):
                raise StatementRejected(self.name, line_no, f"a line after the {self.end} marker")


def _rows(section: _Section, columns: list[str]) -> Iterator[tuple[int, list[str]]]:
    """The section's CSV rows after its header (values as written, tabs and all: each is
    stripped where it is read) with each row's line number; then the rest checked."""
    name, first_no = section.name, section.first_no
    inside = section.inside()
    header_line = next(inside, None)
    if header_line is None:
        raise StatementRejected(name, first_no, "no header")
    header = [value.strip("\t") for value in next(csv.reader([header_line]), [])]
    if header != columns:
        missing = [c for c in columns if c not in header]
        why = f"missing column {missing[0]}" if missing else "columns not as documented"
        raise StatementRejected(name, first_no, f"not the header ({why})")
    width = len(columns)
    reader = csv.reader(inside, strict=True)
    try:
        for values in reader:
            if len(values) != width:
                raise StatementRejected(
                    name,
                    first_no + reader.line_num,
                    f"{len(values)} values where the header names {width}",
                )
            yield first_no + reader.line_num, values
    except csv.Error as exc:
        raise StatementRejected(name, first_no + reader.line_num, f"not CSV ({exc})") from None
    section.after(first_no + reader.line_num)


def _details(
    member: _Member,
    counts: dict[str, int],
    sums: dict[str, int],
    amounts: list[int],
) -> Iterator[StatementLine]:
    """The detail lines as they are read; ``counts``, ``sums`` (the summary's columns) and
    ``amounts`` (payments, refunds) filled once the last is given."""
    name = member.name
    section = _Section(member, DETAIL_START, DETAIL_END)
    i_trade, i_order, i_kind = _C["支付宝交易号"], _C["商户订单号"], _C["业务类型"]
    i_done, i_total, i_received = _C["完成时间"], _C["订单金额（元）"], _C["商家实收（元）"]
    i_request, i_fee = _C["退款批次号/请求号"], _C["服务费（元）"]
    # The amounts each line adds to the summary: two vary line by line (read directly), the
    # others are 0.00 on almost every line (their readings remembered).
    i_alipay, i_merchant = _C["支付宝优惠（元）"], _C["商家优惠（元）"]
    i_card, i_share = _C["卡消费金额（元）"], _C["分润（元）"]
    alipay_of, merchant_of = Amounts("支付宝优惠（元）", True), Amounts("商家优惠（元）", True)
    card_of, share_of = Amounts("卡消费金额（元）", True), Amounts("分润（元）", True)
    fee_of = Amounts("服务费（元）", True)
    total_sum = received_sum = fee_sum = alipay_sum = merchant_sum = card_sum = share_sum = 0
    payments = refunds = 0
    times = Times("完成时间")
    for line_no, values in _rows(section, DETAIL_COLUMNS):
        try:
            total = yuan(values[i_total].strip("\t"), "订单金额（元）")
            received = signed_yuan(values[i_received].strip("\t"), "商家实收（元）")
            written_fee = fee_of[values[i_fee].strip("\t")]
            alipay_sum += alipay_of[values[i_alipay].strip("\t")]
            merchant_sum += merchant_of[values[i_merchant].strip("\t")]
            card_sum += card_of[values[i_card].strip("\t")]
            share_sum += share_of[values[i_share].strip("\t")]
            kind_word = values[i_kind].strip("\t")
            trade_no = values[i_trade].strip("\t")
            if kind_word == PAYMENT:
                kind, amount, fee = LineKind.PAYMENT, total, -written_fee
                reference = order_no = values[i_order].strip("\t")
                if fee < 0:
                    raise ValueError("服务费（元）: positive on a payment (a fee is charged)")
                if received < 0:
                    raise ValueError("商家实收（元）: negative on a payment")
            elif kind_word == REFUND:
                kind, amount, fee = LineKind.REFUND, -received, written_fee
                reference = values[i_request].strip("\t")
                order_no = values[i_order].strip("\t")
                if fee < 0:
                    raise ValueError("服务费（元）: negative on a refund (a fee is given back)")
                if received >= 0:
                    raise ValueError("商家实收（元）: a refund's must be negative")
            else:
                raise ValueError(f"业务类型: {kind_word!r}, neither {PAYMENT} nor {REFUND}")
            if not reference or not trade_no or not order_no:
                raise ValueError("支付宝交易号, 商户订单号 or 退款批次号/请求号 empty")
            occurred_at = times[values[i_done].strip("\t")]
        except ValueError as exc:
            raise StatementRejected(name, line_no, str(exc)) from None
        yield StatementLine(line_no, kind, reference, trade_no, amount, fee, kind_word, occurred_at)
        counts[kind_word] += 1
        if kind is LineKind.PAYMENT:
            payments += amount
        else:
            refunds += amount
        total_sum += total
        received_sum += received
        fee_sum += written_fee
    sums.update(
        {
            "订单金额（元）": total_sum,
            "商家实收（元）": received_sum,
            "支付宝优惠（元）": alipay_sum,
            "商家优惠（元）": merchant_sum,
            "卡消费金额（元）": card_sum,
            "服务费（元）": fee_sum,
            "分润（元）": share_sum,
        }
    )
    amounts[:] = [payments, refunds]


def _summary(
    member: _Member,
    counts: dict[str, int],
    sums: dict[str, int],
    amounts: list[int],
) -> Totals:
    """The ``合计`` line checked against the details; the totals as ``Totals`` counts them
    (payments and refunds apart, the fee positive when charged)."""
    name = member.name
    section = _Section(member, SUMMARY_START, SUMMARY_END)
    rows: list[list[str]] = []
    numbers: list[int] = []
    for line_no, raw in _rows(section, SUMMARY_COLUMNS):
        if len(rows) >= MAX_SUMMARY_ROWS:
            raise StatementRejected(name, line_no, f"more than {MAX_SUMMARY_ROWS} summary lines")
        rows.append([value.strip("\t") for value in raw])
        numbers.append(line_no)
    totals = [offset for offset, row in enumerate(rows) if row[0] == TOTAL_ROW]
    if len(totals) != 1:
        raise StatementRejected(
            name, section.first_no, f"{len(totals)} {TOTAL_ROW} lines, 1 expected"
        )
    line_no = numbers[totals[0]]
    written = dict(zip(SUMMARY_COLUMNS, rows[totals[0]], strict=True))
    for column, word in (("交易订单总笔数", PAYMENT), ("退款订单总笔数", REFUND)):
        if not (written[column].isascii() and written[column].isdigit()):
            raise StatementRejected(name, line_no, f"{column}: {written[column]!r}")
        if int(written[column]) != counts[word]:
            raise StatementRejected(
                name,
                line_no,
                f"{column} {written[column]} but the details hold {counts[word]} {word} lines",
            )
    written_amounts: dict[str, int] = {}
    try:
        for column in [*SUMMED, "实收净额（元）"]:
            written_amounts[column] = signed_yuan(written[column], column)
    except ValueError as exc:
        raise StatementRejected(name, line_no, str(exc)) from None
    for column, detail in SUMMED.items():
        if written_amounts[column] != sums[detail]:
            raise StatementRejected(
                name,
                line_no,
                f"{column} {written[column]} but the details add up to {yuan_text(sums[detail])}",
            )
    net = sums["商家实收（元）"] + sums["服务费（元）"]
    if written_amounts["实收净额（元）"] != net:
        raise StatementRejected(
            name,
            line_no,
            f"实收净额（元） {written['实收净额（元）']} but 商家实收 + 服务费 is {yuan_text(net)}",
        )
    count = counts[PAYMENT] + counts[REFUND]
    return Totals(count, amounts[0], amounts[1], -written_amounts["服务费（元）"])
