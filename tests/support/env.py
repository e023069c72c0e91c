"""A test environment: its own database (from a migrated template) and its own topic namespace."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from fundhub.common.config import Settings
from fundhub.common.signing import generate_rsa_keypair

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEST_APP_ID = "20210911888888888888888888"


def database_url(base_url: str, name: str) -> str:
    head, _, _ = base_url.rpartition("/")
    return f"{head}/{name}"


@dataclass
class BankKeys:
    """A clearly marked TEST key pair, generated per run, never stored in the repo."""

    private_pem: str
    public_pem: str


@dataclass
class ModuleEnv:
    settings: Settings
    pool: asyncpg.Pool
    bank: BankKeys
    app_id: str = TEST_APP_ID
    tmp: Path = field(default_factory=Path)

    def environ(self, **extra: str) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUNDHUB_")}
        env.update(
            FUNDHUB_ENV=s.env,
            FUNDHUB_KAFKA_BOOTSTRAP=s.kafka_bootstrap,
            FUNDHUB_DATABASE_URL=s.database_url,
            FUNDHUB_TOPIC_NAMESPACE=s.topic_namespace,
            FUNDHUB_TOPIC_REPLICATION_FACTOR=str(s.topic_replication_factor),
            FUNDHUB_MASTER_KEY=s.master_key or "",
            FUNDHUB_LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env

    def cli(self, *args: str) -> str:
        """Run the operator CLI as an operator would; fail the test on a non-zero exit."""
        done = subprocess.run(
            [str(BIN / "fundhub"), *args],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"fundhub {' '.join(args)} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def create_api_key(self, scopes: str, accounts: str) -> tuple[str, str]:
        out = json.loads(
            self.cli(
                "api-key",
                "create",
                "--name",
                "test",
                "--scopes",
                scopes,
                "--accounts",
                accounts,
                "--json",
            )
        )
        return out["keyId"], out["secret"]

    def register_bank_app(self) -> None:
        pem = self.tmp / f"bank-{uuid.uuid4().hex}.pem"
        pem.write_text(self.bank.public_pem)
        self.cli("bank-app", "add", "--app-id", self.app_id, "--public-key", str(pem))


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 15.0) -> None:
    """A test that left a connection checked out (a task it could not stop) must fail alone:
    ``Pool.close`` would wait for that connection for ever and hang the module's teardown."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except TimeoutError:
        pool.terminate()


def new_bank_keys() -> BankKeys:
    private_pem, public_pem = generate_rsa_keypair()
    return BankKeys(private_pem, public_pem)


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """DROP ... WITH (FORCE), tried again when Postgres refuses to end a backend it is busy
    with (an autovacuum worker: "must be a member of the role whose process is being
    terminated"), which happens now and then on a just-used database."""
    for attempt in range(10):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == 9:
                raise
            await asyncio.sleep(0.5)


async def insert_callback_key(env: ModuleEnv, key_id: str, webhook_secret: str) -> None:
    """An API key row that only signs callbacks (its API secret is never used), written
    directly, as the operator CLI would seal it."""
    from fundhub.common.sealing import seal

    master_key = env.settings.master_key
    assert master_key is not None
    await env.pool.execute(
        "INSERT INTO api_keys (key_id, name, secret_sealed, scopes, accounts, "
        "webhook_secret_sealed) VALUES ($1, 'callbacks', $2, $3, $4, $5)",
        key_id,
        seal(b"api-secret-not-used-here", master_key),
        ["payouts:read", "payouts:write"],
        ["*"],
        seal(webhook_secret.encode(), master_key),
    )
