"""The depository's split instructions (分账, ``/depository/v1/splits``), as settlement calls them.

``POST /depository/v1/splits`` registers an order's split (idempotent by ``split_request_id``;
the same id with other content is refused 409) and answers ``PROCESSING`` at once; like a real
depository it completes asynchronously: ``delay_s`` later the instruction is SUCCESS or FAILED
and the bank tells ``notify_url`` with a signed notification (RSA2 over the public parameters,
as every notification it sends), retried as the bank retries: the results completing within a
few ms of each other in one ``bkfunds.split.results.notify``, a lone one as
``bkfunds.split.result.notify``.
``POST /depository/v1/splits/batch`` registers many at once, each as it would be alone,
answered item by item in the order sent. ``GET /depository/v1/splits/{id}`` tells an
instruction's state or ``NOT_FOUND``.

The documented refusal rule, so anyone can see that path: an instruction naming a receiver
whose ``member_name`` starts with ``SPLITFAIL`` FAILS, with the reason
``receiver <member_id> (<member_name>): the member may not receive splits``.
``POST /depository/v1/split-desk/behaviour`` sets ``delayS`` and ``notify`` (false: the result
is never sent, only a query finds it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from fundhub.bank_simulator.bank_notifier import BankNotifier
from fundhub.bank_simulator.depository_intake import (
    RequestRefused,
    held_answer,
    held_before,
    json_body,
    json_response,
    refusal,
    shares_from_wire,
)
from fundhub.bank_simulator.notifications import DEFAULT_EXCLUDES, PrivateKey, private_key
from fundhub.bank_simulator.payout_callbacks import signed_notification
from fundhub.bank_simulator.sender import DeliveryObserver
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.ids import random_uuid
from fundhub.settlement.depository import (
    MAX_BATCH_SPLITS,
    MAX_RECEIVERS,
    MAX_SPLIT_RESULTS,
    REFUSED,
    SPLIT_RESULT_METHOD,
    SPLIT_RESULTS_METHOD,
    SPLITS_BATCH_PATH,
    SPLITS_PATH,
    SplitStatus,
)

log = structlog.get_logger("fundhub.bank_simulator.depository_splits")

SPLITFAIL_PREFIX = "SPLITFAIL"
DESK_PATH = "/depository/v1/split-desk"
_MAX_BODY = 64 * 1024
_MAX_BATCH_BODY = MAX_BATCH_SPLITS * _MAX_BODY


class SplitBehaviour(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    delay_s: float = Field(default=0.2, ge=0.0, le=3600.0)
    notify: bool = True

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


@dataclass
class Split:
    """One registered instruction and where the bank has got with it."""

    wire: dict[str, Any]
    bank_split_id: str
    received_at: datetime
    status: SplitStatus = SplitStatus.PROCESSING
    reason: str = ""
    finished_at: datetime | None = None

    @property
    def split_request_id(self) -> str:
        return str(self.wire["split_request_id"])

    def answer(self) -> dict[str, str]:
        return {
            "split_request_id": self.split_request_id,
            "bank_split_id": self.bank_split_id,
            "status": self.status.value,
            "reason": self.reason,
        }

    def result_biz(self) -> dict[str, str]:
        finished = self.finished_at or self.received_at
        return {
            **self.answer(),
            "order_no": str(self.wire["order_no"]),
            "amount": str(self.wire["amount"]),
            "finished_time": format_bank_time(finished),
        }


def refusal_reason(receivers: list[dict[str, str]]) -> str | None:
    """The documented rule: a receiver named SPLITFAIL... may not receive splits."""
    for receiver in receivers:
        if receiver["member_name"].startswith(SPLITFAIL_PREFIX):
            return (
                f"receiver {receiver['member_id']} ({receiver['member_name']}): "
                "the member may not receive splits"
            )
    return None


def instruction_from_wire(body: Any) -> dict[str, Any]:
    """The instruction, checked as the bank checks it; RequestRefused names the field."""
    return shares_from_wire(
        body,
        id_field="split_request_id",
        fields=("order_no", "currency", "amount", "notify_url"),
        parts="receivers",
        part_fields=("member_id", "member_name", "amount"),
        max_parts=MAX_RECEIVERS,
    )


@dataclass
class SplitDesk:
    """The bank's split desk: instructions by id, completed ``delay_s`` after they arrive."""

    behaviour: SplitBehaviour = field(default_factory=SplitBehaviour)
    splits: dict[str, Split] = field(default_factory=dict)
    refused_requests: int = 0
    registrations: int = 0  # well-formed registration requests, repeats included

    def register(self, wire: dict[str, Any], now: datetime) -> tuple[Split, bool]:
        """The instruction under its id, and whether it is new; RequestConflict when the id
        names another instruction (409)."""
        self.registrations += 1
        known = held_before(self.splits, wire, "split_request_id", "instruction")
        if known is not None:
            return known, False
        split = Split(wire, "BS" + random_uuid().replace("-", "")[:24], now)
        self.splits[split.split_request_id] = split
        return split, True

    def complete(self, split: Split, now: datetime) -> None:
        reason = refusal_reason(split.wire["receivers"])
        split.status = SplitStatus.FAILED if reason else SplitStatus.SUCCESS
        split.reason = reason or ""
        split.finished_at = now

    def stats(self) -> dict[str, int]:
        counts = {s.value: 0 for s in SplitStatus}
        for split in self.splits.values():
            counts[split.status.value] += 1
        return {
            **counts,
            "refusedRequests": self.refused_requests,
            "registrations": self.registrations,
        }


class SplitNotifier(BankNotifier):
    """Completes each new instruction after the desk's delay and tells its notify_url, signed."""

    def __init__(
        self,
        desk: SplitDesk,
        app_id: str,
        key: PrivateKey,
        *,
        retries: int = 3,
        retry_interval_s: float = 180.0,
        timeout_s: float = 10.0,
        max_connections: int = 100,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.desk = desk
        self.app_id = app_id
        self._key = private_key(key)
        super().__init__(
            "split",
            max_connections,
            retries=retries,
            retry_interval_s=retry_interval_s,
            timeout_s=timeout_s,
            observer=observer,
        )
        self._outboxes = self.result_batches(self._deliver, MAX_SPLIT_RESULTS)

    def follow(self, split: Split) -> None:
        self.spawn(self._timeline(split), f"split-{split.split_request_id}")

    async def _timeline(self, split: Split) -> None:
        await asyncio.sleep(self.desk.behaviour.delay_s)
        self.desk.complete(split, utcnow())
        log.info(
            "depository_split_completed",
            split_request_id=split.split_request_id,
            status=split.status.value,
            reason=split.reason,
        )
        if not self.desk.behaviour.notify:
            return
        # Reported in batches, as payouts are: one signature and one POST for the results
        # completing together (``result_batches``).
        self._outboxes.enqueue(str(split.wire["notify_url"]), split.result_biz())

    async def _deliver(self, url: str, batch: list[dict[str, str]]) -> None:
        # The single form for a lone result, the batch form for more.
        if len(batch) == 1:
            method, text = SPLIT_RESULT_METHOD, orjson.dumps(batch[0]).decode()
        else:
            method, text = SPLIT_RESULTS_METHOD, orjson.dumps({"results": batch}).decode()
        params = await asyncio.to_thread(
            signed_notification, method, text, self.app_id, self._key, None, DEFAULT_EXCLUDES
        )
        delivery = await self.sender(url).send(params)
        if not delivery.ok:
            log.error(
                "depository_split_results_gave_up",
                split_request_ids=[biz["split_request_id"] for biz in batch[:10]],
                results=len(batch),
                attempts=delivery.attempts,
                reason=delivery.answer,
            )


def split_router(desk: SplitDesk, notifier: SplitNotifier) -> APIRouter:
    router = APIRouter(tags=["bank: depository splits"])

    @router.post(SPLITS_PATH, summary="Register an order's split (idempotent by split_request_id)")
    async def register(request: Request) -> Response:
        try:
            wire = instruction_from_wire(await json_body(request, _MAX_BODY))
            split, created = desk.register(wire, utcnow())
        except RequestRefused as exc:
            desk.refused_requests += 1
            return refusal(exc)
        if not notifier.is_running:
            return json_response({"status": REFUSED, "error": "bank not started"}, 503)
        if created:
            notifier.follow(split)
        return held_answer(split)

    @router.post(
        SPLITS_BATCH_PATH,
        summary="Register many splits at once: each answered (or refused) in the order sent",
    )
    async def register_batch(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_BATCH_BODY:
            return json_response({"status": REFUSED, "error": "body: too large"}, 413)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        splits = body.get("splits") if isinstance(body, dict) else None
        if not isinstance(splits, list) or not 0 < len(splits) <= MAX_BATCH_SPLITS:
            desk.refused_requests += 1
            return json_response(
                {"status": REFUSED, "error": f"splits: 1 to {MAX_BATCH_SPLITS} instructions"},
                status.HTTP_400_BAD_REQUEST,
            )
        if not notifier.is_running:
            return json_response({"status": REFUSED, "error": "bank not started"}, 503)
        now = utcnow()
        results: list[dict[str, Any]] = []
        for item in splits:
            try:
                split, created = desk.register(instruction_from_wire(item), now)
            except RequestRefused as exc:
                desk.refused_requests += 1
                results.append({"status": REFUSED, "code": exc.status_code, "error": str(exc)})
                continue
            if created:
                notifier.follow(split)
            results.append(split.answer())
        return json_response({"results": results})

    @router.get(SPLITS_PATH + "/{split_request_id}", summary="An instruction's current state")
    async def query(split_request_id: str) -> Response:
        return held_answer(desk.splits.get(split_request_id))

    @router.get(
        "/depository/v1/split-desk/behaviour", summary="The split desk's delay and notifications"
    )
    async def behaviour() -> dict[str, Any]:
        return desk.behaviour.to_json()

    @router.post(
        "/depository/v1/split-desk/behaviour", summary="Change them (fields left out keep theirs)"
    )
    async def set_behaviour(request: Request) -> Response:
        try:
            update = orjson.loads(await request.body())
            desk.behaviour = SplitBehaviour.model_validate({**desk.behaviour.to_json(), **update})
        except (orjson.JSONDecodeError, TypeError, ValidationError) as exc:
            return json_response({"status": REFUSED, "error": str(exc)[:300]}, 400)
        return json_response(desk.behaviour.to_json())

    @router.get(DESK_PATH + "/stats", summary="Instructions by status")
    async def stats() -> dict[str, int]:
        return desk.stats()

    return router
