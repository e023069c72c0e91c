"""``fundhub-channel-simulator``: serve WeChat Pay's and Alipay's APIs and notices, or make keys.

fundhub-channel-simulator [--keys-dir DIR] [--time-factor 0.01] ...   serve (default)
fundhub-channel-simulator keygen --out-dir DIR                        its own keys, as files
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from fundhub.channel_simulator.keys import (
    ALIPAY_KEY_FILE,
    PLATFORM_KEY_FILE,
    PLATFORM_SERIAL_FILE,
    new_serial,
)
from fundhub.channel_simulator.notifier import Behaviour
from fundhub.common.config import get_settings
from fundhub.common.logging import configure_logging
from fundhub.common.signing import generate_rsa_keypair

SERVICE = "channel-simulator"
KEYS_DIR_ENV = "FUNDHUB_CHANNEL_SIM_KEYS_DIR"


def _delay_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(",")
    try:
        return (int(low), int(high) if sep else int(low))
    except ValueError:
        raise argparse.ArgumentTypeError("MIN,MAX in milliseconds, e.g. 0,500") from None


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    defaults = Behaviour()
    parser = argparse.ArgumentParser(
        prog="fundhub-channel-simulator",
        description="Plays WeChat Pay (APIv3) and Alipay: payments, refunds and their signed "
        "notifications, with the channels' retry schedules. Without a subcommand, serves.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.channel_simulator_port)
    parser.add_argument(
        "--keys-dir",
        type=Path,
        default=os.environ.get(KEYS_DIR_ENV) or None,
        help=f"its own keys and merchants.json (default: ${KEYS_DIR_ENV}; else made at start)",
    )
    parser.add_argument(
        "--time-factor",
        type=float,
        default=defaults.time_factor,
        help="retry schedules multiplied by this (0.001: WeChat's 15 s become 15 ms)",
    )
    parser.add_argument("--duplicate-rate", type=float, default=defaults.duplicate_rate)
    parser.add_argument(
        "--delay",
        type=_delay_range,
        default=defaults.delay_ms,
        metavar="MIN,MAX",
        help="milliseconds before a notice's first delivery (out-of-order arrivals)",
    )
    parser.add_argument(
        "--refund-delay", type=_delay_range, default=defaults.refund_delay_ms, metavar="MIN,MAX"
    )
    parser.add_argument("--refund-close-rate", type=float, default=defaults.refund_close_rate)
    parser.add_argument("--seed", type=int, default=None)
    commands = parser.add_subparsers(dest="command", metavar="{keygen}")
    keygen = commands.add_parser("keygen", help="write the simulator's own keys to a directory")
    keygen.add_argument("--out-dir", type=Path, required=True)
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _behaviour(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Behaviour:
    values: dict[str, Any] = {
        "time_factor": args.time_factor,
        "duplicate_rate": args.duplicate_rate,
        "delay_ms": args.delay,
        "refund_delay_ms": args.refund_delay,
        "refund_close_rate": args.refund_close_rate,
        "seed": args.seed,
    }
    try:
        return Behaviour(**values)
    except ValidationError as exc:
        parser.error("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


def write_keys(directory: Path, force: bool = False) -> dict[str, str]:
    """The simulator's own keys as files (private ones readable by their owner only)."""
    files = {
        PLATFORM_KEY_FILE: generate_rsa_keypair()[0],
        ALIPAY_KEY_FILE: generate_rsa_keypair()[0],
        PLATFORM_SERIAL_FILE: new_serial() + "\n",
    }
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in files.items():
        path = directory / name
        if path.exists() and not force:
            continue
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(text, "ascii")
        written[name] = str(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(SERVICE, get_settings().log_level)
    if args.command == "keygen":
        print(json.dumps(write_keys(args.out_dir, args.force)))
        return 0
    from fundhub.channel_simulator.app import create_app

    app = create_app(_behaviour(parser, args), keys_dir=args.keys_dir)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=get_settings().log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
