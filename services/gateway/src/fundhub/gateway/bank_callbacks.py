"""``POST /callbacks/bank``: the bank's RSA2-signed notifications, answered only once durable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.responses import Response

from fundhub.bank_transfers.bank_apps import BankAppStore
from fundhub.bank_transfers.notification import (
    TRANSFER_NOTIFY_METHOD,
    NotifyRejected,
    check_protocol,
    check_public_params,
    load_params,
    notification_message_id,
    parse_transfer_biz_content,
    strict_loads,
)
from fundhub.common.cidrs import address_allowed
from fundhub.common.clock import iso_utc_ms, utcnow
from fundhub.common.config import BANK_CALLBACK_PATH, Settings
from fundhub.common.envelope import Envelope
from fundhub.common.errors import ErrorCode
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage, PublishFailed
from fundhub.common.topics import Topics
from fundhub.gateway.edge import edge_route
from fundhub.gateway.metrics import BANK_NOTIFICATIONS
from fundhub.merchants.depository import RESULT_METHOD as MEMBER_RESULT_METHOD
from fundhub.merchants.depository import InvalidMemberResult, parse_member_result
from fundhub.payouts.bank import RESULT_METHOD, RESULTS_METHOD
from fundhub.payouts.bank_results import (
    BatchResult,
    InvalidBankResult,
    parse_bank_result,
    parse_bank_results,
)
from fundhub.settlement.depository import (
    SPLIT_RESULT_METHOD,
    SPLIT_RESULTS_METHOD,
    InvalidSplitResult,
    parse_split_result,
    parse_split_results,
)
from fundhub.settlement.messages import TYPE_SPLIT_RESULT

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Room for the largest notification the bank sends, a batch of 500 payout or split results
# (about 110 KiB as biz_content, escaped); all an unauthenticated caller can make the gateway read.
MAX_NOTIFICATION_BYTES = 256 * 1024
TYPE_TRANSFER_NOTIFY = "bank.transfer-notify.received"
TYPE_UNHANDLED_NOTIFY = "bank.notify.unhandled"
TYPE_PAYOUT_RESULT = "bank.payout-result.received"
TYPE_MEMBER_RESULT = "bank.member-result.received"


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


class BankNotificationIntake:
    """Verify, validate, publish. Nothing is published unless every check passed."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        apps: BankAppStore,
        publisher: KafkaPublisher,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._apps = apps
        self._publisher = publisher

    async def accept(
        self, raw: bytes, correlation_id: str, client: str | None = None
    ) -> Refusal | None:
        try:
            params = load_params(raw)  # bounded and strict before anything else reads it
            check_public_params(params)
        except NotifyRejected as exc:
            return Refusal(400, exc.reason)
        app = await self._apps.get(params["app_id"])
        if app is None:
            return Refusal(401, "unknown app_id")
        if not app.usable or not app.verifies(params, params["sign"]):
            return Refusal(401, "signature verification failed")
        if not address_allowed(app.allowed_cidrs, client):
            # Told apart only in the log: to the sender it is the refusal of a bad signature.
            log.warning("bank_notification_outside_ranges", app_id=app.app_id)
            return Refusal(401, "signature verification failed")
        try:
            check_protocol(params, utcnow(), self._settings.bank_timestamp_tolerance_s)
            if params["method"] == RESULT_METHOD:
                return await self._payout_result(app.app_id, params, correlation_id)
            if params["method"] == RESULTS_METHOD:
                return await self._payout_results(app.app_id, params, correlation_id)
            if params["method"] == SPLIT_RESULT_METHOD:
                return await self._split_result(app.app_id, params, correlation_id)
            if params["method"] == SPLIT_RESULTS_METHOD:
                return await self._split_results(app.app_id, params, correlation_id)
            if params["method"] == MEMBER_RESULT_METHOD:
                return await self._member_result(app.app_id, params, correlation_id)
            if params["method"] != TRANSFER_NOTIFY_METHOD:
                return await self._keep_unhandled(params, correlation_id)
            notice = parse_transfer_biz_content(params["biz_content"])
        except NotifyRejected as exc:
            return Refusal(400, exc.reason)
        envelope = _notification_envelope(TYPE_TRANSFER_NOTIFY, app.app_id, params, correlation_id)
        structlog.contextvars.bind_contextvars(
            app_id=app.app_id, record_id=notice.record_id, message_id=envelope.id
        )
        # Keyed by the receiving account: every message touching one account keeps its order.
        return await self._publish(self._topics.bank_transfer_notify, envelope, notice.in_acct_no)

    async def _payout_result(
        self, app_id: str, params: dict[str, Any], correlation_id: str
    ) -> Refusal | None:
        """A payout's result, checked here so that only readable ones reach the worker."""
        result = _biz_read(params, parse_bank_result)
        if isinstance(result, Refusal):
            return result
        envelope = _notification_envelope(TYPE_PAYOUT_RESULT, app_id, params, correlation_id)
        pay_id = str(result.bank_request_id)
        structlog.contextvars.bind_contextvars(app_id=app_id, pay_id=pay_id, message_id=envelope.id)
        # Keyed by the payId: every report on one payout keeps its order.
        return await self._publish(self._topics.bank_payout_results, envelope, pay_id)

    async def _payout_results(
        self, app_id: str, params: dict[str, Any], correlation_id: str
    ) -> Refusal | None:
        """Many payouts' results in one notification: one message per result, all or none.

        Each result travels alone (keyed and deduplicated per payout, as if the bank had sent
        it singly), so the worker never needs the batch's other items. ``success`` only once
        Kafka acknowledged them all; after a failed publish some may be written already, and
        the bank's retry of the whole batch republishes them under the same ids, which the
        worker's inbox drops.
        """
        results = _biz_read(params, parse_bank_results)
        if isinstance(results, Refusal):
            return results
        notification = {"method": params["method"], "timestamp": params["timestamp"]}
        received_at = iso_utc_ms(utcnow())
        topic = self._topics.bank_payout_results
        messages = [
            OutgoingMessage.of(
                topic,
                _batch_result_envelope(app_id, item, notification, received_at, correlation_id),
                str(item.result.bank_request_id),
            )
            for item in results
        ]
        structlog.contextvars.bind_contextvars(app_id=app_id, results=len(messages))
        refusal = await self._publish_all(messages)
        if refusal is None:
            log.info("bank_payout_results_accepted", count=len(messages))
        return refusal

    async def _split_result(
        self, app_id: str, params: dict[str, Any], correlation_id: str
    ) -> Refusal | None:
        """The depository's result on a split instruction, checked here so that only readable
        ones reach the worker (which checks the app against the settlement's)."""
        result = _biz_read(params, parse_split_result)
        if isinstance(result, Refusal):
            return result
        envelope = _notification_envelope(TYPE_SPLIT_RESULT, app_id, params, correlation_id)
        structlog.contextvars.bind_contextvars(
            app_id=app_id, settlement_id=result.split_request_id, message_id=envelope.id
        )
        # Keyed by the settlement: every result on one instruction keeps its order.
        return await self._publish(
            self._topics.bank_split_results, envelope, result.split_request_id
        )

    async def _split_results(
        self, app_id: str, params: dict[str, Any], correlation_id: str
    ) -> Refusal | None:
        """Many split results in one notification: one message per result, all or none, each
        as the single form would publish it (the same id, its own ``biz_content``), so the
        worker reads them alike and its inbox keeps one of a result sent both ways."""
        results = _biz_read(params, parse_split_results)
        if isinstance(results, Refusal):
            return results
        received_at = iso_utc_ms(utcnow())
        topic = self._topics.bank_split_results
        messages = []
        for result in results:
            biz_content = orjson.dumps(result.item).decode()
            envelope = Envelope(
                id=notification_message_id(app_id, biz_content),
                type=TYPE_SPLIT_RESULT,
                correlation_id=correlation_id,
                data={
                    "appId": app_id,
                    "params": {
                        "method": params["method"],
                        "timestamp": params["timestamp"],
                        "biz_content": biz_content,
                    },
                    "receivedAt": received_at,
                },
            )
            # Keyed by the settlement: every result on one instruction keeps its order.
            messages.append(OutgoingMessage.of(topic, envelope, result.report.split_request_id))
        structlog.contextvars.bind_contextvars(app_id=app_id, results=len(messages))
        return await self._publish_all(messages)

    async def _member_result(
        self, app_id: str, params: dict[str, Any], correlation_id: str
    ) -> Refusal | None:
        """The depository's result on a merchant request, checked here so that only readable
        ones reach the worker (which checks the app against the request's)."""
        result = _biz_read(params, parse_member_result)
        if isinstance(result, Refusal):
            return result
        envelope = _notification_envelope(TYPE_MEMBER_RESULT, app_id, params, correlation_id)
        structlog.contextvars.bind_contextvars(
            app_id=app_id, request_id=result.request_id, message_id=envelope.id
        )
        # Keyed by the merchant: every result on one merchant keeps its order.
        return await self._publish(
            self._topics.bank_merchant_results, envelope, result.member_ext_id
        )

    async def _keep_unhandled(self, params: dict[str, Any], correlation_id: str) -> Refusal | None:
        envelope = _notification_envelope(
            TYPE_UNHANDLED_NOTIFY, params["app_id"], params, correlation_id
        )
        log.info("bank_notify_kept_unhandled", method=params["method"])
        return await self._publish(self._topics.bank_notify_unhandled, envelope, params["app_id"])

    async def _publish(self, topic: str, envelope: Envelope, key: str) -> Refusal | None:
        return await self._publish_all([OutgoingMessage.of(topic, envelope, key)])

    async def _publish_all(self, messages: list[OutgoingMessage]) -> Refusal | None:
        """One call, every acknowledgement awaited: a failure anywhere is a 503 for it all."""
        try:
            await self._publisher.send_many(messages)
        except PublishFailed as exc:
            log.error("bank_notify_publish_failed", error=str(exc), messages=len(messages))
            return Refusal(503, "temporarily unavailable, retry later")
        return None


def _notification_envelope(
    type_: str, app_id: str, params: dict[str, Any], correlation_id: str
) -> Envelope:
    """A whole notification, as signed, for the consumer to read again; its id comes from the
    content, so the bank's retries of it share one id and the consumer's inbox keeps one."""
    return Envelope(
        id=notification_message_id(app_id, params["biz_content"]),
        type=type_,
        correlation_id=correlation_id,
        data={"appId": app_id, "params": params, "receivedAt": iso_utc_ms(utcnow())},
    )


def _biz_read(params: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> T | Refusal:
    """``biz_content`` decoded and read by ``parse``, or the refusal of what it is not."""
    try:
        biz = strict_loads(params["biz_content"], "biz_content")
    except NotifyRejected as exc:
        return Refusal(400, exc.reason)
    except (ValueError, TypeError, RecursionError):
        biz = None
    if not isinstance(biz, dict):
        return Refusal(400, "biz_content: not a JSON object")
    try:
        return parse(biz)
    except (InvalidBankResult, InvalidMemberResult, InvalidSplitResult) as exc:
        return Refusal(400, str(exc))


def result_item_message_id(app_id: str, item: dict[str, Any]) -> str:
    """A batch item's message id: the id the same result gets when the bank sends it singly.

    So a result delivered twice, in one batch, in two batches, or once in each form, carries
    one id and the worker's inbox keeps the first.
    """
    return notification_message_id(app_id, orjson.dumps(item).decode())


def _batch_result_envelope(
    app_id: str,
    item: BatchResult,
    notification: dict[str, str],
    received_at: str,
    correlation_id: str,
) -> Envelope:
    return Envelope(
        id=result_item_message_id(app_id, item.item),
        type=TYPE_PAYOUT_RESULT,
        correlation_id=correlation_id,
        data={
            "appId": app_id,
            "result": item.item,
            "notification": notification,
            "receivedAt": received_at,
        },
    )


_ACCEPTED = BANK_NOTIFICATIONS.labels("accepted")


def answer(refusal: Refusal | None) -> tuple[int, str]:
    """The bank reads only the body: ``success``, or ``fail: <reason>``."""
    if refusal is None:
        _ACCEPTED.inc()
        log.debug("bank_notify_accepted")
        return 200, "success"
    outcome = "unavailable" if refusal.status == 503 else "refused"
    BANK_NOTIFICATIONS.labels(outcome).inc()
    log.warning("bank_notify_refused", reason=refusal.reason, status=refusal.status)
    return refusal.status, f"fail: {refusal.reason}"


def bank_refusal(error: ErrorCode, message: str) -> Response:
    """A refusal made by the pipeline itself (a body too large) in the bank's own terms."""
    status, text = answer(Refusal(error.http_status, message))
    return PlainTextResponse(text, status_code=status)


_DOCUMENTED_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}, "example": example}},
    }
    for status, description, example in (
        (200, "Accepted and durable (or a signed notification of a method kept aside)", "success"),
        (400, "Refused: the notification is malformed; the reason names the field", "fail: ..."),
        (401, "Refused: unknown app_id or a bad signature", "fail: signature verification failed"),
        (413, "Refused: the body is larger than the route takes", "fail: body: more than ..."),
        (503, "Not taken: Kafka is unavailable; the bank retries", "fail: temporarily unavailable"),
    )
}


def bank_router() -> APIRouter:
    router = APIRouter(tags=["bank"])

    @router.post(
        BANK_CALLBACK_PATH,
        response_class=PlainTextResponse,
        summary="The bank's signed notifications (bkfunds.acct.transfer.notify and others)",
        responses=_DOCUMENTED_ANSWERS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    @edge_route(hot=True, body_limit=MAX_NOTIFICATION_BYTES, refusal=bank_refusal)
    async def receive_bank_notification(request: Request) -> Response:
        intake: BankNotificationIntake = request.app.state.bank_intake
        client = request.scope.get("client")
        refusal = await intake.accept(
            await request.body(), request.state.correlation_id, client[0] if client else None
        )
        status, text = answer(refusal)
        return PlainTextResponse(text, status_code=status)

    return router
