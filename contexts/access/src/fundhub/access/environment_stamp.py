"""Which environment a database serves (``environment_stamp``, migration 0034).

Live and sandbox state live in separate databases (and topic namespaces), not side by side in
one: a sandbox tenant's rows then cannot reach a live process by a query that forgot a filter.
The stamp makes that hold for the processes too. The first gateway or payment-worker to start
on a database claims it for its environment (``FUNDHUB_ENV``: prod is live, dev and test are
sandbox); a process of the other environment refuses to start on it, before it serves a key or
sends a payout to a bank.
"""

from __future__ import annotations

import structlog

from fundhub.access.keys import Environment
from fundhub.common.db import Pool
from fundhub.common.errors import ErrorCode, FundhubError

log = structlog.get_logger(__name__)

_CLAIM = """
WITH claimed AS (
    INSERT INTO environment_stamp (environment, claimed_by) VALUES ($1, $2)
    ON CONFLICT (only_row) DO NOTHING
    RETURNING environment
)
SELECT environment FROM claimed
UNION ALL
SELECT environment FROM environment_stamp
LIMIT 1
"""


class EnvironmentMismatch(FundhubError):
    """This process serves one environment and the database holds the other's state."""

    def __init__(self, served: Environment, stamped: str) -> None:
        super().__init__(
            ErrorCode.ENVIRONMENT_MISMATCH,
            f"this process serves {served} keys but the database holds {stamped} state: "
            "give each environment its own database (FUNDHUB_DATABASE_URL)",
        )
        self.served = served
        self.stamped = stamped


async def claim_environment(pool: Pool, served: Environment, service: str) -> None:
    """Claim an unstamped database for ``served``; raise EnvironmentMismatch on the other's."""
    stamped = await pool.fetchval(_CLAIM, served, service)
    if stamped is None:  # another process claimed it during our statement: read its claim
        stamped = await stamped_environment(pool)
    if stamped != served:
        error = EnvironmentMismatch(served, str(stamped))
        log.error("environment_mismatch", code=error.error.code, served=served, stamped=stamped)
        raise error


async def stamped_environment(pool: Pool) -> str | None:
    """The database's environment, or None while no service has claimed it."""
    value = await pool.fetchval("SELECT environment FROM environment_stamp")
    return None if value is None else str(value)
