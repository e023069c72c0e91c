"""What a hostile body costs the gateway, against an ordinary refusal (issue 9, defects 4 and 6).

Requests, each sent ``--repeat`` times one after another on a fresh connection:

| case | what |
|---|---|
| `bank-refusal` | an ordinary notification (about 1.5 KB) with a bogus signature: 401 |
| `bank-65k-keys` | the attacker's: 0.9 MB, 65,000 top-level keys, a bogus signature |
| `payout-refusal` | a signed payout with a bad amount: 400 |
| `payout-70k-extension` | a signed 1 MiB payout whose `extension` holds 70,000 keys |

and the largest of each that fits under its route's body limit: `bank-17k-keys` (17,000
top-level keys, just under 256 KiB) and `payout-1.2k-extension` (just under 16 KiB).

For each: the median wall time of a request and, with ``--pid`` (the gateway's process id), the
gateway's CPU time per request (user + system, from ``/proc/PID/stat``), and the ratio of both to
the ordinary refusal of the same route. The gateway needs a bank app registered (any key: no
signature here is valid) and, for the payouts, an API key with ``payouts:write`` on ``*``.

    .venv/bin/python bench/hostile_bodies.py --url http://127.0.0.1:8000 --pid PID \\
        --app-id 20210911888888888888888888 --key-id ak_... --secret ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from fundhub.common.signing import sign_api_request

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def notification(app_id: str, extra_keys: int) -> bytes:
    params = {
        "app_id": app_id,
        "method": "bkfunds.acct.transfer.notify",
        "format": "json",
        "charset": "UTF-8",
        "sign_type": "RSA2",
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 8 * 3600)),
        "version": "1.0",
        "biz_content": json.dumps({"record_id": "r1", "in_acct_no": "6222000000000001"}),
        "sign": "A" * 344,
        **{f"k{i:05d}": "v" for i in range(extra_keys)},
    }
    return json.dumps(params).encode()


def payout(extension_keys: int) -> bytes:
    body = {
        "requestId": f"bench-{uuid.uuid4().hex}",
        "supplierId": "SUP1",
        "payerAccountId": "6222000000000001",
        "amount": -1 if extension_keys == 0 else 100,
        "currency": "CNY",
        "payee": {"accountName": "A", "accountNo": "6222000011112222", "bankName": "B"},
        "extension": {f"k{i:05d}": 0 for i in range(extension_keys)},
    }
    return json.dumps(body).encode()


@dataclass
class Case:
    name: str
    path: str
    body: Callable[[], bytes]
    signed: bool


def run(args: argparse.Namespace) -> None:
    cases = [
        Case("bank-refusal", "/callbacks/bank", lambda: notification(args.app_id, 0), False),
        Case("bank-65k-keys", "/callbacks/bank", lambda: notification(args.app_id, 65_000), False),
        # The most keys that fit under the route's body limit (256 KiB): refused for its shape.
        Case("bank-17k-keys", "/callbacks/bank", lambda: notification(args.app_id, 17_000), False),
        Case("payout-refusal", "/v1/payouts", lambda: payout(0), True),
        Case("payout-70k-extension", "/v1/payouts", lambda: payout(70_000), True),
        # The most extension keys that fit under the route's body limit (16 KiB).
        Case("payout-1.2k-extension", "/v1/payouts", lambda: payout(1_200), True),
    ]
    results: dict[str, tuple[int, int, float, float]] = {}
    for case in cases:
        walls: list[float] = []
        cpu = 0.0
        status = 0
        size = 0
        for _ in range(args.repeat):
            body = case.body()
            size = len(body)
            headers = {"Content-Type": "application/json"}
            if case.signed:
                ts, nonce = str(int(time.time())), uuid.uuid4().hex
                headers |= {
                    "X-Api-Key": args.key_id,
                    "X-Timestamp": ts,
                    "X-Nonce": nonce,
                    "X-Signature": sign_api_request(
                        args.secret, "POST", case.path, [], ts, nonce, body
                    ),
                }
            with httpx.Client(base_url=args.url, timeout=30) as client:
                before = cpu_seconds(args.pid)
                started = time.perf_counter()
                try:
                    status = client.post(case.path, content=body, headers=headers).status_code
                except httpx.HTTPError:
                    status = -1  # refused before the body was sent whole: connection closed
                walls.append(time.perf_counter() - started)
                cpu += cpu_seconds(args.pid) - before
        results[case.name] = (status, size, statistics.median(walls), cpu / args.repeat)
    base = {"/callbacks/bank": "bank-refusal", "/v1/payouts": "payout-refusal"}
    header = f"{'case':<22}{'status':>7}{'bytes':>10}{'wall ms':>10}{'cpu ms':>9}"
    print(f"{header}{'x wall':>8}{'x cpu':>7}")
    for case in cases:
        status, size, wall, cpu = results[case.name]
        _, _, base_wall, base_cpu = results[base[case.path]]
        ratio_cpu = f"{cpu / base_cpu:7.0f}" if base_cpu else "      -"
        print(
            f"{case.name:<22}{status:>7}{size:>10}{wall * 1000:>10.2f}{cpu * 1000:>9.2f}"
            f"{wall / base_wall:>8.0f}{ratio_cpu}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, default=None, help="the gateway's process id")
    parser.add_argument("--app-id", default="20210911888888888888888888")
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--repeat", type=int, default=20)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
