"""Session fixtures: real Kafka and Postgres (started if not running), a migrated template DB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from support.env import ModuleEnv, database_url, drop_database, new_bank_keys
from support.kafka import delete_topics

from fundhub.cli.devstack import Infra, ensure_infra
from fundhub.common import db, migrations
from fundhub.common.config import Settings
from fundhub.common.kafka import ensure_topics
from fundhub.common.sealing import generate_master_key

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def infra_handle() -> Iterator[Infra]:
    """Real Kafka and Postgres for the whole run; stops only what it started."""
    handle = ensure_infra(Settings())
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def infra(infra_handle: Infra) -> Settings:
    return Settings(
        kafka_bootstrap=infra_handle.kafka_bootstrap, database_url=infra_handle.database_url
    )


@pytest.fixture(scope="session")
async def template_db(infra: Settings) -> AsyncIterator[str]:
    name = f"fundhub_tpl_{RUN_ID}"
    admin = await asyncpg.connect(infra.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrations.migrate(database_url(infra.database_url, name))
        yield name
        await drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def env(
    infra: Settings, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ModuleEnv]:
    """A fresh database and topic namespace per test module: modules never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    name = f"fundhub_t_{suffix}"
    admin = await asyncpg.connect(infra.database_url)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    settings = infra.model_copy(
        update={
            "env": "test",
            "database_url": database_url(infra.database_url, name),
            "topic_namespace": f"test-{RUN_ID}-{suffix}",
            "master_key": generate_master_key(),
            "topic_partitions": 6,
        }
    )
    await ensure_topics(settings)
    pool = await db.connect_pool(settings.database_url, max_size=5)
    tmp: Path = tmp_path_factory.mktemp(f"env-{suffix}")
    try:
        yield ModuleEnv(settings=settings, pool=pool, bank=new_bank_keys(), tmp=tmp)
    finally:
        await pool.close()
        await drop_database(admin, name)
        await admin.close()
        await delete_topics(settings)
