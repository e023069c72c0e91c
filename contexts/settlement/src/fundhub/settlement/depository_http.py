"""The depository's JSON-over-HTTP split API (``depository/v1``): the ``DepositoryPort`` the
scheduler uses. The rules every adapter keeps are in ``settlement.depository``; the HTTP and its
retries are ``fundhub.bank_client``'s, over the process's one connection pool to the bank."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import aiohttp

from fundhub.bank_client.exchange import JsonExchange
from fundhub.settlement.depository import (
    MAX_BATCH_SPLITS,
    NOT_FOUND,
    SPLITS_BATCH_PATH,
    SPLITS_PATH,
    DepositoryRefused,
    DepositoryUnavailable,
    SplitInstruction,
    SplitReport,
    parse_answer,
    parse_batch_answer,
)


class HttpDepository:
    """``POST {base_url}/depository/v1/splits`` (and ``.../splits/batch``) and ``GET
    .../splits/{id}``.

    Timeouts, connection errors, 5xx, 408, 429 and unreadable answers are retried ``retries``
    times with the same ``split_request_id`` (the bank dedupes it), then DepositoryUnavailable.
    Any other 4xx is the bank's refusal of the request: DepositoryRefused, not retried.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        self._http = JsonExchange(
            session,
            event="depository_attempt_failed",
            unavailable=DepositoryUnavailable,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
        )
        self.base_url = base_url.rstrip("/")

    async def register_split(self, instruction: SplitInstruction) -> SplitReport:
        split_id = instruction.split_request_id
        return await self._http.post(
            "register",
            split_id,
            self.base_url + SPLITS_PATH,
            instruction.to_wire(),
            lambda answer: parse_answer(answer, split_id),
            DepositoryRefused,
            split_request_id=split_id,
        )

    async def register_splits(
        self, instructions: Sequence[SplitInstruction]
    ) -> list[SplitReport | DepositoryRefused]:
        """Several instructions in one request. A batch refused as a whole (a bank without the
        batch form, a batch it finds malformed) is no verdict on any one instruction, and holds
        nothing: ``DepositoryRefused``, and the scheduler registers each alone."""
        if not 0 < len(instructions) <= MAX_BATCH_SPLITS:
            raise ValueError(f"1 to {MAX_BATCH_SPLITS} instructions in a batch")
        ids = [i.split_request_id for i in instructions]
        label = f"{ids[0]} and {len(ids) - 1} more"
        return await self._http.post(
            "register-batch",
            label,
            self.base_url + SPLITS_BATCH_PATH,
            {"splits": [i.to_wire() for i in instructions]},
            lambda answer: parse_batch_answer(answer, ids),
            DepositoryRefused,
            split_request_id=label,
        )

    async def query_split(self, split_request_id: str) -> SplitReport | None:
        return await self._http.query(
            split_request_id,
            f"{self.base_url}{SPLITS_PATH}/{quote(split_request_id, safe='')}",
            NOT_FOUND,
            lambda answer: parse_answer(answer, split_request_id),
            DepositoryRefused,
            split_request_id=split_request_id,
        )
