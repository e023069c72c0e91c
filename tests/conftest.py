"""Session fixtures: real Kafka and Postgres (started if not running), a migrated template DB;
and servers of the run's own for the tests that restart them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from support.env import ModuleEnv, close_pool, database_url, drop_database, new_bank_keys
from support.kafka import delete_topics
from support.owned_infra import ensure_running, owned_infra

from fundhub.cli.devstack import Infra, ensure_infra
from fundhub.common import db, migrations
from fundhub.common.config import Settings
from fundhub.common.kafka import ensure_topics
from fundhub.common.sealing import generate_master_key

RUN_ID = uuid.uuid4().hex[:8]
INFRA_KEY = pytest.StashKey[Infra]()


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under xdist the controller starts Kafka and Postgres once, before any worker: workers
    racing to start them, or the first one to finish stopping them under the other, would break
    the run. Each worker then finds them running and stops nothing."""
    if _is_xdist_controller(session.config):
        session.config.stash[INFRA_KEY] = ensure_infra(Settings())


def pytest_sessionfinish(session: pytest.Session) -> None:
    handle = session.config.stash.get(INFRA_KEY, None)
    if handle is not None:
        handle.stop()


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


@asynccontextmanager
async def _admin(base_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection for one step: none is held across a test (a test may restart the server)."""
    conn = await asyncpg.connect(base_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _template(base_url: str) -> AsyncIterator[str]:
    """A migrated database on the server of ``base_url``; each module's is a copy of it."""
    name = f"fundhub_tpl_{RUN_ID}"
    async with _admin(base_url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    await migrations.migrate(database_url(base_url, name))
    yield name
    async with _admin(base_url) as admin:
        await drop_database(admin, name)


@asynccontextmanager
async def module_env(
    infra: Settings,
    template: str,
    tmp_path_factory: pytest.TempPathFactory,
    service_env: str = "test",
) -> AsyncIterator[ModuleEnv]:
    """A database copied from ``template`` and a topic namespace on the servers ``infra`` names
    (a module with servers of its own, e.g. a Kafka cluster, passes those)."""
    suffix = uuid.uuid4().hex[:8]
    name = f"fundhub_t_{suffix}"
    async with _admin(infra.database_url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    settings = infra.model_copy(
        update={
            "env": service_env,
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
        await close_pool(pool)
        async with _admin(infra.database_url) as admin:
            await drop_database(admin, name)
        await delete_topics(settings)


@pytest.fixture(scope="session")
async def template_db(infra: Settings) -> AsyncIterator[str]:
    async for name in _template(infra.database_url):
        yield name


@pytest.fixture(scope="module")
async def env(
    infra: Settings, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ModuleEnv]:
    """A fresh database and topic namespace per test module: modules never see each other's data."""
    async with module_env(infra, template_db, tmp_path_factory) as made:
        yield made


@pytest.fixture(scope="module")
async def live_env(
    infra: Settings, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ModuleEnv]:
    """A live deployment's own database and topics (FUNDHUB_ENV=prod), beside ``env``'s
    sandbox: the environments never share a database (access.environment_stamp)."""
    async with module_env(infra, template_db, tmp_path_factory, "prod") as made:
        yield made


@pytest.fixture(scope="module")
async def other_env(
    infra: Settings, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ModuleEnv]:
    """A second environment, for a module that runs two stacks side by side (started at once:
    a process start is the slow part) which must not share a database or topics."""
    async with module_env(infra, template_db, tmp_path_factory) as made:
        yield made


# -- servers a test may restart ----------------------------------------------------------------


@pytest.fixture(scope="session")
def owned_infra_handle() -> Iterator[Infra]:
    """A broker and a cluster of the run's own (``support.owned_infra``), started the first time
    a module asks for them: an outage test restarts these, never the shared ones."""
    with owned_infra() as handle:
        yield handle


@pytest.fixture(scope="session")
async def owned_template_db(owned_infra_handle: Infra) -> AsyncIterator[str]:
    async for name in _template(owned_infra_handle.database_url):
        yield name


@pytest.fixture(scope="module")
async def owned_env(
    owned_infra_handle: Infra, owned_template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ModuleEnv]:
    """Like ``env``, on the run's own servers. A module whose tests restart one overrides
    ``env`` with this, so every fixture built on ``env`` (the stacks) runs on them."""
    await asyncio.to_thread(ensure_running, owned_infra_handle)
    infra = Settings(
        kafka_bootstrap=owned_infra_handle.kafka_bootstrap,
        database_url=owned_infra_handle.database_url,
    )
    async with module_env(infra, owned_template_db, tmp_path_factory) as made:
        yield made
