"""``fundhub``: the operator's command line (dev stack, migrations, keys, bank apps, balances)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fundhub.access.binding import InvalidBinding, certificate_fingerprint, parse_fingerprint
from fundhub.access.keys import (
    InvalidKeySpec,
    environment_served_by,
    iso,
    new_api_key,
    parse_duration,
    parse_environment,
    parse_expiry,
)
from fundhub.access.limit_store import clear_key_limits, set_key_limits
from fundhub.access.limits import InvalidRate, Rate, parse_key_limits
from fundhub.access.store import (
    KeyNotFound,
    insert_api_key,
    list_api_keys,
    restrict_api_key,
    revoke_api_key,
    rotate_secret,
)
from fundhub.audit import archive
from fundhub.audit import store as audit_store
from fundhub.bank_transfers.bank_apps import (
    InvalidBankApp,
    add_bank_key,
    bank_app_keys,
    fingerprint,
    normalize_public_key,
    parse_app_id,
    parse_sign_excludes,
    remove_bank_key,
    restrict_bank_app,
    upsert_bank_app,
)
from fundhub.cli.audit import append_one, audited, operator_entry
from fundhub.cli.balances import balance_json, balances_table, describe_balance
from fundhub.cli.callbacks import parse_pay_id, replay_callbacks
from fundhub.cli.channels import channel_app
from fundhub.cli.database import connection
from fundhub.cli.errors import CliError, UsageError
from fundhub.cli.initialisation import init_app
from fundhub.cli.keys import reseal_everything, summaries_table, summary_json
from fundhub.cli.masterkey import resolve_master_key, resolve_master_keys
from fundhub.cli.recon import recon_app
from fundhub.cli.settings import cli_settings as _settings
from fundhub.common.cidrs import InvalidCidr, parse_cidrs
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.db import Connection
from fundhub.common.sealing import generate_master_key
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
master_key_app = typer.Typer(help="The master key that seals stored secrets.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")
app.add_typer(api_key_app, name="api-key")
app.add_typer(bank_app_app, name="bank-app")
audit_app = typer.Typer(help="The audit log: list, verify, archive.", no_args_is_help=True)
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(audit_app, name="audit")
app.add_typer(master_key_app, name="master-key")
app.add_typer(channel_app, name="channel")
app.add_typer(recon_app, name="recon")
app.add_typer(init_app, name="init")


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
def infra_up(
    brokers: Annotated[
        int,
        typer.Option(
            "--brokers", min=1, max=9, help="Kafka nodes: 3 runs a KRaft cluster on this machine."
        ),
    ] = 1,
    kafka_port: Annotated[
        int, typer.Option("--kafka-port", help="The first broker's port (the next at +2...).")
    ] = 9092,
) -> None:
    """Start local Kafka and PostgreSQL in the background (if not reachable) and return."""
    from fundhub.cli.devstack import ensure_infra
    from fundhub.cli.devstack.kafka_cluster import cluster_addresses

    settings = _settings()
    if brokers > 1:
        # The services must then be told the cluster (the variables printed below).
        bootstrap = ",".join(str(a) for a in cluster_addresses(brokers, kafka_port))
        replicas = min(3, brokers)
        settings = settings.model_copy(
            update={"kafka_bootstrap": bootstrap, "topic_replication_factor": replicas}
        )
    try:
        infra = ensure_infra(settings, progress=typer.echo)
    except (RuntimeError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"kafka     {infra.kafka_bootstrap}")
    typer.echo(f"postgres  {settings.database_url.split('@')[-1]}")
    if brokers > 1:
        typer.echo(
            f"export FUNDHUB_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} "
            f"FUNDHUB_TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor}"
        )
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
    from fundhub.cli.devstack import KafkaNode, PostgresNode, kafka_node, postgres_node
    from fundhub.cli.devstack.kafka_cluster import running_clusters

    shown: list[tuple[str, KafkaNode | PostgresNode]] = [("kafka", kafka_node())]
    shown += [("kafka", node) for cluster in running_clusters() for node in cluster.nodes]
    shown.append(("postgres", postgres_node()))
    for name, node in shown:
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

    started = time.perf_counter()
    applied = _run(main())
    entry = operator_entry("migrate", {"applied": applied}, started)
    _in_database(settings, lambda conn: append_one(conn, entry))
    typer.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


_RATE_LIMIT_HELP = (
    "N/second|minute|hour for every route class, or read=N/unit,write=N/unit;"
    " counted per route. Default: FUNDHUB_RATE_LIMIT_READ / FUNDHUB_RATE_LIMIT_WRITE."
)
_RATE_LIMIT_OPTION = typer.Option("--rate-limit", help=_RATE_LIMIT_HELP)

# -- API keys -------------------------------------------------------------------------------


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option("--name", help="Who the key is for.")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated scopes.")],
    accounts: Annotated[
        str, typer.Option("--accounts", help="Comma-separated account ids, or '*' for all.")
    ],
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="live or sandbox (default: live when FUNDHUB_ENV=prod, else sandbox).",
        ),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime, e.g. 90d, 24h.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="End, ISO 8601 (2027-01-31T00:00:00Z).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    rate_limit: Annotated[str | None, _RATE_LIMIT_OPTION] = None,
) -> None:
    """Create an API key and its webhook secret; both are printed once and stored only sealed."""
    settings = _settings()
    with _reported(InvalidKeySpec, InvalidRate):
        environment = (
            parse_environment(env) if env is not None else environment_served_by(settings.env)
        )
        expiry = parse_expiry(expires_in, expires_at, utcnow())
        key = new_api_key(name, scopes, accounts, environment, expiry)
        limits = parse_key_limits(rate_limit) if rate_limit else {}
        master_key = resolve_master_key(settings)
    params = {"keyId": key.key_id, "name": name, "scopes": key.scopes, "accounts": key.accounts}

    async def store(conn: Connection) -> None:
        await insert_api_key(conn, key, master_key)
        if limits:
            await set_key_limits(conn, key.key_id, limits)

    _in_database(settings, audited("api-key create", params, store))
    if as_json:
        typer.echo(json.dumps(key.as_json()))
    else:
        typer.echo(f"key id:  {key.key_id}")
        typer.echo(f"secret:  {key.secret}")
        typer.echo(f"webhook secret:  {key.webhook_secret}")
        typer.echo(f"scopes:  {','.join(key.scopes)}   accounts: {','.join(key.accounts)}")
        expiry_text = "never" if key.expires_at is None else iso(key.expires_at)
        typer.echo(f"environment:  {key.environment}   expires: {expiry_text}")
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
        cert_fp = None
        if client_cert_sha256 is not None:
            cert_fp = parse_fingerprint(client_cert_sha256)
        elif client_cert is not None:
            try:
                cert_fp = certificate_fingerprint(client_cert.read_bytes())
            except OSError as exc:
                raise UsageError(f"cannot read {client_cert}: {exc}") from None
        cidrs = parse_cidrs(allow_cidrs)
    found = _in_database(
        settings,
        audited(
            "api-key restrict",
            {"keyId": key_id, "clientCertSha256": cert_fp, "allowCidrs": [str(c) for c in cidrs]},
            lambda conn: restrict_api_key(conn, key_id, cert_fp, cidrs),
        ),
    )
    if not found:
        raise _fail(UsageError(f"no API key {key_id}"))
    ranges = ",".join(map(str, cidrs)) or "any"
    typer.echo(f"key {key_id}: client certificate {cert_fp or 'none'}; from {ranges}")


@api_key_app.command("list")
def api_key_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys with their state, environment and secrets' validity (never a secret)."""
    found = _in_database(_settings(), list_api_keys)
    if as_json:
        typer.echo(json.dumps([summary_json(k) for k in found]))
    elif not found:
        typer.echo("no API keys yet")
    else:
        typer.echo(summaries_table(found))


def _key_not_found(key_id: str) -> CliError:
    return CliError(f"no API key {key_id!r} (or it is revoked)")


@api_key_app.command("revoke")
def api_key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (ak_...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Revoke a key at once, on every gateway replica; it cannot be undone."""

    async def work(conn: Connection) -> str:
        try:
            return iso(await revoke_api_key(conn, key_id))
        except KeyNotFound:
            raise _key_not_found(key_id) from None

    revoked_at = _in_database(_settings(), audited("api-key revoke", {"keyId": key_id}, work))
    if as_json:
        typer.echo(json.dumps({"keyId": key_id, "state": "revoked", "revokedAt": revoked_at}))
    else:
        typer.echo(f"{key_id} revoked at {revoked_at}")


@api_key_app.command("rotate")
def api_key_rotate(
    key_id: Annotated[str, typer.Argument(help="The key id (ak_...).")],
    overlap: Annotated[
        str, typer.Option("--overlap", help="How long the old secret stays valid, e.g. 24h, 0s.")
    ] = "24h",
    webhook: Annotated[
        bool, typer.Option("--webhook", help="Rotate the webhook secret instead of the API one.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Give a key a new secret, printed once; the old one stays valid for the overlap."""
    settings = _settings()
    kind = "webhook" if webhook else "api"
    with _reported(InvalidKeySpec):
        span = parse_duration(overlap, "--overlap")
        master_key = resolve_master_key(settings)

    async def work(conn: Connection) -> tuple[str, str]:
        try:
            secret, until = await rotate_secret(conn, key_id, kind, span, master_key)
        except KeyNotFound:
            raise _key_not_found(key_id) from None
        return secret, iso(until)

    secret, until = _in_database(
        settings,
        audited("api-key rotate", {"keyId": key_id, "kind": kind, "overlap": overlap}, work),
    )
    field = "webhookSecret" if webhook else "secret"
    if as_json:
        typer.echo(json.dumps({"keyId": key_id, field: secret, "previousValidUntil": until}))
    else:
        typer.echo(f"key id:  {key_id}")
        typer.echo(f"new {'webhook ' if webhook else ''}secret:  {secret}")
        typer.echo(f"the previous one is valid until {until}")
        typer.echo("The secret is shown only now; store it safely.", err=True)


# -- master key -----------------------------------------------------------------------------


@master_key_app.command("generate")
def master_key_generate(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a new random master key (base64 of 32 bytes); nothing is stored."""
    key = generate_master_key()
    typer.echo(json.dumps({"masterKey": key}) if as_json else key)


@master_key_app.command("rotate")
def master_key_rotate(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-seal every stored secret under FUNDHUB_MASTER_KEY, in one transaction.

    Secrets open under FUNDHUB_MASTER_KEY or FUNDHUB_MASTER_KEY_PREVIOUS (the key being
    replaced). Roll the services out with both set first, run this, then drop the previous one.
    """
    settings = _settings()
    with _reported():
        keys = resolve_master_keys(settings)
    count = _in_database(
        settings, audited("master-key rotate", {}, lambda conn: reseal_everything(conn, keys))
    )
    if as_json:
        typer.echo(json.dumps({"resealed": count}))
    else:
        typer.echo(f"{count} secrets re-sealed under the current master key")


@api_key_app.command("rate-limit")
def api_key_rate_limit(
    key_id: Annotated[str, typer.Argument(help="The key id (ak_...).")],
    rate_limit: Annotated[str | None, typer.Argument(help=_RATE_LIMIT_HELP)] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Back to the gateway's default limits.")
    ] = False,
) -> None:
    """Set or clear a key's rate limits; every gateway replica applies them within 30 s."""
    settings = _settings()
    if clear == (rate_limit is not None):
        raise _fail(UsageError("give either a rate limit or --clear"))
    with _reported(InvalidRate):
        limits: dict[str, Rate] = parse_key_limits(rate_limit) if rate_limit else {}

    async def change(conn: Connection) -> bool:
        if clear:
            await clear_key_limits(conn, key_id)
            return True
        return await set_key_limits(conn, key_id, limits)

    if not _in_database(
        settings, audited("api-key rate-limit", {"keyId": key_id, "limit": rate_limit}, change)
    ):
        raise _fail(UsageError(f"no API key {key_id!r}"))
    shown = ", ".join(f"{name}={rate}" for name, rate in limits.items()) or "defaults"
    typer.echo(f"{key_id}: {shown}")


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
    params = {"appId": app_id, "signExcludes": excludes}
    changed = _in_database(
        settings,
        audited("bank-app add", params, lambda conn: upsert_bank_app(conn, app_id, pem, excludes)),
    )
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
    found = _in_database(
        settings,
        audited(
            "bank-app restrict",
            {"appId": app_id, "allowCidrs": [str(c) for c in cidrs]},
            lambda conn: restrict_bank_app(conn, app_id, cidrs),
        ),
    )
    if not found:
        raise _fail(UsageError(f"no bank app {app_id}"))
    typer.echo(f"bank app {app_id}: from {','.join(map(str, cidrs)) or 'any'}")


def _read_public_key(public_key: Path) -> str:
    try:
        text = public_key.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {public_key}: {exc}") from None
    return normalize_public_key(text)


def _domain_refusal(
    work: Callable[[Connection], Awaitable[T]],
) -> Callable[[Connection], Awaitable[T]]:
    """A bank-app refusal found in the database (unknown app, last key) as a usage error."""

    async def run(conn: Connection) -> T:
        try:
            return await work(conn)
        except InvalidBankApp as exc:
            raise UsageError(str(exc)) from None

    return run


@bank_app_app.command("add-key")
def bank_app_add_key(
    app_id: Annotated[str, typer.Option("--app-id", help="The bank's app_id.")],
    public_key: Annotated[
        Path,
        typer.Option("--public-key", help="The bank's new RSA public key (PEM).", dir_okay=False),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Trust one more public key for an app (the bank's key rotation); both verify."""
    settings = _settings()
    with _reported(InvalidBankApp):
        app_id = parse_app_id(app_id)
        pem = _read_public_key(public_key)
    added = _in_database(
        settings,
        audited(
            "bank-app add-key",
            {"appId": app_id, "fingerprint": fingerprint(pem)},
            _domain_refusal(lambda conn: add_bank_key(conn, app_id, pem)),
        ),
    )
    if as_json:
        typer.echo(json.dumps({"appId": app_id, "fingerprint": fingerprint(pem), "added": added}))
    else:
        verdict = "added" if added else "already trusted"
        typer.echo(f"bank app {app_id}: key {fingerprint(pem)} {verdict}")


@bank_app_app.command("remove-key")
def bank_app_remove_key(
    app_id: Annotated[str, typer.Option("--app-id", help="The bank's app_id.")],
    key_fingerprint: Annotated[
        str, typer.Option("--fingerprint", help="The key's fingerprint (bank-app keys).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Stop trusting one of an app's keys; its last key cannot be removed."""
    settings = _settings()
    with _reported(InvalidBankApp):
        app_id = parse_app_id(app_id)
    fp = key_fingerprint.strip().lower()
    _in_database(
        settings,
        audited(
            "bank-app remove-key",
            {"appId": app_id, "fingerprint": fp},
            _domain_refusal(lambda conn: remove_bank_key(conn, app_id, fp)),
        ),
    )
    if as_json:
        typer.echo(json.dumps({"appId": app_id, "fingerprint": fp, "removed": True}))
    else:
        typer.echo(f"bank app {app_id}: key {fp} removed")


@bank_app_app.command("keys")
def bank_app_keys_list(
    app_id: Annotated[str, typer.Option("--app-id", help="The bank's app_id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the fingerprints of the public keys an app's notifications verify under."""
    settings = _settings()
    with _reported(InvalidBankApp):
        app_id = parse_app_id(app_id)
    keys = _in_database(settings, _domain_refusal(lambda conn: bank_app_keys(conn, app_id)))
    if as_json:
        typer.echo(json.dumps([{"fingerprint": fp, "role": role} for fp, role in keys]))
    else:
        for fp, role in keys:
            typer.echo(f"{fp}  {role}")


# -- callbacks ------------------------------------------------------------------------------


@callbacks_app.command("replay")
def callbacks_replay(
    pay_id: Annotated[str, typer.Argument(help="The payout's payId.")],
) -> None:
    """Send a payout's callbacks again: its deliveries become due now."""
    settings = _settings()
    with _reported():
        parsed = parse_pay_id(pay_id)
    replayed = _in_database(
        settings,
        audited("callbacks replay", {"payId": parsed}, lambda conn: replay_callbacks(conn, parsed)),
    )
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


# -- audit log ------------------------------------------------------------------------------


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(UsageError(f"{option}: not an ISO 8601 time: {text!r}")) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit_app.command("list")
def audit_list(
    key: Annotated[
        str | None, typer.Option("--key", help="Only this API key's (or operator's) entries.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this time (ISO 8601).")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this time (ISO 8601).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Audit entries, newest first."""
    start, end = _moment(since, "--since"), _moment(until, "--until")
    page = _in_database(
        _settings(),
        lambda conn: audit_store.query(conn, actor=key, since=start, until=end, limit=limit),
    )
    if as_json:
        typer.echo(json.dumps(page.entries, ensure_ascii=False))
        return
    for e in page.entries:
        code = e.get("errorCode") or ""
        typer.echo(
            f"{e['seq']:>8} {e['at']} {e.get('actor') or '-':<24} {e['source']:<16}"
            f" {e['route']:<40} {e['status']} {code} {e['latencyMs']}ms {e['correlationId']}"
        )


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the hash chain: an edited, inserted or deleted entry is reported (exit 1)."""
    result = _in_database(_settings(), audit_store.verify_chain)
    problems = result.problems or []
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "problems": [{"seq": p.seq, "reason": p.reason} for p in problems],
                }
            )
        )
    else:
        for p in problems:
            typer.echo(f"entry {p.seq}: {p.reason}")
        typer.echo(f"{result.checked} entries checked: " + ("ok" if result.ok else "TAMPERED"))
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("archive")
def audit_archive(
    before: Annotated[str, typer.Option("--before", help="Archive months before YYYY-MM.")],
    to: Annotated[Path, typer.Option("--to", help="Directory for the .jsonl.gz files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Export whole months older than the retention to compressed files, then drop them."""
    settings = _settings()
    with _reported(ValueError):
        month = archive.parse_month(before)
    newest = archive.months_back(utcnow().date(), settings.audit_retention_months)
    if month > newest:
        raise _fail(
            UsageError(
                f"--before {before}: months after {newest:%Y-%m} are within the retention"
                f" ({settings.audit_retention_months} months)"
            )
        )

    def progress(label: str, rows: int) -> None:
        if not as_json:
            typer.echo(f"\r{label}: {rows} entries", nl=False, err=True)

    async def work(conn: Connection) -> list[archive.Archived]:
        started = time.perf_counter()
        done = []
        for m in await archive.partitions_before(conn, month):
            done.append(await archive.archive_month(conn, m, to, progress))
            if not as_json:
                typer.echo(" archived", err=True)
        params = {"before": before, "to": str(to), "months": [a.month for a in done]}
        await append_one(conn, operator_entry("audit archive", params, started))
        return done

    done = _in_database(settings, work)
    if as_json:
        typer.echo(json.dumps([a.__dict__ for a in done]))
    else:
        for a in done:
            typer.echo(f"{a.month}: {a.rows} entries -> {a.file} (sha256 {a.sha256})")
        if not done:
            typer.echo("nothing to archive")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
