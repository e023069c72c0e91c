"""The fee the platform expects a channel to take, in exact fen. Pure.

The channels charge a rate on each payment and give back the same rate's share of a refund;
the rate is the platform's contract with the channel (``FUNDHUB_RECON_<SOURCE>_FEE_PPM``, parts
per million). Rounding is half up to the fen, as the channels' bills round. The bank's fees are
on its own transfer records, so nothing is computed for it.
"""

from __future__ import annotations

PPM = 1_000_000
DEFAULT_CHANNEL_FEE_PPM = 6_000  # 0.6 %


def channel_fee(amount_fen: int, rate_ppm: int) -> int:
    if amount_fen < 0 or not 0 <= rate_ppm <= PPM:
        raise ValueError("amount must be >= 0 and the rate between 0 and 1,000,000 ppm")
    return (amount_fen * rate_ppm + PPM // 2) // PPM


def fee_sql(amount_column: str, rate_ppm: int) -> str:
    """The same arithmetic in SQL (integer division of non-negative bigints truncates, as
    ``//`` does); ``rate_ppm`` is checked to be an int, never text."""
    if isinstance(rate_ppm, bool) or not isinstance(rate_ppm, int) or not 0 <= rate_ppm <= PPM:
        raise ValueError("rate must be an integer number of ppm")
    return f"(({amount_column} * {rate_ppm} + {PPM // 2}) / {PPM})"
