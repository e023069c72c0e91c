"""Malformed statement files through `fundhub recon import` (the real CLI, real Postgres and
Kafka): each is refused whole, the refusal names the file and the line, and nothing anywhere
changes (every table, every topic)."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import zipfile
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from support.env import ModuleEnv
from support.snapshot import snapshot

from fundhub.bank_simulator.daily_files import Posting, daily_file
from fundhub.channel_simulator.bills import BillRow, alipay_bill, wechatpay_bill
from fundhub.common.clock import BANK_TZ

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
DAY = date(2026, 6, 2)
SELLER = "2088000000000001"
APP = "bankapp01"


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=BANK_TZ)


def _rows() -> list[BillRow]:
    paid = [
        BillRow(
            "PAYMENT",
            _at(9, i),
            "wxapp",
            "1900000001",
            f"M{i:04d}",
            f"4200M{i:04d}",
            1000 + i,
            "goods",
            "SUCCESS",
            fee_fen=6,
        )
        for i in range(5)
    ]
    refund = BillRow(
        "REFUND", _at(11), "wxapp", "1900000001", "M0001", "4200M0001", 1001, "goods",
        "SUCCESS", out_refund_no="R0001", refund_id="5000R0001", refund_fen=500, fee_fen=3,
    )  # fmt: skip
    return [*paid, refund]


def _wechat() -> bytes:
    return wechatpay_bill(_rows())


def _alipay() -> bytes:
    return alipay_bill(_rows(), SELLER, DAY)[1]


def _bank() -> bytes:
    postings = [
        Posting(_at(10, i), "6222020000000001", "C", 5000 + i, "TRANSFER_IN", f"T{i}", f"S{i}")
        for i in range(4)
    ]
    return daily_file(postings, APP, DAY, _at(23) + timedelta(hours=3))


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


def _rezip(data: bytes, change: Callable[[str, bytes], bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change(info.filename, src.read(info)))
    return out.getvalue()


def _alipay_details(change: Callable[[bytes], bytes]) -> bytes:
    def on(name: str, member: bytes) -> bytes:
        return member if "汇总" in name else change(member)

    return _rezip(_alipay(), on)


def _wechat_bad_amount() -> bytes:
    return _replace_once(_wechat(), b"`10.02,", b"`10.0x,")


def _wechat_missing_column() -> bytes:
    lines = _wechat().split(b"\r\n")
    header = lines[0].split(b",")
    lines[0] = b",".join(header[:-1])
    return b"\r\n".join(lines)


def _wechat_wrong_total() -> bytes:
    lines = _wechat().rstrip(b"\r\n").split(b"\r\n")
    summary = lines[-1].split(b",")
    summary[1] = b"`999.99"
    lines[-1] = b",".join(summary)
    return b"\r\n".join(lines) + b"\r\n"


def _wechat_not_utf8() -> bytes:
    return _wechat().decode("utf-8").encode("gbk")


def _wechat_truncated_gzip() -> bytes:
    packed = gzip.compress(_wechat())
    return packed[: len(packed) // 2]


def _alipay_truncated_zip() -> bytes:
    data = _alipay()
    return data[: len(data) - 40]


def _alipay_utf8() -> bytes:
    return _alipay_details(lambda member: member.decode("gbk").encode("utf-8"))


def _alipay_bad_amount() -> bytes:
    def change(member: bytes) -> bytes:
        text = member.decode("gbk")
        start = text.index("10.03")
        return (text[:start] + "1O.03" + text[start + 5 :]).encode("gbk")

    return _alipay_details(change)


def _bank_wrong_trailer() -> bytes:
    lines = _bank().rstrip(b"\r\n").split(b"\n")
    last = lines[-1].rstrip(b"\r").split(b"|")
    assert last[0] == b"T", last
    last[4] = str(int(last[4]) + 1).encode()
    lines[-1] = b"|".join(last)
    return b"\n".join(lines) + b"\n"


# case -> (source, file name, the file, the line the refusal must name: None for the file as such)
CASES: dict[str, tuple[str, str, Callable[[], bytes], int | None]] = {
    "wechatpay: a bad amount": ("wechatpay", "bill.csv", _wechat_bad_amount, 4),
    "wechatpay: a missing column": ("wechatpay", "bill.csv", _wechat_missing_column, 1),
    "wechatpay: a wrong summary total": ("wechatpay", "bill.csv", _wechat_wrong_total, 9),
    "wechatpay: wrong encoding": ("wechatpay", "bill.csv", _wechat_not_utf8, None),
    "wechatpay: a truncated gzip": ("wechatpay", "bill.csv.gz", _wechat_truncated_gzip, None),
    "alipay: a truncated zip": ("alipay", "bill.csv.zip", _alipay_truncated_zip, None),
    "alipay: UTF-8 where GBK is written": ("alipay", "bill.csv.zip", _alipay_utf8, None),
    "alipay: a bad amount": ("alipay", "bill.csv.zip", _alipay_bad_amount, 0),
    "bank: a trailer that is not the records'": ("bank", "FUNDS.txt", _bank_wrong_trailer, 0),
}


def _import(env: ModuleEnv, source: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "fundhub"),
            "recon",
            "import",
            "--source",
            source,
            "--date",
            DAY.isoformat(),
            str(path),
            "--json",
        ],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_well_formed_files_are_read(env: ModuleEnv, tmp_path: Path) -> None:
    """The malformed files below differ from these in one place only: these must import."""
    for source, name, make in (
        ("wechatpay", "ok.csv", _wechat),
        ("alipay", "ok.csv.zip", _alipay),
        ("bank", "ok.txt", _bank),
    ):
        path = tmp_path / name
        path.write_bytes(make())
        done = _import(env, source, path)
        assert done.returncode == 0, (source, done.stderr, done.stdout)


@pytest.mark.parametrize("case", list(CASES))
async def test_a_malformed_file_is_refused_whole_naming_the_line(
    env: ModuleEnv, tmp_path: Path, case: str
) -> None:
    source, name, make, line = CASES[case]
    path = tmp_path / name
    path.write_bytes(make())
    before = await snapshot(env)
    done = _import(env, source, path)
    assert done.returncode == 2, (done.returncode, done.stderr, done.stdout)
    message = done.stderr
    # The file, or the member of the zip the fault is in (Alipay's bill is a zip of two CSVs).
    assert "refused" in message and (name in message or ".csv:" in message), message
    if line is not None:
        named = re.search(r"\.(?:csv|txt):(\d+):", message)
        assert named, message
        assert line == 0 or int(named.group(1)) == line, message
    after = await snapshot(env)
    assert before.changes(after) == [], (case, message)
