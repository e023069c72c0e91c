"""Decoding the worker's input messages; anything undecodable is a poison message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fundhub.common.consumer import PoisonMessage, open_envelope
from fundhub.payouts.bank_results import BankResult, InvalidBankResult, parse_bank_result


@dataclass(frozen=True)
class PayoutCommand:
    message_id: str
    correlation_id: str
    pay_id: str


@dataclass(frozen=True)
class ResultMessage:
    message_id: str
    correlation_id: str
    pay_id: str
    result: BankResult
    app_id: str  # the bank app whose key signed the result (checked by the gateway)


def decode_command(raw: bytes | None) -> PayoutCommand:
    envelope = open_envelope(raw)
    pay_id = envelope.data.get("payId")
    if not isinstance(pay_id, str) or not pay_id:
        raise PoisonMessage("payout command without a payId")
    return PayoutCommand(envelope.id, envelope.correlation_id, pay_id)


def decode_result(raw: bytes | None) -> ResultMessage:
    """A payout result in either envelope the gateway writes.

    A single notification (``bkfunds.payout.result.notify``) travels whole, under ``params``;
    an item of a batch notification travels alone, its fields under ``result``.
    """
    envelope = open_envelope(raw)
    try:
        biz = _result_fields(envelope.data)
        result = parse_bank_result(biz)
    except InvalidBankResult as exc:
        raise PoisonMessage(str(exc)) from exc
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise PoisonMessage(f"malformed payout result: {exc!r}") from exc
    assert result.bank_request_id is not None  # required by parse_bank_result
    app_id = envelope.data.get("appId")
    if not isinstance(app_id, str) or not app_id:
        raise PoisonMessage("payout result without the appId that signed it")
    return ResultMessage(
        envelope.id, envelope.correlation_id, result.bank_request_id, result, app_id
    )


def _result_fields(data: dict[str, Any]) -> dict[str, Any]:
    if "result" in data:
        item: Any = data["result"]
        if not isinstance(item, dict):
            raise PoisonMessage("result: not a JSON object")
        return item
    params: Any = data["params"]
    biz: Any = orjson.loads(params["biz_content"])
    if not isinstance(biz, dict):
        raise PoisonMessage("biz_content: not a JSON object")
    return biz
