"""The sandbox scenarios' SQL (``sandbox_payout_scenarios``): the gateway writes a key's
scenario for a requestId not used yet; payment-worker reads those of the payouts it sends."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from fundhub.common.db import Pool
from fundhub.payouts.sandbox import MAX_SCENARIOS_PER_KEY, PayoutScenario, ScenarioRequest


class Placed(Enum):
    PLACED = "placed"
    TOO_LATE = "too_late"  # the key already created a payout with that requestId
    LIMIT = "limit"  # the key holds MAX_SCENARIOS_PER_KEY others not used yet


# One statement: the payout's absence, the key's count and the upsert are read together, so
# neither check can be raced past by this key's own concurrent requests for other requestIds
# beyond a few rows. A requestId given again replaces its scenario (it is the key's own).
_PLACE = f"""
WITH used AS (
    SELECT EXISTS (SELECT 1 FROM payout_requests WHERE key_id = $1 AND request_id = $2) AS taken
), held AS (
    SELECT count(*) AS n FROM sandbox_payout_scenarios s
     WHERE s.key_id = $1 AND s.request_id <> $2
       AND NOT EXISTS (SELECT 1 FROM payout_requests r
                        WHERE r.key_id = s.key_id AND r.request_id = s.request_id)
), placed AS (
    INSERT INTO sandbox_payout_scenarios
        (key_id, request_id, outcome, reason, result_delay_ms, result_copies)
    SELECT $1, $2, $3, $4, $5, $6 FROM used, held
     WHERE NOT used.taken AND held.n < {MAX_SCENARIOS_PER_KEY}
    ON CONFLICT (key_id, request_id) DO UPDATE
        SET outcome = EXCLUDED.outcome, reason = EXCLUDED.reason,
            result_delay_ms = EXCLUDED.result_delay_ms,
            result_copies = EXCLUDED.result_copies, created_at = now()
    RETURNING 1
)
SELECT used.taken, (SELECT count(*) FROM placed) AS placed FROM used
"""

_OF_PAYOUTS = """
SELECT r.pay_id, s.outcome, s.reason, s.result_delay_ms, s.result_copies
  FROM payout_requests r
  JOIN sandbox_payout_scenarios s ON s.key_id = r.key_id AND s.request_id = r.request_id
 WHERE r.pay_id = ANY($1::text[])
"""


async def place(pool: Pool, key_id: str, scenario: ScenarioRequest) -> Placed:
    row = await pool.fetchrow(
        _PLACE,
        key_id,
        scenario.request_id,
        scenario.outcome,
        scenario.reason,
        scenario.result_delay_ms,
        scenario.result_copies,
    )
    if row is None or row["taken"]:
        return Placed.TOO_LATE
    return Placed.PLACED if row["placed"] else Placed.LIMIT


async def scenarios_of(pool: Pool, pay_ids: Sequence[str]) -> list[PayoutScenario]:
    """The scenarios of these payouts (by payId), bound to them."""
    rows = await pool.fetch(_OF_PAYOUTS, list(pay_ids))
    return [
        PayoutScenario(
            r["pay_id"], r["outcome"], r["reason"], r["result_delay_ms"], r["result_copies"]
        )
        for r in rows
    ]
