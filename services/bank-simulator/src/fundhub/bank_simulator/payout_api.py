"""The bank's payout API (``/bank/v1``), as the payment worker's HTTP adapter calls it.

``POST /bank/v1/transfers`` takes a transfer (idempotent by ``bank_request_id``);
``POST /bank/v1/transfers/batch`` takes ``{"transfers": [...]}`` (1 to ``MAX_BATCH``), each as
if sent alone, and answers ``{"results": [...]}`` in the same order, a refused order
(``"status": "REFUSED"``, ``code`` 400 or 409) in its place; its faults are the request's, one
for the whole batch. ``GET /bank/v1/transfers/{id}`` tells a transfer's state or ``NOT_FOUND``;
``POST /bank/v1/behaviour`` sets this run's rates; ``GET /bank/v1/stats`` counts what happened;
``POST /bank/v1/sandbox/scenarios`` takes sandbox scenarios for payouts about to be sent
(``payouts.sandbox``): their transfer then follows the scenario, not the rates.
Bodies are snake_case JSON with amounts as strings of fen, like the bank's notifications.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import structlog
from fastapi import APIRouter, Request, Response, status
from pydantic import ValidationError

from fundhub.bank_simulator.payout_callbacks import PayoutNotifier
from fundhub.bank_simulator.payouts_bank import (
    Fault,
    PayoutBank,
    PayoutBehaviour,
    TransferConflict,
    TransferRequestError,
    batch_from_wire,
    not_found,
    order_from_wire,
)
from fundhub.common.clock import utcnow
from fundhub.payouts.bank import BATCH_PATH, MAX_BATCH, TRANSFERS_PATH
from fundhub.payouts.sandbox import SCENARIOS_PATH, scenario_from_wire

log = structlog.get_logger("fundhub.bank_simulator.payout_api")

T = TypeVar("T")

_MAX_BODY = 64 * 1024
# Room for MAX_BATCH orders of the longest fields the bank takes (about 3 KB each in UTF-8).
_MAX_BATCH_BODY = MAX_BATCH * 4 * 1024


def _json(body: Any, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _refusal(status_code: int, error: str) -> Response:
    return _json({"status": "REFUSED", "error": error}, status_code)


def payout_router(bank: PayoutBank, notifier: PayoutNotifier) -> APIRouter:
    router = APIRouter(tags=["bank: payouts"])

    async def take(request: Request, limit: int, parse: Callable[[Any], T]) -> T | Response:
        """The request's orders as ``parse`` reads them, or the answer that refuses them."""
        raw = await request.body()
        try:
            if len(raw) > limit:
                raise TransferRequestError(f"body: over {limit} bytes")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise TransferRequestError("body: not JSON") from None
            orders = parse(body)
        except TransferRequestError as exc:
            bank.stats.refused += 1
            return _refusal(status.HTTP_400_BAD_REQUEST, str(exc))
        if not notifier.is_running:
            return _refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "bank not started")
        return orders

    @router.post(TRANSFERS_PATH, summary="Take a payout (idempotent by bank_request_id)")
    async def submit(request: Request) -> Response:
        order = await take(request, _MAX_BODY, order_from_wire)
        if isinstance(order, Response):
            return order
        try:
            submission = bank.submit(order, utcnow())
        except TransferConflict as exc:
            return _refusal(status.HTTP_409_CONFLICT, str(exc))
        transfer = submission.transfer
        if submission.created:
            notifier.follow(transfer)
        if submission.fault is Fault.SERVER_ERROR:
            log.info("bank_payout_fault", bank_request_id=order.bank_request_id, fault="5xx")
            return _refusal(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")
        if submission.fault is Fault.TIMEOUT:
            # The transfer is made; the answer comes after the client has stopped waiting.
            log.info("bank_payout_fault", bank_request_id=order.bank_request_id, fault="timeout")
            await asyncio.sleep(bank.behaviour.timeout_delay_ms / 1000.0)
        return _json(transfer.answer())

    @router.post(BATCH_PATH, summary=f"Take 1 to {MAX_BATCH} payouts, each as if sent alone")
    async def submit_batch(request: Request) -> Response:
        # Raw bytes, orjson and plain dicts: no model per item, as batches exist to be cheap.
        items = await take(request, _MAX_BATCH_BODY, batch_from_wire)
        if isinstance(items, Response):
            return items
        batch = bank.submit_batch(items, utcnow())
        for transfer in batch.created:
            notifier.follow(transfer)
        if batch.fault is not None:
            log.info(
                "bank_payout_batch_fault",
                first_bank_request_id=batch.items[0].bank_request_id,
                orders=len(batch.items),
                fault="5xx" if batch.fault is Fault.SERVER_ERROR else "timeout",
            )
        if batch.fault is Fault.SERVER_ERROR:
            return _refusal(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")
        if batch.fault is Fault.TIMEOUT:
            # Every transfer is made; the answer comes after the client has stopped waiting.
            await asyncio.sleep(bank.behaviour.timeout_delay_ms / 1000.0)
        return _json(batch.answer())

    @router.get(TRANSFERS_PATH + "/{bank_request_id}", summary="A payout's current state")
    async def query(bank_request_id: str) -> Response:
        answer = bank.query(bank_request_id)
        if answer is None:
            return _json(not_found(), status.HTTP_404_NOT_FOUND)
        return _json(answer)

    @router.get("/bank/v1/behaviour", summary="This run's rates and seed")
    async def behaviour() -> dict[str, Any]:
        return bank.behaviour.to_json()

    @router.post("/bank/v1/behaviour", summary="Change the rates (fields left out keep theirs)")
    async def set_behaviour(request: Request) -> Response:
        try:
            update = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _refusal(status.HTTP_400_BAD_REQUEST, "body: not JSON")
        if not isinstance(update, dict):
            return _refusal(status.HTTP_400_BAD_REQUEST, "body: not a JSON object")
        current = bank.behaviour.to_json()
        try:
            behaviour = PayoutBehaviour.model_validate({**current, **update})
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            return _refusal(status.HTTP_400_BAD_REQUEST, errors)
        applied = bank.set_behaviour(behaviour)
        log.info("bank_payout_behaviour", **applied.to_json())
        return _json(applied.to_json())

    @router.post(SCENARIOS_PATH, summary="Sandbox: scenarios for payouts about to be sent")
    async def take_scenarios(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_BATCH_BODY:
            return _refusal(status.HTTP_400_BAD_REQUEST, f"body: over {_MAX_BATCH_BODY} bytes")
        try:
            items = orjson.loads(raw).get("scenarios")
            if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
                raise ValueError(f"scenarios: a list of 1 to {MAX_BATCH}")
            scenarios = [scenario_from_wire(item) for item in items]
        except (orjson.JSONDecodeError, AttributeError, ValueError) as exc:
            return _refusal(status.HTTP_400_BAD_REQUEST, str(exc) or "body: not JSON")
        for scenario in scenarios:
            bank.scenarios.add(scenario)
        log.info("bank_sandbox_scenarios", ids=[s.bank_request_id for s in scenarios][:10])
        return _json({"taken": len(scenarios)})

    @router.get("/bank/v1/stats", summary="What the bank has seen and done this run")
    async def stats() -> dict[str, Any]:
        return {
            **bank.stats.to_json(),
            "pendingTasks": notifier.pending,
            "behaviour": bank.behaviour.to_json(),
        }

    return router
