"""The depository's member API (``/depository/v1``), as payment-worker's HTTP adapter calls it,
and its signed result notifications.

``POST /depository/v1/requests`` takes a request (idempotent by ``request_id``) and answers
PROCESSING (a CONFIRM and a REGISTER, the registration of an existing account: their result at
once); after the review delay the request is decided and
its result is sent to ``notify_url`` as ``bkfunds.member.result.notify``, signed exactly like
the bank's other notifications (the same app and key, RSA2) and retried like them.
``GET /depository/v1/requests/{id}`` tells a request's state or ``NOT_FOUND``.

For tests and demos only (a real bank never tells the platform the amount it sent):
``GET /depository/v1/simulator/micro-deposits/{member_ext_id}``, the member's latest
micro-deposit. ``GET/POST /depository/v1/behaviour`` reads and changes the review delay.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request, Response, status
from pydantic import ValidationError

from fundhub.bank_simulator.bank_notifier import BankNotifier
from fundhub.bank_simulator.config import DeliveryOptions
from fundhub.bank_simulator.depository_members import (
    DepositoryBehaviour,
    MemberBook,
    MemberRequest,
    RequestConflict,
    RequestInvalid,
    not_found,
)
from fundhub.bank_simulator.notifications import PrivateKey, private_key, sign_params
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.merchants.depository import REQUESTS_PATH, RESULT_METHOD

log = structlog.get_logger("fundhub.bank_simulator.depository")

_MAX_BODY = 64 * 1024
DEPOSITS_PATH = "/depository/v1/simulator/micro-deposits"


def build_member_result(biz: dict[str, str], app_id: str, key: PrivateKey) -> dict[str, str]:
    """The signed parameters of ``bkfunds.member.result.notify`` carrying ``biz``."""
    params = {
        "app_id": app_id,
        "method": RESULT_METHOD,
        "format": "json",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": format_bank_time(utcnow()),
        "version": "1.0",
        "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
    }
    params["sign"] = sign_params(params, key)
    return params


class MemberNotifier(BankNotifier):
    """Decides each accepted request after its delay and delivers the signed result.

    Usable between ``async with notifier.running():`` and its end, which cancels what is still
    pending (the simulated bank forgets its unsent notifications when it stops)."""

    def __init__(
        self, book: MemberBook, app_id: str, key: PrivateKey, delivery: DeliveryOptions
    ) -> None:
        super().__init__(
            "member",
            delivery["max_connections"],
            retries=delivery["retries"],
            retry_interval_s=delivery["retry_interval_s"],
            timeout_s=delivery["timeout_s"],
        )
        self.book = book
        self.app_id = app_id
        self._key = private_key(key)

    def follow(self, request: MemberRequest) -> None:
        """A new request: decided after its delay (a CONFIRM is decided already), then told."""
        if request.finished_at is not None:
            return  # answered at once: its answer was the result
        self.spawn(self._timeline(request.request_id), f"member-{request.request_id}")

    async def _timeline(self, request_id: str) -> None:
        await asyncio.sleep(self.book.review_delay_s(request_id))
        request = self.book.decide(request_id, utcnow())
        params = await asyncio.to_thread(
            build_member_result, request.result_biz(), self.app_id, self._key
        )
        stats = self.book.stats
        stats.notifications_sent += 1
        delivery = await self.sender(request.notify_url).send(params)
        if delivery.ok:
            stats.notifications_delivered += 1
        else:
            stats.notifications_failed += 1
            log.error("member_result_gave_up", request_id=request_id, reason=delivery.answer)


def _json(body: Any, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _refusal(status_code: int, error: str) -> Response:
    return _json({"status": "REFUSED", "error": error}, status_code)


def depository_router(book: MemberBook, notifier: MemberNotifier) -> APIRouter:
    router = APIRouter(tags=["bank: depository members"])

    @router.post(REQUESTS_PATH, summary="Take a member request (idempotent by request_id)")
    async def submit(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            return _refusal(status.HTTP_400_BAD_REQUEST, f"body: over {_MAX_BODY} bytes")
        if not notifier.is_running:
            return _refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "bank not started")
        try:
            wire = orjson.loads(raw)
            member_request, created = book.submit(wire, utcnow())
        except orjson.JSONDecodeError:
            return _refusal(status.HTTP_400_BAD_REQUEST, "body: not JSON")
        except RequestInvalid as exc:
            book.stats.refused += 1
            return _refusal(status.HTTP_400_BAD_REQUEST, str(exc))
        except RequestConflict as exc:
            return _refusal(status.HTTP_409_CONFLICT, str(exc))
        if created:
            log.info(
                "member_request",
                request_id=member_request.request_id,
                kind=member_request.kind.value,
                member_ext_id=member_request.member_ext_id,
            )
            notifier.follow(member_request)
        return _json(member_request.answer())

    @router.get(REQUESTS_PATH + "/{request_id}", summary="A member request's current state")
    async def query(request_id: str) -> Response:
        answer = book.query(request_id)
        if answer is None:
            return _json(not_found(), status.HTTP_404_NOT_FOUND)
        return _json(answer)

    @router.get(
        DEPOSITS_PATH + "/{member_ext_id}",
        summary="Simulator only: the amount of a member's latest micro-deposit",
    )
    async def micro_deposit(member_ext_id: str) -> Response:
        deposit = book.micro_deposit(member_ext_id)
        if deposit is None:
            return _json(not_found(), status.HTTP_404_NOT_FOUND)
        return _json(
            {
                "member_ext_id": deposit.member_ext_id,
                "bind_request_id": deposit.bind_request_id,
                "account_no": deposit.account_no,
                "amount": deposit.amount,
                "wrong_tries": deposit.wrong_tries,
                "verified": deposit.verified,
            }
        )

    @router.get("/depository/v1/behaviour", summary="This run's review delay and seed")
    async def behaviour() -> dict[str, Any]:
        return book.behaviour.to_json()

    @router.post("/depository/v1/behaviour", summary="Change the review delay or the seed")
    async def set_behaviour(request: Request) -> Response:
        try:
            update = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _refusal(status.HTTP_400_BAD_REQUEST, "body: not JSON")
        if not isinstance(update, dict):
            return _refusal(status.HTTP_400_BAD_REQUEST, "body: not a JSON object")
        try:
            changed = DepositoryBehaviour.model_validate({**book.behaviour.to_json(), **update})
        except ValidationError as exc:
            return _refusal(status.HTTP_400_BAD_REQUEST, str(exc.errors()[0]["msg"]))
        return _json(book.set_behaviour(changed).to_json())

    @router.get("/depository/v1/stats", summary="What the depository has seen and done")
    async def stats() -> dict[str, Any]:
        return {**book.stats.to_json(), "pendingTasks": notifier.pending}

    return router
