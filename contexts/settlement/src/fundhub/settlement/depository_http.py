"""The depository's JSON-over-HTTP split API (``depository/v1``): the ``DepositoryPort`` the
scheduler uses. The rules every adapter keeps are in ``settlement.depository``; the HTTP and its
retries are ``fundhub.bank_client``'s, over the process's one connection pool to the bank."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import aiohttp
import orjson

from fundhub.bank_client.exchange import JsonExchange, Reply, never_received, read_reply
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
    refusal_reason,
)


def _refused(reply: Reply) -> DepositoryRefused:
    return DepositoryRefused(reply.status, refusal_reason(reply.parsed, reply.excerpt))


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
        body = orjson.dumps(instruction.to_wire())
        url = self.base_url + SPLITS_PATH
        split_id = instruction.split_request_id

        async def once() -> SplitReport:
            reply = await self._http.send("POST", url, body)
            return read_reply(reply, lambda answer: parse_answer(answer, split_id), _refused)

        return await self._http.call("register", split_id, once, split_request_id=split_id)

    async def register_splits(
        self, instructions: Sequence[SplitInstruction]
    ) -> list[SplitReport | DepositoryRefused]:
        """Several instructions in one request. A batch refused as a whole (a bank without the
        batch form, a batch it finds malformed) is no verdict on any one instruction, and holds
        nothing: ``DepositoryRefused``, and the scheduler registers each alone."""
        if not 0 < len(instructions) <= MAX_BATCH_SPLITS:
            raise ValueError(f"1 to {MAX_BATCH_SPLITS} instructions in a batch")
        ids = [i.split_request_id for i in instructions]
        body = orjson.dumps({"splits": [i.to_wire() for i in instructions]})
        url = self.base_url + SPLITS_BATCH_PATH

        async def once() -> list[SplitReport | DepositoryRefused]:
            reply = await self._http.send("POST", url, body)
            return read_reply(reply, lambda answer: parse_batch_answer(answer, ids), _refused)

        label = f"{ids[0]} and {len(ids) - 1} more"
        return await self._http.call("register-batch", label, once, split_request_id=label)

    async def query_split(self, split_request_id: str) -> SplitReport | None:
        url = f"{self.base_url}{SPLITS_PATH}/{quote(split_request_id, safe='')}"

        async def once() -> SplitReport | None:
            reply = await self._http.send("GET", url)
            if never_received(reply, NOT_FOUND):
                return None
            return read_reply(
                reply, lambda answer: parse_answer(answer, split_request_id), _refused
            )

        return await self._http.call(
            "query", split_request_id, once, split_request_id=split_request_id
        )
