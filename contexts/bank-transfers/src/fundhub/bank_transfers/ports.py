"""What the bank-transfers context asks of others: whether an account the bank credits may
still take money. No implementation here.

The bank names the account a transfer is for (``in_acct_no``). A merchant's account that is
closing or closed must stay empty (its close was admitted on a zero balance, and nobody can
withdraw from it), so such a credit is held in suspense instead and kept as an exception
(``apply``). The merchants context implements ``ClosedAccounts``
(``merchants.lookup.ClosedMerchantAccounts``); notify-ingest's composition root passes it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from fundhub.common.db import Connection


class ClosedAccounts(Protocol):
    async def closed(
        self, conn: Connection, account_ids: Sequence[str]
    ) -> Mapping[str, tuple[str, str]]:
        """Of ``account_ids``, those that may no longer take money: account id -> (its
        holder, the holder's state). Read in ``conn``'s transaction in a statement of its own,
        after the caller locked the accounts' balances (so a close deciding concurrently either
        is seen here or sees the credit)."""
        ...
