"""``POST /callbacks/wechatpay`` and ``POST /callbacks/alipay``: the channels' notifications,
verified, published to ``channels.notify.v1`` (acks=all) and only then acknowledged.

What each channel reads of our answer: WeChat Pay the status (204 accepted; 4xx/5xx with
``{"code":"FAIL","message":…}`` makes it retry), Alipay the body (exactly ``success``; ``fail``
makes it retry). A refusal tells the sender nothing it could use: every notification that does
not verify (unknown serial or app, bad signature, stale timestamp, a resource that does not
decrypt, another app's notification) gets one answer, the malformed ones another; the reason
is in the log. Matching the order and posting is the orders context's, reading the topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.responses import Response

from fundhub.channels import alipay, wechatpay
from fundhub.channels.apps import ChannelAppStore
from fundhub.channels.events import Channel, ChannelEvent
from fundhub.channels.notification import NotificationRefused, RefusalKind, unverified
from fundhub.common.clock import utcnow
from fundhub.common.config import ALIPAY_CALLBACK_PATH, WECHATPAY_CALLBACK_PATH
from fundhub.common.errors import ErrorCode
from fundhub.common.group_commit import GroupCommit
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage, PublishFailed
from fundhub.common.topics import Topics
from fundhub.gateway.edge import edge_route
from fundhub.gateway.metrics import CHANNEL_NOTIFICATIONS

log = structlog.get_logger(__name__)

# What the sender is told; the reason stays in the log.
MALFORMED = "invalid notification"
UNVERIFIED = "signature verification failed"
UNAVAILABLE = "temporarily unavailable, retry later"


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


_STATUS = {RefusalKind.MALFORMED: 400, RefusalKind.UNVERIFIED: 401}
_MESSAGE = {RefusalKind.MALFORMED: MALFORMED, RefusalKind.UNVERIFIED: UNVERIFIED}


def _refusal(exc: NotificationRefused, channel: Channel) -> Refusal:
    log.warning(
        "channel_notify_refused", channel=channel.value, kind=exc.kind.value, reason=exc.reason
    )
    return Refusal(_STATUS[exc.kind], _MESSAGE[exc.kind])


# Notifications accepted at the same time go to Kafka in one send (``common.group_commit``):
# the send's own cost (its deadline, the wait for every acknowledgement) was a fifth of a
# notification's handling. Each is still its own message, keyed by its order.
MAX_MESSAGES_PER_SEND = 200


class ChannelNotificationIntake:
    """Verify, publish, answer. Nothing is published unless every check passed."""

    def __init__(self, topics: Topics, apps: ChannelAppStore, publisher: KafkaPublisher) -> None:
        self._topic = topics.channel_notifications
        self._apps = apps
        self._publisher = publisher
        self._sends: GroupCommit[OutgoingMessage, PublishFailed | None] = GroupCommit(
            self._send_all, id, max_batch=MAX_MESSAGES_PER_SEND
        )

    async def _send_all(self, messages: list[OutgoingMessage]) -> list[PublishFailed | None]:
        """One send for all; a failure fails each as a result, not by raising (group commit
        would retry each alone, one publish timeout after another, while Kafka is away)."""
        try:
            await self._publisher.send_many(messages)
        except PublishFailed as exc:
            return [exc] * len(messages)
        return [None] * len(messages)

    async def wechatpay(
        self, headers: Mapping[str, str], body: bytes, correlation_id: str
    ) -> Refusal | None:
        try:
            event = await self._wechatpay_event(headers, body)
        except NotificationRefused as exc:
            return _refusal(exc, Channel.WECHATPAY)
        return await self._publish(event, correlation_id)

    async def _wechatpay_event(self, headers: Mapping[str, str], body: bytes) -> ChannelEvent:
        # Cheap checks first (shape, headers, time, serial known); RSA only then.
        notification = wechatpay.parse_notification(body)
        signed = wechatpay.read_signed_headers(headers)
        wechatpay.check_timestamp(signed, utcnow())
        for app in await self._apps.wechatpay_by_serial(signed.serial):
            key = app.platform_keys.get(signed.serial)
            if key is None or not signed.verifies(body, key):
                continue
            plaintext = notification.resource.decrypt(app.apiv3_key)
            event = wechatpay.event_of(notification, plaintext, app.app.app_id)
            wechatpay.check_owner(event, app.app.app_id, app.mchid)
            return event
        raise unverified(f"no app verifies it under serial {signed.serial}")

    async def alipay(self, body: bytes, correlation_id: str) -> Refusal | None:
        try:
            params = alipay.parse_form(body)
            alipay.check_public(params)
            app = await self._apps.alipay(params["app_id"])
            if app is None:
                raise unverified("unknown app_id")
            if not alipay.verifies(params, app.alipay_public_key):
                raise unverified("sign does not verify under the app's Alipay key")
            alipay.check_owner(params, app.app.app_id, app.seller_id)
            event = alipay.event_of(params)
        except NotificationRefused as exc:
            return _refusal(exc, Channel.ALIPAY)
        if event is None:
            log.info("alipay_notify_without_event", trade_status=params.get("trade_status"))
            return None
        return await self._publish(event, correlation_id)

    async def _publish(self, event: ChannelEvent, correlation_id: str) -> Refusal | None:
        envelope = event.to_envelope(correlation_id)
        structlog.contextvars.bind_contextvars(
            channel=event.channel.value, out_trade_no=event.out_trade_no, message_id=envelope.id
        )
        # Keyed by out_trade_no: every event of one order on one partition, in order.
        failed = await self._sends.submit(
            OutgoingMessage.of(self._topic, envelope, event.out_trade_no)
        )
        if failed is not None:
            log.error("channel_notify_publish_failed", error=str(failed))
            return Refusal(503, UNAVAILABLE)
        return None


def _count(channel: Channel, refusal: Refusal | None) -> None:
    if refusal is None:
        outcome = "accepted"
    else:
        outcome = "unavailable" if refusal.status >= 500 else "refused"
    CHANNEL_NOTIFICATIONS.labels(channel.value, outcome).inc()


def wechatpay_answer(refusal: Refusal | None) -> Response:
    _count(Channel.WECHATPAY, refusal)
    if refusal is None:
        return Response(status_code=204)
    return Response(
        orjson.dumps({"code": "FAIL", "message": refusal.message}),
        status_code=refusal.status,
        media_type="application/json",
    )


def alipay_answer(refusal: Refusal | None) -> Response:
    _count(Channel.ALIPAY, refusal)
    if refusal is None:
        return PlainTextResponse(alipay.ANSWER_SUCCESS)
    return PlainTextResponse(alipay.ANSWER_FAIL, status_code=refusal.status)


def _pipeline_message(error: ErrorCode) -> str:
    """A refusal made by the pipeline itself: a body too large, a rate limit, unavailable."""
    if error is ErrorCode.UNAVAILABLE:
        return UNAVAILABLE
    return error.default_message


def wechatpay_refusal(error: ErrorCode, message: str) -> Response:
    return wechatpay_answer(Refusal(error.http_status, _pipeline_message(error)))


def alipay_refusal(error: ErrorCode, message: str) -> Response:
    return alipay_answer(Refusal(error.http_status, _pipeline_message(error)))


_FAIL_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string", "enum": ["FAIL"]}, "message": {"type": "string"}},
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "required": True,
    }
}


# (status, description, WeChat Pay's body or None, Alipay's body) of every answer.
_ANSWERS = (
    (200, "Accepted and durable (on channels.notify.v1)", None, "success"),
    (400, "Refused: not a notification of the expected shape", MALFORMED, "fail"),
    (
        401,
        "Refused: it does not verify (serial or app, signature, time, key, owner)",
        UNVERIFIED,
        "fail",
    ),
    (413, "Refused: the body is larger than the route takes", "request body too large", "fail"),
    (429, "Refused: over this address's rate limit; retry later", "too many requests", "fail"),
    (503, "Not taken: Kafka is unavailable; the channel retries", UNAVAILABLE, "fail"),
)


def _wechatpay_answers() -> dict[int | str, dict[str, Any]]:
    answers: dict[int | str, dict[str, Any]] = {}
    for status, description, message, _ in _ANSWERS:
        if message is None:
            answers[204] = {"description": description}
            continue
        answers[status] = {
            "description": description,
            "content": {
                "application/json": {
                    "schema": _FAIL_SCHEMA,
                    "example": {"code": "FAIL", "message": message},
                }
            },
        }
    answers[429]["headers"] = _RETRY_AFTER
    return answers


def _alipay_answers() -> dict[int | str, dict[str, Any]]:
    answers: dict[int | str, dict[str, Any]] = {
        status: {
            "description": description,
            "content": {"text/plain": {"schema": {"type": "string"}, "example": text}},
        }
        for status, description, _, text in _ANSWERS
    }
    answers[429]["headers"] = _RETRY_AFTER
    return answers


def signing_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The ``Wechatpay-*`` headers; one given twice is emptied (so refused): two values could be
    read one way here and another way by whoever reads the request next."""
    found: dict[str, str] = {}
    for name, value in raw:
        if name.startswith(b"wechatpay-"):
            key = name.decode("latin-1")
            found[key] = "" if key in found else value.decode("latin-1")
    return found


def _header(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}


def channel_router() -> APIRouter:
    router = APIRouter(tags=["channels"])

    @router.post(
        WECHATPAY_CALLBACK_PATH,
        status_code=204,
        response_class=Response,
        summary="WeChat Pay APIv3 notifications (TRANSACTION.SUCCESS, REFUND.*)",
        responses=_wechatpay_answers(),
        openapi_extra={
            "parameters": [
                _header("Wechatpay-Timestamp"),
                _header("Wechatpay-Nonce"),
                _header("Wechatpay-Signature"),
                _header("Wechatpay-Serial"),
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        },
    )
    @edge_route(hot=True, body_limit=wechatpay.MAX_NOTIFICATION_BYTES, refusal=wechatpay_refusal)
    async def receive_wechatpay_notification(request: Request) -> Response:
        intake: ChannelNotificationIntake = request.app.state.channel_intake
        refusal = await intake.wechatpay(
            signing_headers(request.scope["headers"]),
            await request.body(),
            request.state.correlation_id,
        )
        return wechatpay_answer(refusal)

    @router.post(
        ALIPAY_CALLBACK_PATH,
        response_class=PlainTextResponse,
        summary="Alipay async notify (trade_status_sync: payments, refunds, closes)",
        responses=_alipay_answers(),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
            }
        },
    )
    @edge_route(hot=True, body_limit=alipay.MAX_NOTIFY_BYTES, refusal=alipay_refusal)
    async def receive_alipay_notification(request: Request) -> Response:
        intake: ChannelNotificationIntake = request.app.state.channel_intake
        refusal = await intake.alipay(await request.body(), request.state.correlation_id)
        return alipay_answer(refusal)

    return router
