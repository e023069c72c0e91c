"""The operator's side of the audit log: commands that change something leave an entry (in the
same transaction as their change, so neither exists without the other), and the log is read,
verified and archived from here."""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fundhub.audit.entry import KIND_OPERATOR, AuditEntry
from fundhub.audit.masking import mask
from fundhub.audit.store import append
from fundhub.common.clock import utcnow
from fundhub.common.db import Connection
from fundhub.common.ids import random_uuid
from fundhub.common.logging import new_correlation_id

T = TypeVar("T")


def operator_name() -> str:
    """``FUNDHUB_OPERATOR`` (who runs the command, when a shared account runs it), else the
    login name."""
    return os.environ.get("FUNDHUB_OPERATOR") or getpass.getuser()


def operator_entry(
    command: str, params: dict[str, Any], started: float, status: int = 0
) -> AuditEntry:
    return AuditEntry(
        id=random_uuid(),
        at=utcnow(),
        kind=KIND_OPERATOR,
        actor=operator_name(),
        source=f"cli@{socket.gethostname()}",
        route=f"fundhub {command}",
        params=mask(params),
        status=status,
        error_code=None,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        correlation_id=new_correlation_id(),
    )


def audited(
    command: str, params: dict[str, Any], work: Callable[[Connection], Awaitable[T]]
) -> Callable[[Connection], Awaitable[T]]:
    """``work`` and its audit entry in one transaction."""

    async def run(conn: Connection) -> T:
        started = time.perf_counter()
        async with conn.transaction():
            result = await work(conn)
            await append(conn, [operator_entry(command, params, started)])
        return result

    return run


async def append_one(conn: Connection, entry: AuditEntry) -> None:
    async with conn.transaction():
        await append(conn, [entry])
