"""Decoding the merchants worker's input messages; anything undecodable is a poison message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fundhub.common.consumer import PoisonMessage, open_envelope
from fundhub.merchants.depository import InvalidMemberResult, MemberResult, parse_member_result


@dataclass(frozen=True)
class RequestCommand:
    """A depository request the API queued (``store.TYPE_REQUEST``)."""

    message_id: str
    correlation_id: str
    request_id: str
    merchant_id: str


@dataclass(frozen=True)
class ResultMessage:
    """The bank's signed result, verified by the gateway, with the app whose key signed it."""

    message_id: str
    correlation_id: str
    result: MemberResult
    app_id: str


def decode_command(raw: bytes | None) -> RequestCommand:
    envelope = open_envelope(raw)
    request_id = envelope.data.get("requestId")
    merchant_id = envelope.data.get("merchantId")
    if not isinstance(request_id, str) or not request_id:
        raise PoisonMessage("merchant command without a requestId")
    if not isinstance(merchant_id, str) or not merchant_id:
        raise PoisonMessage("merchant command without a merchantId")
    return RequestCommand(envelope.id, envelope.correlation_id, request_id, merchant_id)


def decode_result(raw: bytes | None) -> ResultMessage:
    """The notification whole, as the gateway verified it (``params``, ``biz_content`` a JSON
    string in it), read again here."""
    envelope = open_envelope(raw)
    try:
        params: Any = envelope.data["params"]
        biz: Any = orjson.loads(params["biz_content"])
        if not isinstance(biz, dict):
            raise PoisonMessage("biz_content: not a JSON object")
        result = parse_member_result(biz)
    except InvalidMemberResult as exc:
        raise PoisonMessage(str(exc)) from exc
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise PoisonMessage(f"malformed member result: {exc!r}") from exc
    app_id = envelope.data.get("appId")
    if not isinstance(app_id, str) or not app_id:
        raise PoisonMessage("member result without the appId that signed it")
    return ResultMessage(envelope.id, envelope.correlation_id, result, app_id)
