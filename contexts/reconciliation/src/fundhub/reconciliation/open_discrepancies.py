"""``fundhub_reconciliation_discrepancies_open``, read by the reconciler's Sampler: the
discrepancies of current runs still waiting for someone (OPEN, or an adjustment proposed and
not yet approved), per source and class."""

from __future__ import annotations

from fundhub.common.db import Connection
from fundhub.common.metrics import RECONCILIATION_DISCREPANCIES_OPEN
from fundhub.common.sampling import Probe
from fundhub.reconciliation.classes import DISCREPANCY_CLASSES
from fundhub.reconciliation.statement import Source

# From the partial index recon_discrepancies_open (every state but RESOLVED), then each row's
# run by its key: a superseded run's discrepancies are its successor's business.
_OPEN = (
    "SELECT r.source, d.class, count(*) AS n FROM recon_discrepancies d"
    " JOIN recon_runs r ON r.run_id = d.run_id"
    " WHERE d.state <> 'RESOLVED' AND d.state IN ('OPEN', 'ADJUSTMENT_PROPOSED')"
    " AND r.state = 'CURRENT' GROUP BY r.source, d.class"
)


async def sample_open(conn: Connection) -> None:
    counts = {(row["source"], row["class"]): row["n"] for row in await conn.fetch(_OPEN)}
    for source in Source:  # every pair, so a class that was cleared reads 0, not its last count
        for kind in DISCREPANCY_CLASSES:
            RECONCILIATION_DISCREPANCIES_OPEN.labels(source.value, kind.value).set(
                counts.get((source.value, kind.value), 0)
            )


def open_discrepancies_probe() -> Probe:
    return Probe("reconciliation-discrepancies", sample_open)
