"""``fundhub``: the operator's command line (dev stack, migrations, keys, bank apps, balances)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fundhub.access.binding import InvalidBinding, certificate_fingerprint, parse_fingerprint
from fundhub.access.keys import InvalidKeySpec, new_api_key
from fundhub.access.store import insert_api_key, restrict_api_key
from fundhub.bank_transfers.bank_apps import (
    InvalidBankApp,
    normalize_public_key,
    parse_app_id,
    parse_sign_excludes,
    restrict_bank_app,
    upsert_bank_app,
)
from fundhub.cli.balances import balance_json, balances_table, describe_balance
from fundhub.cli.callbacks import parse_pay_id, replay_callbacks
from fundhub.cli.database import connection
from fundhub.cli.errors import CliError, UsageError
from fundhub.cli.masterkey import resolve_master_key
from fundhub.common.cidrs import InvalidCidr, parse_cidrs
from fundhub.common.config import Settings, get_settings
from fundhub.common.db import Connection
from fundhub.ledger.balances import customer_balances, read_balance

T = TypeVar("T")

app = typer.Typer(
    name="fundhub",
    help="Operate fundhub: the local dev stack, the schema, API keys, bank apps, balances.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
infra_app = typer.Typer(help="Local Kafka and PostgreSQL in the background.", no_args_is_help=True)
api_key_app = typer.Typer(help="API keys for upstream systems.", no_args_is_help=True)
bank_app_app = typer.Typer(help="Banks' public keys, per app id.", no_args_is_help=True)
callbacks_app = typer.Typer(help="Payout callbacks to clients.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")
app.add_typer(api_key_app, name="api-key")
app.add_typer(bank_app_app, name="bank-app")
app.add_typer(callbacks_app, name="callbacks")


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError: a malformed FUNDHUB_* variable
        raise UsageError(f"invalid FUNDHUB_* configuration: {exc}") from None


def _fail(error: CliError) -> typer.Exit:
    typer.echo(f"error: {error.message}", err=True)
    return typer.Exit(error.exit_code)


@contextmanager
def _reported(*usage_errors: type[Exception]) -> Iterator[None]:
    """A CliError, or one of ``usage_errors`` (the domain's refusals of bad input) as a usage
    error, ends the command with its message and exit code instead of a traceback."""
    try:
        yield
    except usage_errors as exc:
        raise _fail(UsageError(str(exc))) from None
    except CliError as error:
        raise _fail(error) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    with _reported():
        return asyncio.run(coro)


def _in_database(settings: Settings, work: Callable[[Connection], Awaitable[T]]) -> T:
    """``work`` on one short-lived connection to the configured database."""

    async def main() -> T:
        async with connection(settings.database_url) as conn:
            return await work(conn)

    return _run(main())


# -- dev stack ------------------------------------------------------------------------------


@app.command()
def up(
    no_services: Annotated[
        bool, typer.Option("--no-services", help="Only infra, schema, topics and dev keys.")
    ] = False,
) -> None:
    """Run the whole dev stack in the foreground; Ctrl-C stops everything it started."""
    from fundhub.cli.devstack.stack import run_up

    with _reported():  # outside: typer.Exit is a RuntimeError too
        try:
            code = run_up(_settings(), with_services=not no_services)
        except (RuntimeError, OSError) as exc:  # infra that would not start, with its log tail
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("dev-init")
def dev_init() -> None:
    """Create the dev keys (.data/dev) and register the bank simulator's public key."""
    from fundhub.cli.devstack import stack

    settings = _settings()
    keys = _run(stack.dev_init(settings))
    typer.echo(f"dev keys in {keys.bank_sim_private_key_file.parent}")


@infra_app.command("up")
def infra_up() -> None:
    """Start local Kafka and PostgreSQL in the background (if not reachable) and return."""
    from fundhub.cli.devstack import ensure_infra

    settings = _settings()
    try:
        infra = ensure_infra(settings, progress=typer.echo)
    except (RuntimeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"kafka     {infra.kafka_bootstrap}")
    typer.echo(f"postgres  {settings.database_url.split('@')[-1]}")
    typer.echo("stop them with `fundhub infra down` (or `make down`)")


@infra_app.command("down")
def infra_down() -> None:
    """Stop the local Kafka and PostgreSQL of this checkout, if they run."""
    from fundhub.cli.devstack import stop_local_infra

    stopped = stop_local_infra(progress=typer.echo)
    typer.echo("stopped: " + ", ".join(stopped) if stopped else "nothing was running")


@infra_app.command("status")
def infra_status() -> None:
    """Show whether the local Kafka and PostgreSQL run."""
    from fundhub.cli.devstack import kafka_node, postgres_node

    for name, node in (("kafka", kafka_node()), ("postgres", postgres_node())):
        pid = node.pid()
        state = f"running (pid {pid})" if pid else "not running"
        if pid is None and node.is_running():
            state = "port in use by another process"
        typer.echo(f"{name:<9} {node.address}  {state}")


@app.command()
def migrate() -> None:
    """Apply pending database migrations (every context's, in version order).

    Refuses, changing nothing, when an applied migration's file has changed since."""
    from fundhub.common.migrations import MigrationError
    from fundhub.common.migrations import migrate as apply

    settings = _settings()

    async def main() -> list[str]:
        async with connection(settings.database_url):
            pass  # a clear error if the database is unreachable
        try:
            return await apply(settings.database_url)
        except MigrationError as exc:
            raise CliError(str(exc)) from None

    applied = _run(main())
    typer.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


# -- API keys -------------------------------------------------------------------------------


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option("--name", help="Who the key is for.")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated scopes.")],
    accounts: Annotated[
        str, typer.Option("--accounts", help="Comma-separated account ids, or '*' for all.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key and its webhook secret; both are printed once and stored only sealed."""
    settings = _settings()
    with _reported(InvalidKeySpec):
        key = new_api_key(name, scopes, accounts)
        master_key = resolve_master_key(settings)
    _in_database(settings, lambda conn: insert_api_key(conn, key, master_key))
    if as_json:
        typer.echo(json.dumps(key.as_json()))
    else:
        typer.echo(f"key id:  {key.key_id}")
        typer.echo(f"secret:  {key.secret}")
        typer.echo(f"webhook secret:  {key.webhook_secret}")
        typer.echo(f"scopes:  {','.join(key.scopes)}   accounts: {','.join(key.accounts)}")
        typer.echo("The secrets are shown only now; store them safely.", err=True)


@api_key_app.command("restrict")
def api_key_restrict(
    key_id: Annotated[str, typer.Argument(help="The key id (ak_...).")],
    client_cert: Annotated[
        Path | None,
        typer.Option(
            "--client-cert",
            help="Bind to this client certificate (PEM): accepted only over mutual TLS with it.",
            dir_okay=False,
        ),
    ] = None,
    client_cert_sha256: Annotated[
        str | None,
        typer.Option("--client-cert-sha256", help="Bind to a certificate by its fingerprint."),
    ] = None,
    allow_cidrs: Annotated[
        str | None,
        typer.Option("--allow-cidrs", help="Comma-separated ranges the key may be used from."),
    ] = None,
) -> None:
    """Set where a key may be used from; without options, lift every restriction."""
    settings = _settings()
    with _reported(InvalidBinding, InvalidCidr):
        if client_cert is not None and client_cert_sha256 is not None:
            raise UsageError("give --client-cert or --client-cert-sha256, not both")
        fingerprint = None
        if client_cert_sha256 is not None:
            fingerprint = parse_fingerprint(client_cert_sha256)
        elif client_cert is not None:
            try:
                fingerprint = certificate_fingerprint(client_cert.read_bytes())
            except OSError as exc:
                raise UsageError(f"cannot read {client_cert}: {exc}") from None
        cidrs = parse_cidrs(allow_cidrs)
    found = _in_database(settings, lambda conn: restrict_api_key(conn, key_id, fingerprint, cidrs))
    if not found:
        raise _fail(UsageError(f"no API key {key_id}"))
    ranges = ",".join(map(str, cidrs)) or "any"
    typer.echo(f"key {key_id}: client certificate {fingerprint or 'none'}; from {ranges}")


# -- bank apps ------------------------------------------------------------------------------


@bank_app_app.command("add")
def bank_app_add(
    app_id: Annotated[str, typer.Option("--app-id", help="The bank's app_id.")],
    public_key: Annotated[
        Path,
        typer.Option("--public-key", help="The bank's RSA public key (PEM file).", dir_okay=False),
    ],
    sign_excludes: Annotated[
        str | None,
        typer.Option("--sign-excludes", help="Parameters not signed (sign is always one)."),
    ] = None,
) -> None:
    """Register (or replace) a bank app's public key."""
    settings = _settings()
    with _reported(InvalidBankApp):
        app_id = parse_app_id(app_id)
        excludes = parse_sign_excludes(sign_excludes)
        try:
            text = public_key.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {public_key}: {exc}") from None
        pem = normalize_public_key(text)
    changed = _in_database(settings, lambda conn: upsert_bank_app(conn, app_id, pem, excludes))
    verdict = "registered" if changed else "unchanged"
    typer.echo(f"bank app {app_id} {verdict} (sign excludes: {','.join(excludes)})")


@bank_app_app.command("restrict")
def bank_app_restrict(
    app_id: Annotated[str, typer.Option("--app-id", help="The bank's app_id.")],
    allow_cidrs: Annotated[
        str | None,
        typer.Option("--allow-cidrs", help="Ranges its notifications may come from (none: any)."),
    ] = None,
) -> None:
    """Set the addresses a bank app's notifications are accepted from."""
    settings = _settings()
    with _reported(InvalidBankApp, InvalidCidr):
        app_id = parse_app_id(app_id)
        cidrs = parse_cidrs(allow_cidrs)
    found = _in_database(settings, lambda conn: restrict_bank_app(conn, app_id, cidrs))
    if not found:
        raise _fail(UsageError(f"no bank app {app_id}"))
    typer.echo(f"bank app {app_id}: from {','.join(map(str, cidrs)) or 'any'}")


# -- callbacks ------------------------------------------------------------------------------


@callbacks_app.command("replay")
def callbacks_replay(
    pay_id: Annotated[str, typer.Argument(help="The payout's payId.")],
) -> None:
    """Send a payout's callbacks again: its deliveries become due now."""
    settings = _settings()
    with _reported():
        parsed = parse_pay_id(pay_id)
    replayed = _in_database(settings, lambda conn: replay_callbacks(conn, parsed))
    typer.echo(f"{parsed}: {replayed} callback deliveries due again")


# -- balances -------------------------------------------------------------------------------


@app.command()
def balance(
    account: Annotated[str, typer.Argument(help="The account id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one account's balance (available, frozen, pending)."""
    found = _in_database(_settings(), lambda conn: read_balance(conn, account))
    if found is None:
        typer.echo(f"error: unknown account {account!r}", err=True)
        raise typer.Exit(1)
    typer.echo(
        json.dumps(balance_json(found), ensure_ascii=False) if as_json else describe_balance(found)
    )


@app.command()
def accounts(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List customer accounts with their balances."""
    found = _in_database(_settings(), customer_balances)
    if as_json:
        typer.echo(json.dumps([balance_json(b) for b in found], ensure_ascii=False))
    elif not found:
        typer.echo("no customer accounts yet")
    else:
        typer.echo(balances_table(found))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
