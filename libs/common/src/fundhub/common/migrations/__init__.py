"""The schema's migrations: found in every installed context, applied in one order, checksummed.

Each context owns its tables and keeps their SQL in its own ``migrations/`` folder, named
``NNNN_name.sql``; it announces the folder's package under the ``fundhub.migrations`` entry
point group (see each context's ``pyproject.toml``). The number is global across contexts (as
Flyway's versions are across locations): it fixes the one order in which every database is
built, so a table is always created after the tables it references.

Every applied migration is recorded with the SHA-256 of its file. A file edited after it was
applied, an applied migration whose file is gone, or a version that two contexts both claim is
refused before anything runs: the database and the code would otherwise disagree silently.
Services call ``verify`` at start and refuse to run on a schema that is behind or has drifted.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points

import structlog

from fundhub.common.db import Connection, connect

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "fundhub.migrations"
FOLDER = "migrations"
_LOCK = 0x66756E64  # "fund": one migrator at a time across replicas
_NAME = re.compile(r"^([0-9]{4})_[a-z0-9_]+\.sql$")
_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    context    text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The schema cannot be brought in line with the code safely; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    version: str  # the file name without ``.sql``
    context: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def context_migrations(context: str, package: str) -> list[Migration]:
    """The ``NNNN_name.sql`` files in ``package``'s ``migrations`` folder, by name."""
    folder = resources.files(package) / FOLDER
    found: list[Migration] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        if not _NAME.fullmatch(entry.name):
            raise MigrationError(f"{package}: {entry.name} is not named NNNN_name.sql")
        found.append(
            Migration(entry.name.removesuffix(".sql"), context, entry.read_text(encoding="utf-8"))
        )
    return found


def discover() -> list[Migration]:
    """Every installed context's migrations, in version order; a number claimed twice is refused."""
    found = [
        migration
        for point in entry_points(group=ENTRY_POINT_GROUP)
        for migration in context_migrations(point.name, point.value)
    ]
    return ordered(found)


def ordered(migrations: list[Migration]) -> list[Migration]:
    by_number: dict[str, Migration] = {}
    for migration in migrations:
        number = migration.version[:4]
        other = by_number.get(number)
        if other is not None:
            raise MigrationError(
                f"migration number {number} is used twice: {other.context}/{other.version} "
                f"and {migration.context}/{migration.version}"
            )
        by_number[number] = migration
    return [by_number[n] for n in sorted(by_number)]


def check_applied(applied: dict[str, str], known: list[Migration]) -> list[Migration]:
    """The migrations still to apply, once every applied one is found unchanged. Pure."""
    files = {m.version: m for m in known}
    for version, checksum in sorted(applied.items()):
        migration = files.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version} is applied to this database but no installed context "
                "has its file: the code is older than the schema, or a file was renamed"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.context}/{version} was edited after it was applied "
                f"(checksum {checksum[:12]}… applied, {migration.checksum[:12]}… on disk): "
                "restore the file and put the change in a new migration"
            )
    return [m for m in known if m.version not in applied]


async def _applied(conn: Connection) -> dict[str, str]:
    columns = {
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        )
    }
    if not columns:
        return {}
    if "checksum" not in columns:
        raise MigrationError(
            "this database was built by an older fundhub without migration checksums; "
            "rebuild it (locally: `make clean-data`, then `make up`)"
        )
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(dsn: str, known: list[Migration] | None = None) -> list[str]:
    """Apply what is pending, each migration in its own transaction; the versions applied."""
    migrations = discover() if known is None else known
    conn = await connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        pending = check_applied(await _applied(conn), migrations)
        await conn.execute(_TABLE)
        for migration in pending:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, context, checksum) "
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.context,
                    migration.checksum,
                )
            log.info("migration_applied", version=migration.version, context=migration.context)
            applied.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
        await conn.close()
    return applied


async def verify(dsn: str, known: list[Migration] | None = None) -> None:
    """Refuse (MigrationError) unless every migration is applied, each one as its file is now."""
    migrations = discover() if known is None else known
    conn = await connect(dsn)
    try:
        pending = check_applied(await _applied(conn), migrations)
    finally:
        await conn.close()
    if pending:
        names = ", ".join(f"{m.context}/{m.version}" for m in pending)
        raise MigrationError(f"the schema is behind the code ({names}): run `fundhub migrate`")
