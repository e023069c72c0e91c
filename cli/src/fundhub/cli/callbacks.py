"""Client callbacks for operators: send a payout's callbacks again (the dispatcher does the I/O)."""

from __future__ import annotations

from fundhub.cli.errors import CliError, UsageError
from fundhub.common.db import Connection
from fundhub.payouts.request import PAY_ID_PATTERN
from fundhub.webhooks import store


def parse_pay_id(text: str) -> str:
    pay_id = text.strip()
    if not PAY_ID_PATTERN.fullmatch(pay_id):
        raise UsageError(f"not a payId: {text!r} (PAY + yyyymmdd + 10 digits)")
    return pay_id


async def replay_callbacks(conn: Connection, pay_id: str) -> int:
    """Every delivery of the payout back to PENDING and due now; returns how many."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM payouts WHERE pay_id = $1", pay_id):
            raise CliError(f"unknown payout {pay_id}")
        return await store.replay(conn, pay_id)
