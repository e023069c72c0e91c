"""``fundhub up``: infra, schema, topics, dev keys, then the services under the supervisor."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

from fundhub.bank_transfers.bank_apps import (
    SEED_BANK_APP_ID,
    normalize_public_key,
    upsert_bank_app,
)
from fundhub.cli.database import connection
from fundhub.cli.devstack.channel_dev import (
    CHANNEL_SIM_DIR,
    DEV_ALIPAY_APP_ID,
    DEV_APPID,
    ensure_channel_dev_keys,
    register_channel_apps,
)
from fundhub.cli.devstack.devkeys import DevKeys, ensure_dev_keys
from fundhub.cli.devstack.endpoints import parse_dsn
from fundhub.cli.devstack.infra import Infra, ensure_infra
from fundhub.cli.devstack.paths import dev_dir
from fundhub.cli.devstack.supervisor import ServiceSpec, Supervisor
from fundhub.cli.masterkey import resolve_master_key
from fundhub.common.config import Settings
from fundhub.common.kafka import ensure_topics
from fundhub.common.migrations import migrate

Say = Callable[[str], None]
# The bank simulator's pace in dev: one notification every N seconds towards the gateway.
DEV_STREAM_INTERVAL_S = 2


def _say_to(out: TextIO) -> Say:
    def say(text: str) -> None:
        out.write(f"fundhub | {text}\n")
        out.flush()

    return say


def console_script(name: str) -> str:
    """The service's entry point from this interpreter's environment (the project .venv)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


MASTER_KEY = "FUNDHUB_MASTER_KEY"
BANK_SIM_KEY = "FUNDHUB_BANK_SIM_PRIVATE_KEY_FILE"
CHANNEL_SIM_KEYS = "FUNDHUB_CHANNEL_SIM_KEYS_DIR"
# Who gets which secret: the master key unseals API and webhook secrets, so only the gateway
# (API secrets; and the channels' merchant keys, to create orders' payments), the callback
# dispatcher (webhook secrets), the reconciler (the merchant keys, to ask the channels for their
# bills) and payment-worker (the merchant keys, to refund through the
# channels) get it; the simulator's signing key is the bank's, for the simulator alone. An
# empty value also hides one the operator's shell would otherwise pass down (the supervisor
# starts children with its own environment).
_NEEDS = {
    "gateway": {MASTER_KEY},
    "callback-dispatcher": {MASTER_KEY},
    "payment-worker": {MASTER_KEY},
    "reconciler": {MASTER_KEY},
    "bank-simulator": {BANK_SIM_KEY},
    "channel-simulator": {CHANNEL_SIM_KEYS},
}
_SECRETS = (MASTER_KEY, BANK_SIM_KEY, CHANNEL_SIM_KEYS)


def env_for(name: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the secrets service ``name`` does not need blanked out."""
    needs = _NEEDS.get(name, set())
    return {**env, **{k: "" for k in _SECRETS if k not in needs}}


def service_specs(settings: Settings, env: dict[str, str]) -> list[ServiceSpec]:
    """Started in this order, stopped in reverse: the simulator stops first. Each is given only
    the secrets it needs (``env_for``)."""
    loopback = "127.0.0.1"
    specs = [
        ServiceSpec(
            "notify-ingest",
            [console_script("fundhub-notify-ingest")],
            env_for("notify-ingest", env),
            f"http://{loopback}:{settings.notify_ingest_port} (health)",
        ),
        ServiceSpec(
            "callback-dispatcher",
            [console_script("fundhub-callback-dispatcher")],
            env_for("callback-dispatcher", env),
            f"http://{loopback}:{settings.callback_dispatcher_port} (health)",
        ),
        ServiceSpec(
            "audit-writer",
            [console_script("fundhub-audit-writer")],
            env_for("audit-writer", env),
            f"http://{loopback}:{settings.audit_writer_port} (health)",
        ),
        ServiceSpec(
            "payment-worker",
            [console_script("fundhub-payment-worker")],
            env_for("payment-worker", env),
            f"http://{loopback}:{settings.payment_worker_port} (health)",
        ),
        ServiceSpec(
            "reconciler",
            [console_script("fundhub-reconciler")],
            env_for("reconciler", env),
            f"http://{loopback}:{settings.reconciler_port} (health)",
        ),
        ServiceSpec(
            "gateway",
            [console_script("fundhub-gateway")],
            env_for("gateway", env),
            f"http://{settings.gateway_host}:{settings.gateway_port}",
        ),
    ]
    if settings.env == "dev":
        specs.append(
            ServiceSpec(
                "bank-simulator",
                [
                    console_script("fundhub-bank-simulator"),
                    "--stream-interval",
                    str(DEV_STREAM_INTERVAL_S),
                ],
                env_for("bank-simulator", env),
                f"http://{loopback}:{settings.bank_simulator_port}",
            )
        )
        specs.append(
            ServiceSpec(
                "channel-simulator",
                [console_script("fundhub-channel-simulator")],
                env_for("channel-simulator", env),
                f"http://{loopback}:{settings.channel_simulator_port}",
            )
        )
    return specs


async def dev_init(settings: Settings) -> DevKeys:
    """Dev keys in ``.data/dev``; the bank simulator's public key registered as the seed's app,
    the channel simulator as the dev WeChat Pay and Alipay apps."""
    keys = ensure_dev_keys(dev_dir())
    channel_keys = ensure_channel_dev_keys(dev_dir())
    public_pem = normalize_public_key(keys.bank_sim_public_key_pem())
    async with connection(settings.database_url) as conn:
        await upsert_bank_app(conn, SEED_BANK_APP_ID, public_pem, ["sign"])
        await register_channel_apps(conn, keys.master_key, channel_keys)
    return keys


async def prepare(settings: Settings, say: Say) -> dict[str, str]:
    """Schema, topics and keys; returns the environment the services are started with."""
    applied = await migrate(settings.database_url)
    say(f"migrations applied: {', '.join(applied)}" if applied else "schema is up to date")
    await ensure_topics(settings)
    say(f"topics ready ({settings.topic_namespace}.*, {settings.topic_partitions} partitions)")
    env = {
        "FUNDHUB_ENV": settings.env,
        "FUNDHUB_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FUNDHUB_TOPIC_REPLICATION_FACTOR": str(settings.topic_replication_factor),
        "FUNDHUB_DATABASE_URL": settings.database_url,
    }
    if settings.env == "dev":
        keys = await dev_init(settings)
        env[MASTER_KEY] = keys.master_key
        env[BANK_SIM_KEY] = str(keys.bank_sim_private_key_file)
        env[CHANNEL_SIM_KEYS] = str(dev_dir() / CHANNEL_SIM_DIR)
        say(f"dev keys in {dev_dir()}; bank app {SEED_BANK_APP_ID} = the bank simulator's key")
        say(
            f"channel apps WeChat Pay {DEV_APPID}, Alipay {DEV_ALIPAY_APP_ID}"
            " = the channel simulator's keys"
        )
    else:
        env[MASTER_KEY] = resolve_master_key(settings)
    return env


def _describe(settings: Settings, infra: Infra, specs: list[ServiceSpec]) -> list[str]:
    def origin(started: bool, managed: bool) -> str:
        if started:
            return "started by this run"
        return "already running" if managed else "external"

    pg = parse_dsn(settings.database_url)
    lines = [f"  {spec.name:<15} {spec.url}" for spec in specs if spec.url]
    lines.append(
        f"  {'kafka':<15} {settings.kafka_bootstrap}  "
        f"({origin(infra.started_kafka, infra.kafka is not None)})"
    )
    lines.append(
        f"  {'postgres':<15} postgresql://{pg.user}@{pg.address}/{pg.database}  "
        f"({origin(infra.started_postgres, infra.postgres is not None)})"
    )
    return lines


# Past a service's own stop deadline: it exits by itself then (its work drained or abandoned,
# logged); the supervisor's SIGKILL is for one that does not.
STOP_MARGIN_S = 5.0


def stop_grace_s(settings: Settings) -> float:
    """How long Ctrl-C waits for each service before SIGKILL: longer than the services' own
    ``FUNDHUB_STOP_DEADLINE_S`` (a kill before it would cut a drain the service was allowed)."""
    return settings.stop_deadline_s + STOP_MARGIN_S


async def _serve(settings: Settings, infra: Infra, with_services: bool, out: TextIO) -> int:
    say = _say_to(out)
    env = await prepare(settings, say)
    specs = service_specs(settings, env) if with_services else []
    supervisor = Supervisor(specs, out=out, grace_s=stop_grace_s(settings))

    def announce() -> None:
        say("up:")
        for line in _describe(settings, infra, specs):
            say(line)
        say("Ctrl-C stops everything.")

    return await supervisor.run(on_started=announce)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop_infra(infra: Infra, say: Say) -> None:
    """Stop what this run started; a further Ctrl-C must not leave Kafka half-stopped."""
    if not (infra.started_kafka or infra.started_postgres):
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        say("stopping Kafka and PostgreSQL (started by this run)")
        infra.stop()
        say("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_up(settings: Settings, *, with_services: bool = True, out: TextIO = sys.stdout) -> int:
    """The whole dev stack in the foreground until Ctrl-C / SIGTERM or a service exits."""
    say = _say_to(out)
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    infra: Infra | None = None
    try:
        infra = ensure_infra(settings, progress=say)
        return asyncio.run(_serve(settings, infra, with_services, out))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if infra is not None:
            _stop_infra(infra, say)
        signal.signal(signal.SIGTERM, previous_term)
