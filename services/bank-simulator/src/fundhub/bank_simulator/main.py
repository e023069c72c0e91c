"""``fundhub-bank-simulator``: serve the control API, run one scenario, or make a key pair.

fundhub-bank-simulator [--stream-interval 5] ...        serve (default)
fundhub-bank-simulator --payout-fail-rate 0.1 ...       serve, the payout side behaving so
fundhub-bank-simulator --depository-review-delay 0,200   serve, members reviewed that fast
fundhub-bank-simulator send --count 1000 --duplicates 2  one scenario, JSON tally, exit
fundhub-bank-simulator keygen --out-dir DIR              the bank's RSA key pair
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from cryptography.exceptions import UnsupportedAlgorithm
from pydantic import ValidationError

from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.depository_members import DepositoryBehaviour
from fundhub.bank_simulator.metrics import PrometheusObserver
from fundhub.bank_simulator.notifications import DEFAULT_APP_ID, private_key
from fundhub.bank_simulator.payouts_bank import PayoutBehaviour
from fundhub.bank_simulator.runs import RunStatus, TransferScenarioRequest, execute_run, plan_run
from fundhub.bank_simulator.sender import open_sender
from fundhub.common.config import get_settings
from fundhub.common.logging import configure_logging
from fundhub.common.signing import generate_rsa_keypair

SERVICE = "bank-simulator"
KEY_FILE_ENV = "FUNDHUB_BANK_SIM_PRIVATE_KEY_FILE"
PRIVATE_KEY_NAME = "bank-sim-private.pem"
PUBLIC_KEY_NAME = "bank-sim-public.pem"


def _add_connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options of both modes. On the subcommand their defaults are suppressed, so a value
    given before ``send`` is not overwritten by the subcommand's default."""
    settings = get_settings()

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--gateway-url",
        default=default(f"http://127.0.0.1:{settings.gateway_port}"),
        help="where the gateway listens; notices go to {url}/callbacks/bank",
    )
    parser.add_argument(
        "--app-id", default=default(DEFAULT_APP_ID), help="the bank app id (app_id)"
    )
    parser.add_argument(
        "--private-key-file",
        type=Path,
        default=default(os.environ.get(KEY_FILE_ENV)),
        help=f"the bank's RSA private key, PEM (default: ${KEY_FILE_ENV})",
    )
    parser.add_argument(
        "--retries", type=int, default=default(3), help="re-sends after a failure (bank: 3)"
    )
    parser.add_argument(
        "--retry-interval",
        type=float,
        default=default(180.0),
        metavar="SECONDS",
        help="pause between attempts (bank: 180)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(10.0),
        metavar="SECONDS",
        help="per request; a timeout counts as a failure",
    )
    parser.add_argument(
        "--max-connections", type=int, default=default(100), help="HTTP connection pool size"
    )


# flag -> (PayoutBehaviour field, help); rates are probabilities from 0 to 1.
_PAYOUT_RATES: dict[str, tuple[str, str]] = {
    "--payout-fail-rate": ("fail_rate", "payouts the bank fails (payee account closed, ...)"),
    "--payout-timeout-rate": (
        "timeout_rate",
        "requests answered only after --payout-timeout-delay (the transfer is still made)",
    ),
    "--payout-server-error-rate": (
        "server_error_rate",
        "requests answered 500 (the transfer is still made)",
    ),
    "--payout-processing-rate": (
        "processing_rate",
        "first answers that say PROCESSING; the rest carry the outcome (default 1)",
    ),
    "--payout-duplicate-callback-rate": ("duplicate_callback_rate", "result callbacks sent twice"),
    "--payout-late-return-rate": ("late_return_rate", "paid payouts later RETURNED"),
    "--payout-never-answer-rate": (
        "never_answer_rate",
        "payouts whose result no callback ever tells (only GET does)",
    ),
}


def _delay_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(",")
    try:
        return (int(low), int(high) if sep else int(low))
    except ValueError:
        raise argparse.ArgumentTypeError("MIN,MAX in milliseconds, e.g. 20,200") from None


# flag -> (PayoutBehaviour field, type, metavar, help) of the payout side's other settings.
_PAYOUT_SETTINGS: dict[str, tuple[str, Callable[[str], Any], str | None, str]] = {
    "--payout-callback-delay": (
        "callback_delay_ms",
        _delay_range,
        "MIN,MAX",
        "milliseconds from acceptance to the result and its callback",
    ),
    "--payout-return-delay": (
        "return_delay_ms",
        _delay_range,
        "MIN,MAX",
        "milliseconds from SUCCESS to a late RETURNED",
    ),
    "--payout-timeout-delay": (
        "timeout_delay_ms",
        int,
        "MS",
        "how late a timed-out request is answered; keep it above the client's timeout",
    ),
    "--payout-seed": ("seed", int, None, "default: random (GET /bank/v1/behaviour)"),
}


def _payout_options() -> dict[str, tuple[str, Callable[[str], Any], str | None, str]]:
    """Every payout flag, the rates first, as ``_PAYOUT_SETTINGS`` describes them."""
    rates = {flag: (name, float, "RATE", text) for flag, (name, text) in _PAYOUT_RATES.items()}
    return rates | _PAYOUT_SETTINGS


def _add_payout_options(parser: argparse.ArgumentParser) -> None:
    """The payout side's behaviour at start; ``POST /bank/v1/behaviour`` changes it later."""
    group = parser.add_argument_group("payout side (the bank's /bank/v1 API)")
    defaults = PayoutBehaviour()
    for flag, (name, kind, metavar, text) in _payout_options().items():
        group.add_argument(
            flag, type=kind, default=getattr(defaults, name), metavar=metavar, help=text
        )


def _payout_behaviour(parser: argparse.ArgumentParser, args: argparse.Namespace) -> PayoutBehaviour:
    values: dict[str, Any] = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, (name, *_) in _payout_options().items()
    }
    try:
        return PayoutBehaviour(**values)
    except ValidationError as exc:
        parser.error("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


def _add_depository_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("depository side (the bank's /depository/v1 member API)")
    group.add_argument(
        "--depository-review-delay",
        type=_delay_range,
        default=DepositoryBehaviour().review_delay_ms,
        metavar="MIN,MAX",
        help="milliseconds from a member request to its decision and notification",
    )


def _depository_behaviour(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> DepositoryBehaviour:
    try:
        return DepositoryBehaviour(review_delay_ms=args.depository_review_delay)
    except ValidationError as exc:
        parser.error("; ".join(e["msg"] for e in exc.errors()))


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="fundhub-bank-simulator",
        description="Plays the bank: signs bkfunds.acct.transfer.notify and posts it to the "
        "gateway, retrying like the bank. Without a subcommand, serves the control API.",
    )
    _add_connection_options(parser, suppress=False)
    parser.add_argument("--host", default="127.0.0.1", help="control API address")
    parser.add_argument(
        "--port", type=int, default=settings.bank_simulator_port, help="control API port"
    )
    parser.add_argument(
        "--stream-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="> 0: send a demo arrival every SECONDS, some followed by 6/1 or a reversal",
    )
    parser.add_argument(
        "--stream-accounts", type=int, default=3, help="demo accounts the stream pays into"
    )
    _add_payout_options(parser)
    _add_depository_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="{send,keygen}")

    send = commands.add_parser("send", help="run one transfer scenario, print a JSON tally")
    _add_connection_options(send, suppress=True)
    send.add_argument("--count", type=int, required=True, help="distinct transfer records")
    send.add_argument("--accounts", help="comma-separated receiving accounts")
    send.add_argument("--account-count", type=int, default=5, help="else: this many demo ones")
    send.add_argument("--min-amount", type=int, default=100, help="fen")
    send.add_argument("--max-amount", type=int, default=100_000, help="fen")
    send.add_argument("--duplicates", type=int, default=1, help="copies sent of each notice")
    send.add_argument("--lifecycle", action="store_true", help="also send status 6, then 1")
    send.add_argument("--reversal-rate", type=float, default=0.0, help="0..1")
    send.add_argument("--seed", type=int, help="default: random (reported in the tally)")
    send.add_argument("--concurrency", type=int, default=32)
    send.add_argument("--record-prefix", help="record id prefix (default: the scenario id)")

    keygen = commands.add_parser("keygen", help="write a new RSA key pair for the bank")
    keygen.add_argument("--out-dir", type=Path, default=Path("."))
    keygen.add_argument("--bits", type=int, default=2048)
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SimulatorConfig:
    if args.private_key_file is None:
        parser.error(
            f"no private key: pass --private-key-file or set {KEY_FILE_ENV} "
            "(make one with `fundhub-bank-simulator keygen`)"
        )
    path = Path(args.private_key_file)
    try:
        pem = path.read_text("ascii")
        private_key(pem)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        parser.error(f"cannot use the private key in {path}: {type(exc).__name__}")
    if args.retries < 0 or args.retry_interval < 0 or args.timeout <= 0:
        parser.error("--retries, --retry-interval must be >= 0 and --timeout > 0")
    return SimulatorConfig(
        gateway_url=args.gateway_url,
        private_key_pem=pem,
        app_id=args.app_id,
        retries=args.retries,
        retry_interval_s=args.retry_interval,
        timeout_s=args.timeout,
        max_connections=max(1, args.max_connections),
        stream_interval_s=getattr(args, "stream_interval", 0.0),
        stream_accounts=max(1, getattr(args, "stream_accounts", 3)),
    )


def _logs_to_stderr() -> None:
    """In ``send`` mode stdout carries the JSON tally alone."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


async def _send_once(config: SimulatorConfig, request: TransferScenarioRequest) -> dict[str, Any]:
    run = await asyncio.to_thread(plan_run, request)
    async with open_sender(
        config.gateway_url, **config.delivery(), observer=PrometheusObserver()
    ) as sender:
        await execute_run(run, sender, config.app_id, private_key(config.private_key_pem))
    return run.to_json()


def _send(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    config = _config(parser, args)
    try:
        request = TransferScenarioRequest(
            count=args.count,
            accounts=[a.strip() for a in args.accounts.split(",") if a.strip()]
            if args.accounts
            else None,
            account_count=args.account_count,
            min_amount=args.min_amount,
            max_amount=args.max_amount,
            duplicates=args.duplicates,
            lifecycle=args.lifecycle,
            reversal_rate=args.reversal_rate,
            seed=args.seed,
            concurrency=args.concurrency,
            record_prefix=args.record_prefix,
        )
    except ValidationError as exc:
        parser.error("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    _logs_to_stderr()
    tally = asyncio.run(_send_once(config, request))
    print(json.dumps(tally, ensure_ascii=False, indent=2))
    return 0 if tally["status"] == RunStatus.DONE and tally["failed"] == 0 else 1


def _keygen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    private_path = args.out_dir / PRIVATE_KEY_NAME
    public_path = args.out_dir / PUBLIC_KEY_NAME
    if not args.force and (private_path.exists() or public_path.exists()):
        parser.error(f"{private_path} or {public_path} exists (--force overwrites)")
    private_pem, public_pem = generate_rsa_keypair(args.bits)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    private_path.touch(mode=0o600, exist_ok=True)
    private_path.chmod(0o600)
    private_path.write_text(private_pem, "ascii")
    public_path.write_text(public_pem, "ascii")
    print(json.dumps({"privateKeyFile": str(private_path), "publicKeyFile": str(public_path)}))
    return 0


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from fundhub.bank_simulator.app import create_app

    config = _config(parser, args)
    if config.stream_interval_s < 0:
        parser.error("--stream-interval must be >= 0")
    app = create_app(config, _payout_behaviour(parser, args), _depository_behaviour(parser, args))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=get_settings().log_level.lower(),
        access_log=False,  # a line per request costs CPU, and nothing reads it
        # A request held back to simulate a bank timeout must not hold up a stop for long.
        timeout_graceful_shutdown=5,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(SERVICE, get_settings().log_level)
    if args.command == "send":
        return _send(parser, args)
    if args.command == "keygen":
        return _keygen(parser, args)
    return _serve(parser, args)


if __name__ == "__main__":
    sys.exit(main())
