"""The classes a reconciled item falls into, and their names on the wire. Pure.

The database keeps snake_case (``recon_discrepancies.class``); the API and the CLI's ``--json``
speak camelCase, as every other answer of the platform does.
"""

from __future__ import annotations

from enum import StrEnum


class MatchClass(StrEnum):
    MATCHED = "matched"
    MISSING_ON_PLATFORM = "missing_on_platform"  # the source has it, we do not
    MISSING_AT_CHANNEL = "missing_at_channel"  # we have it, the source does not
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    DUPLICATE = "duplicate"  # the source reports it more than once
    FEE_DIFFERENCE = "fee_difference"

    @property
    def wire(self) -> str:
        head, *rest = self.value.split("_")
        return head + "".join(word.capitalize() for word in rest)


DISCREPANCY_CLASSES: tuple[MatchClass, ...] = tuple(
    c for c in MatchClass if c is not MatchClass.MATCHED
)
BY_WIRE: dict[str, MatchClass] = {c.wire: c for c in MatchClass}


def by_wire(name: str) -> MatchClass:
    """``missingOnPlatform`` → ``MatchClass.MISSING_ON_PLATFORM``; ``KeyError`` if unknown."""
    return BY_WIRE[name]


def per_class(values: dict[str, int]) -> dict[str, int]:
    """Every class by its wire name, 0 where nothing fell into it."""
    return {c.wire: int(values.get(c.value, 0)) for c in MatchClass}
