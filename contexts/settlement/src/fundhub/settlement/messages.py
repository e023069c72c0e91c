"""Decoding the depository's split results as the gateway publishes them; anything else is a
poison message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fundhub.common.consumer import PoisonMessage, open_envelope
from fundhub.settlement.depository import InvalidSplitResult, SplitReport, parse_split_result

TYPE_SPLIT_RESULT = "bank.split-result.received"


@dataclass(frozen=True)
class SplitResultMessage:
    message_id: str
    correlation_id: str
    report: SplitReport
    app_id: str  # the bank app whose key signed it (checked by the gateway)

    @property
    def settlement_id(self) -> str:
        return self.report.split_request_id


def decode_split_result(raw: bytes | None) -> SplitResultMessage:
    """A verified ``bkfunds.split.result.notify``, whole under ``params``."""
    envelope = open_envelope(raw)
    if envelope.type != TYPE_SPLIT_RESULT:
        raise PoisonMessage(f"unexpected message type {envelope.type!r}")
    try:
        params: Any = envelope.data["params"]
        biz: Any = orjson.loads(params["biz_content"])
        if not isinstance(biz, dict):
            raise PoisonMessage("biz_content: not a JSON object")
        report = parse_split_result(biz)
    except InvalidSplitResult as exc:
        raise PoisonMessage(str(exc)) from exc
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise PoisonMessage(f"malformed split result: {exc!r}") from exc
    app_id = envelope.data.get("appId")
    if not isinstance(app_id, str) or not app_id:
        raise PoisonMessage("split result without the appId that signed it")
    return SplitResultMessage(envelope.id, envelope.correlation_id, report, app_id)
