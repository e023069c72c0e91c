"""The orders context's input messages: the channels' verified notifications and the refund
commands. Anything undecodable is a poison message (dead-lettered with the reason)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from fundhub.channels.events import ChannelEvent
from fundhub.common.consumer import PoisonMessage, open_envelope

TYPE_CHANNEL_NOTIFIED = "channel.notified"
TYPE_REFUND_REQUESTED = "order.refund-requested"


@dataclass(frozen=True)
class EventMessage:
    message_id: str  # ChannelEvent.message_id(): the channel's retries share it
    correlation_id: str
    event: ChannelEvent


@dataclass(frozen=True)
class RefundCommand:
    message_id: str
    correlation_id: str
    order_id: str
    refund_id: str


def decode_event(raw: bytes | None) -> EventMessage:
    envelope = open_envelope(raw)
    if envelope.type != TYPE_CHANNEL_NOTIFIED:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    try:
        event = ChannelEvent.model_validate(envelope.data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "data"
        raise PoisonMessage(f"not a channel event: {where}: {first['msg']}") from exc
    return EventMessage(event.message_id(), envelope.correlation_id, event)


def decode_command(raw: bytes | None) -> RefundCommand | None:
    """A refund command; None for another command on the topic (settlement's share it)."""
    envelope = open_envelope(raw)
    if envelope.type != TYPE_REFUND_REQUESTED:
        return None
    order_id, refund_id = envelope.data.get("orderId"), envelope.data.get("refundId")
    if not isinstance(order_id, str) or not order_id:
        raise PoisonMessage("refund command without an orderId")
    if not isinstance(refund_id, str) or not refund_id:
        raise PoisonMessage("refund command without a refundId")
    return RefundCommand(envelope.id, envelope.correlation_id, order_id, refund_id)
