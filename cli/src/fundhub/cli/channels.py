"""``fundhub channel``: the WeChat Pay and Alipay apps we trust, as an operator registers them.

    fundhub channel add wechatpay --mchid ID --appid ID --apiv3-key-file F \\
        --platform-serial S --platform-public-key FILE [--platform-serial S2 ...] \\
        [--merchant-private-key FILE --merchant-serial S]
    fundhub channel add alipay --app-id ID --seller-id PID --alipay-public-key FILE \\
        [--app-private-key FILE]
    fundhub channel list [--json]
    fundhub channel add-serial --appid ID --platform-serial S --platform-public-key FILE
    fundhub channel remove-serial --appid ID --platform-serial S

Every change is audited in its own transaction (``cli.audit.audited``); no secret is printed
or audited. The secrets (APIv3 key, merchant private keys) are sealed with the master key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fundhub.channels.apps import (
    ChannelApp,
    InvalidChannelApp,
    add_platform_key,
    list_apps,
    normalize_private_key,
    normalize_public_key,
    parse_id,
    parse_serial,
    read_apiv3_key,
    remove_platform_key,
    upsert_alipay_app,
    upsert_wechatpay_app,
)
from fundhub.cli.audit import audited
from fundhub.cli.database import connection
from fundhub.cli.errors import CliError, UsageError
from fundhub.cli.masterkey import resolve_master_key
from fundhub.cli.settings import cli_settings
from fundhub.cli.tables import render_table
from fundhub.common.config import Settings
from fundhub.common.db import Connection

T = TypeVar("T")

channel_app = typer.Typer(help="WeChat Pay and Alipay apps we trust.", no_args_is_help=True)
add_app = typer.Typer(help="Register (or update) a channel app.", no_args_is_help=True)
channel_app.add_typer(add_app, name="add")

_ACTIVATE = typer.Option(
    "--activate/--no-activate",
    help="Make it the app that takes the channel's new payments (one per channel).",
)
_JSON = typer.Option("--json", help="Print JSON.")


@contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except InvalidChannelApp as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except CliError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(error.exit_code) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    with _reported():
        return asyncio.run(coro)


def _in_database(settings: Settings, work: Callable[[Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        async with connection(settings.database_url) as conn:
            try:
                return await work(conn)
            except InvalidChannelApp as exc:  # found in the database: an unknown app, a last key
                raise UsageError(str(exc)) from None

    return _run(main())


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def _text(path: Path, what: str) -> str:
    try:
        return _read(path, what).decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not a PEM (ASCII) file") from None


def _echo_app(app: ChannelApp | None, as_json: bool) -> None:
    if app is None:
        return
    if as_json:
        typer.echo(json.dumps(app.as_json()))
    else:
        state = "active" if app.active else "inactive"
        typer.echo(f"{app.channel.value} app {app.app_id} ({app.merchant_ref}): {state}")


async def _app(conn: Connection, channel: str, app_id: str) -> ChannelApp | None:
    return next(
        (a for a in await list_apps(conn) if a.channel.value == channel and a.app_id == app_id),
        None,
    )


@add_app.command("wechatpay")
def add_wechatpay(
    mchid: Annotated[str, typer.Option("--mchid", help="The merchant id (商户号).")],
    appid: Annotated[str, typer.Option("--appid", help="The appid payments are made under.")],
    apiv3_key_file: Annotated[
        Path,
        typer.Option(
            "--apiv3-key-file", help="A file holding the 32-character APIv3 key.", dir_okay=False
        ),
    ],
    platform_serial: Annotated[
        list[str] | None,
        typer.Option(
            "--platform-serial", help="A platform key's serial (repeatable, paired in order)."
        ),
    ] = None,
    platform_public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--platform-public-key",
            help="That serial's public key or certificate, PEM (repeatable).",
            dir_okay=False,
        ),
    ] = None,
    merchant_private_key: Annotated[
        Path | None,
        typer.Option(
            "--merchant-private-key",
            help="The merchant API private key (PEM) that signs our requests.",
            dir_okay=False,
        ),
    ] = None,
    merchant_serial: Annotated[
        str | None,
        typer.Option("--merchant-serial", help="The serial of that key's certificate."),
    ] = None,
    activate: Annotated[bool, _ACTIVATE] = True,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Trust a WeChat Pay app: its APIv3 key and platform keys (notifications), and the
    merchant's key (our requests). Given again, it updates the app and adds the serials."""
    settings = cli_settings()
    with _reported():
        mchid, appid = parse_id(mchid, "--mchid"), parse_id(appid, "--appid")
        platform_serial, platform_public_key = platform_serial or [], platform_public_key or []
        if len(platform_serial) != len(platform_public_key) or not platform_serial:
            raise UsageError(
                "give --platform-serial and --platform-public-key in pairs, at least one"
            )
        serials = [parse_serial(s) for s in platform_serial]
        if len(set(serials)) != len(serials):
            raise UsageError("a --platform-serial is given twice")
        keys = [
            (serial, normalize_public_key(_text(path, "platform public key")))
            for serial, path in zip(serials, platform_public_key, strict=True)
        ]
        apiv3_key = read_apiv3_key(_read(apiv3_key_file, "APIv3 key file"))
        if (merchant_private_key is None) != (merchant_serial is None):
            raise UsageError("give --merchant-private-key and --merchant-serial together")
        merchant_key = None
        if merchant_private_key is not None and merchant_serial is not None:
            merchant_key = (
                parse_serial(merchant_serial),
                normalize_private_key(_text(merchant_private_key, "merchant private key")),
            )
        master_key = resolve_master_key(settings)
    params = {
        "channel": "WECHATPAY",
        "mchid": mchid,
        "appId": appid,
        "platformSerials": serials,
        "merchantSerial": merchant_key[0] if merchant_key else None,
        "activate": activate,
    }

    async def work(conn: Connection) -> ChannelApp | None:
        await upsert_wechatpay_app(
            conn,
            master_key,
            mchid=mchid,
            appid=appid,
            apiv3_key=apiv3_key,
            platform_keys=keys,
            merchant_key=merchant_key,
            activate=activate,
        )
        return await _app(conn, "WECHATPAY", appid)

    _echo_app(_in_database(settings, audited("channel add wechatpay", params, work)), as_json)


@add_app.command("alipay")
def add_alipay(
    app_id: Annotated[str, typer.Option("--app-id", help="The Alipay app_id.")],
    seller_id: Annotated[str, typer.Option("--seller-id", help="The seller's PID (2088…).")],
    alipay_public_key: Annotated[
        Path,
        typer.Option(
            "--alipay-public-key", help="Alipay's public key for the app, PEM.", dir_okay=False
        ),
    ],
    app_private_key: Annotated[
        Path | None,
        typer.Option(
            "--app-private-key",
            help="The app's private key (PEM) that signs our requests.",
            dir_okay=False,
        ),
    ] = None,
    activate: Annotated[bool, _ACTIVATE] = True,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Trust an Alipay app: Alipay's public key (notices, answers) and the app's private key
    (our requests). Given again, it updates the app."""
    settings = cli_settings()
    with _reported():
        app_id, seller_id = parse_id(app_id, "--app-id"), parse_id(seller_id, "--seller-id")
        public_pem = normalize_public_key(_text(alipay_public_key, "Alipay public key"))
        private_pem = (
            None
            if app_private_key is None
            else normalize_private_key(_text(app_private_key, "app private key"))
        )
        master_key = resolve_master_key(settings)
    params = {"channel": "ALIPAY", "appId": app_id, "sellerId": seller_id, "activate": activate}

    async def work(conn: Connection) -> ChannelApp | None:
        await upsert_alipay_app(
            conn,
            master_key,
            app_id=app_id,
            seller_id=seller_id,
            alipay_public_key_pem=public_pem,
            app_private_key_pem=private_pem,
            activate=activate,
        )
        return await _app(conn, "ALIPAY", app_id)

    _echo_app(_in_database(settings, audited("channel add alipay", params, work)), as_json)


@channel_app.command("list")
def list_channel_apps(as_json: Annotated[bool, _JSON] = False) -> None:
    """Every channel app: ids, whether it takes new payments, serials; never a secret."""
    apps = _in_database(cli_settings(), list_apps)
    if as_json:
        typer.echo(json.dumps([a.as_json() for a in apps]))
        return
    if not apps:
        typer.echo("no channel apps yet")
        return
    rows = [
        [
            a.channel.value,
            a.app_id,
            a.merchant_ref,
            "yes" if a.active else "no",
            ",".join(a.platform_serials) or "-",
            a.merchant_serial or ("yes" if a.can_call_api else "-"),
        ]
        for a in apps
    ]
    headers = ["CHANNEL", "APP", "MERCHANT", "ACTIVE", "PLATFORM SERIALS", "MERCHANT KEY"]
    typer.echo(render_table(headers, rows, right=set()))


@channel_app.command("add-serial")
def add_serial(
    appid: Annotated[str, typer.Option("--appid", help="The WeChat Pay app's appid.")],
    platform_serial: Annotated[str, typer.Option("--platform-serial", help="The new serial.")],
    platform_public_key: Annotated[
        Path,
        typer.Option(
            "--platform-public-key", help="Its public key or certificate, PEM.", dir_okay=False
        ),
    ],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Trust one more WeChat Pay platform key (rotation): notifications verify under either."""
    settings = cli_settings()
    with _reported():
        appid, serial = parse_id(appid, "--appid"), parse_serial(platform_serial)
        pem = normalize_public_key(_text(platform_public_key, "platform public key"))
    added = _in_database(
        settings,
        audited(
            "channel add-serial",
            {"appId": appid, "platformSerial": serial},
            lambda conn: add_platform_key(conn, appid, serial, pem),
        ),
    )
    if as_json:
        typer.echo(json.dumps({"appId": appid, "platformSerial": serial, "added": added}))
    else:
        typer.echo(
            f"WeChat Pay app {appid}: serial {serial} {'added' if added else 'already trusted'}"
        )


@channel_app.command("remove-serial")
def remove_serial(
    appid: Annotated[str, typer.Option("--appid", help="The WeChat Pay app's appid.")],
    platform_serial: Annotated[str, typer.Option("--platform-serial", help="The serial to drop.")],
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Stop trusting one platform key; an app's last one cannot be removed."""
    settings = cli_settings()
    with _reported():
        appid, serial = parse_id(appid, "--appid"), parse_serial(platform_serial)
    _in_database(
        settings,
        audited(
            "channel remove-serial",
            {"appId": appid, "platformSerial": serial},
            lambda conn: remove_platform_key(conn, appid, serial),
        ),
    )
    if as_json:
        typer.echo(json.dumps({"appId": appid, "platformSerial": serial, "removed": True}))
    else:
        typer.echo(f"WeChat Pay app {appid}: serial {serial} removed")
