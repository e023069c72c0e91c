"""One short-lived connection per admin command, with errors an operator can act on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from fundhub.cli.devstack.endpoints import parse_dsn
from fundhub.cli.errors import CliError
from fundhub.common import db
from fundhub.common.db import Connection


def _where(dsn: str) -> str:
    """Host, port and database only: a DSN may carry a password."""
    target = parse_dsn(dsn)
    return f"{target.address or 'unix socket'}/{target.database}"


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[Connection]:
    try:
        conn = await db.connect(dsn)
    except (OSError, TimeoutError) as exc:
        raise CliError(
            f"cannot reach PostgreSQL at {_where(dsn)} ({type(exc).__name__}); "
            "is the stack up (`make up`) and FUNDHUB_DATABASE_URL right?"
        ) from None
    except asyncpg.PostgresError as exc:  # authentication, missing database, ...
        raise CliError(f"cannot connect to PostgreSQL at {_where(dsn)}: {exc}") from None
    try:
        yield conn
    except asyncpg.UndefinedTableError:
        raise CliError("the database has no fundhub schema yet; run `fundhub migrate`") from None
    finally:
        await conn.close()
