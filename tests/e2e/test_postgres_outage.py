"""Every service rides out Postgres going away and coming back (defect 7 of issue 9).

The outage is a restart as the services see it: every connection to the module's database is
dropped by the server, and for a few seconds no new one is accepted (``ALLOW_CONNECTIONS
false``), then they are again. It is done to this module's database alone, so that the other
test sessions sharing the server do not see it; to the services it is the same as a restart
of the server (``connection has been released``, ``ConnectionDoesNotExistError``, refused
connections). Payouts in flight and payouts made afterwards all reach their final state, and
no service exits.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from e2e.conftest import wait_until
from e2e.test_payouts_flow import QUIET, PayoutStack, payout_rows, payouts  # noqa: F401
from fundhub.common.config import Settings

pytestmark = pytest.mark.slow

OUTAGE_S = 4.0


async def postgres_outage(infra: Settings, database: str, seconds: float) -> int:
    """Drop every connection to ``database`` and refuse new ones for ``seconds``; the number
    of connections dropped."""
    admin = await asyncpg.connect(infra.database_url)
    dropped = 0
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            dropped += await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            await asyncio.sleep(0.2)
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    return dropped


async def test_services_ride_out_a_postgres_restart(
    payouts: PayoutStack,  # noqa: F811
    infra: Settings,
) -> None:
    await payouts.bank_behaviour(**QUIET)
    payer = "6222990000009001"
    await payouts.fund({payer: 1_000_000})
    in_flight = [await payouts.create_payout(payer, 1_000) for _ in range(20)]

    database = payouts.env.settings.database_url.rsplit("/", 1)[-1]
    dropped = await postgres_outage(infra, database, OUTAGE_S)
    assert dropped > 0, "the services held connections to drop"

    # The gateway answers 503 while its pool reconnects; create_payout retries those.
    await asyncio.sleep(1.0)
    after = [await payouts.create_payout(payer, 1_000) for _ in range(20)]
    pay_ids = [p["payId"] for p in in_flight + after]

    async def settled() -> bool:
        rows = await payout_rows(payouts.env.pool, pay_ids)
        return len(rows) == len(pay_ids) and all(
            r["state"] in ("SUCCESS", "FAILED", "RETURNED") for r in rows.values()
        )

    await wait_until(settled, timeout_s=60, interval_s=0.5)
    for service in (payouts.gateway, payouts.worker, payouts.bank_sim):
        assert service.proc is not None and service.proc.poll() is None, (
            f"{service.name} exited: {service.tail()}"
        )
    await payouts.worker.wait_ready(timeout_s=10)
