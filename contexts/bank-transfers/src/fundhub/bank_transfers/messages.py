"""Decoding a transfer-notify message; anything that cannot be decoded is a poison message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fundhub.bank_transfers.notification import (
    NotifyRejected,
    TransferNotice,
    parse_transfer_biz_content,
)
from fundhub.common.consumer import PoisonMessage, open_envelope


@dataclass(frozen=True)
class TransferMessage:
    message_id: str
    correlation_id: str
    app_id: str
    params: dict[str, Any]
    notice: TransferNotice
    received_at: datetime


def decode_transfer_message(raw: bytes | None) -> TransferMessage:
    envelope = open_envelope(raw)
    try:
        params = envelope.data["params"]
        app_id = envelope.data["appId"]
        received_at = datetime.fromisoformat(envelope.data["receivedAt"].replace("Z", "+00:00"))
        notice = parse_transfer_biz_content(params["biz_content"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise PoisonMessage(f"malformed transfer notification: {exc!r}") from exc
    except NotifyRejected as exc:
        raise PoisonMessage(exc.reason) from exc
    return TransferMessage(
        message_id=envelope.id,
        correlation_id=envelope.correlation_id,
        app_id=str(app_id),
        params=params,
        notice=notice,
        received_at=received_at,
    )
