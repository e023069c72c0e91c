"""Channel notifications accepted per second through the gateway, with the bank's callback as
the baseline in the same run.

Starts the gateway itself on a scratch database and topic namespace of the running Kafka and
PostgreSQL (`fundhub infra up`), registers a bank app and a WeChat Pay and an Alipay app with
TEST keys made for the run, and drives each callback route at a fixed concurrency with
notifications signed (and, for WeChat Pay, encrypted) before the clock starts:
`POST /callbacks/bank` (RSA2 verify, publish), `POST /callbacks/wechatpay` (RSA verify,
AES-256-GCM decrypt, publish), `POST /callbacks/alipay` (strict form, RSA2 verify, publish).
Each is answered only once Kafka acknowledged it (acks=all) and its audit entry too. Rounds
alternate the routes so drift hits them alike; per route: rate, p50/p99, the gateway's CPU per
notification, and the ratio to the bank callback. No consumer runs: what is measured is what
the gateway accepts.

    .venv/bin/python bench/channel_notify.py --count 5000 --concurrency 64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import uvloop
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.channel_simulator import notices
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.sealing import generate_master_key
from fundhub.common.signing import generate_rsa_keypair, load_private_key

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv/bin"
sys.path.insert(0, str(Path(__file__).parent))
from scratch_gateway import (  # noqa: E402
    cli,
    create_scratch,
    drop_scratch,
    free_port,
    measure,
    scratch_env,
    wait_ready,
    write,
)

BANK_APP_ID = "20990101000000000000000002"
MCHID, APPID, SERIAL = (
    "1900009999",
    "wxbench00000000001",
    "BENCH0SERIAL0000000000000000000000000001",
)
ALIPAY_APP_ID, SELLER_ID = "2021009999999999", "2088009999999999"
APIV3_KEY = "BENCH-ONLY-apiv3-key-32-bytes-00"  # a TEST key


def request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def bank(netloc: str, private_pem: str, tag: str, count: int) -> list[bytes]:
    specs = [
        TransferSpec(record_id=f"cb{tag}{i}", in_acct_no=f"66{i % 500:08d}", trans_amount=100)
        for i in range(count)
    ]
    json_type = {"Content-Type": "application/json"}
    return [
        request(netloc, "/callbacks/bank", json.dumps(p, ensure_ascii=False).encode(), json_type)
        for p in build_many(specs, BANK_APP_ID, private_pem)
    ]


@dataclass(frozen=True)
class WechatPayApp:
    """What signs and seals a WeChat Pay app's notices (TEST keys): the platform key and its
    serial, the APIv3 key, the app's ids."""

    platform_key: RSAPrivateKey
    serial: str
    apiv3_key: bytes
    appid: str
    mchid: str


@dataclass(frozen=True)
class AlipayApp:
    alipay_key: RSAPrivateKey
    app_id: str
    seller_id: str


FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def wechatpay_paid(
    netloc: str, app: WechatPayApp, out_trade_no: str, transaction_id: str, fen: int, now: datetime
) -> bytes:
    """A signed TRANSACTION.SUCCESS notice (its resource encrypted), as a whole request."""
    resource = notices.transaction_resource(
        appid=app.appid,
        mchid=app.mchid,
        out_trade_no=out_trade_no,
        transaction_id=transaction_id,
        total_fen=fen,
        success_time=now - timedelta(seconds=1),
    )
    body = notices.wechatpay_body(
        notices.notification_id(), "TRANSACTION.SUCCESS", resource, app.apiv3_key, now
    )
    notice = notices.sign_wechatpay(body, app.platform_key, app.serial, now)
    return request(netloc, "/callbacks/wechatpay", notice.body, notice.headers)


def alipay_paid(
    netloc: str, app: AlipayApp, out_trade_no: str, trade_no: str, fen: int, now: datetime
) -> bytes:
    """A signed TRADE_SUCCESS notice, as a whole request."""
    fields = notices.alipay_fields(
        app_id=app.app_id,
        seller_id=app.seller_id,
        out_trade_no=out_trade_no,
        trade_no=trade_no,
        trade_status="TRADE_SUCCESS",
        total_fen=fen,
        subject="压测订单",
        gmt_create=now,
        gmt_payment=now,
    )
    return request(
        netloc, "/callbacks/alipay", notices.sign_alipay(fields, app.alipay_key, now), FORM_TYPE
    )


def wechatpay(netloc: str, platform_pem: str, tag: str, count: int) -> list[bytes]:
    app = WechatPayApp(load_private_key(platform_pem), SERIAL, APIV3_KEY.encode(), APPID, MCHID)
    now = utcnow()
    return [
        wechatpay_paid(netloc, app, f"W{tag}{i}", f"42{i:026d}", 100 + i % 977, now)
        for i in range(count)
    ]


def alipay(netloc: str, alipay_pem: str, tag: str, count: int) -> list[bytes]:
    app = AlipayApp(load_private_key(alipay_pem), ALIPAY_APP_ID, SELLER_ID)
    now = utcnow()
    return [
        alipay_paid(netloc, app, f"A{tag}{i}", f"2026{i:024d}", 100 + i % 977, now)
        for i in range(count)
    ]


BUILDERS = {"bank": bank, "wechatpay": wechatpay, "alipay": alipay}
ACCEPTED = {"bank": 200, "wechatpay": 204, "alipay": 200}


def register(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """The apps, by the operator's CLI; returns each route's signing key (private PEM)."""
    bank_private, bank_public = generate_rsa_keypair()
    platform_private, platform_public = generate_rsa_keypair()
    alipay_private, alipay_public = generate_rsa_keypair()

    def file(name: str, text: str) -> str:
        return str(write(tmp / name, text))

    cli(env, "migrate")
    cli(
        env,
        "bank-app",
        "add",
        "--app-id",
        BANK_APP_ID,
        "--public-key",
        file("bank.pem", bank_public),
    )
    cli(env, "channel", "add", "wechatpay", "--mchid", MCHID, "--appid", APPID,
        "--apiv3-key-file", file("apiv3.key", APIV3_KEY), "--platform-serial", SERIAL,
        "--platform-public-key", file("platform.pem", platform_public))  # fmt: skip
    cli(env, "channel", "add", "alipay", "--app-id", ALIPAY_APP_ID, "--seller-id", SELLER_ID,
        "--alipay-public-key", file("alipay.pem", alipay_public))  # fmt: skip
    return {"bank": bank_private, "wechatpay": platform_private, "alipay": alipay_private}


def start_gateway(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "fundhub-gateway")], env={**env, "FUNDHUB_GATEWAY_PORT": str(port)}
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="notifications per route and round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench/results/channel_notify.json"))
    args = parser.parse_args()

    base = Settings()
    run = uuid.uuid4().hex[:8]
    database = f"fundhub_bench_channels_{run}"
    namespace = f"bench-channels-{run}"
    env = scratch_env(base, await create_scratch(base, database), namespace)
    env.update(FUNDHUB_ENV="test", FUNDHUB_MASTER_KEY=generate_master_key())
    results: dict[str, list[dict[str, float]]] = {name: [] for name in BUILDERS}
    proc: subprocess.Popen[bytes] | None = None
    try:
        keys = register(env, Path(f"/tmp/{namespace}"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_gateway(env, port)
        await wait_ready(url, proc)
        netloc = f"127.0.0.1:{port}"
        for name, build in BUILDERS.items():  # warm-up, not measured
            await measure(
                url,
                build(netloc, keys[name], f"w{name}", 500),
                args.concurrency,
                proc.pid,
                ACCEPTED[name],
            )
        for round_ in range(args.rounds):
            order = list(BUILDERS) if round_ % 2 == 0 else list(reversed(BUILDERS))
            for name in order:
                requests = BUILDERS[name](netloc, keys[name], f"{round_}", args.count)
                figures = await measure(url, requests, args.concurrency, proc.pid, ACCEPTED[name])
                results[name].append(figures)
                print(f"round {round_} {name:<9} {figures}", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        await drop_scratch(base, database, namespace)

    summary: dict[str, object] = {"count": args.count, "concurrency": args.concurrency}
    baseline = max(r["rate"] for r in results["bank"])
    for name, runs in results.items():
        best = max(runs, key=lambda r: r["rate"])
        summary[name] = {
            **best,
            "ratio_to_bank": round(best["rate"] / baseline, 3),
            "failures": sum(r["failures"] for r in runs),
        }
    summary["runs"] = results
    write(Path(args.out), json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    uvloop.run(main())
