"""How a reply of the bank is read (``fundhub.bank_client.exchange``): the bank's own NOT_FOUND,
its refusals, and what is worth another try. The retried exchange itself runs against the bank
simulator in each adapter's tests (payouts, members, splits, refund debits)."""

from __future__ import annotations

import orjson
import pytest

from fundhub.bank_client.exchange import Reply, TryAgain, never_received, read_reply
from fundhub.bank_client.refusal import Refused as BankRefused


class Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status, reply.excerpt)


def test_only_the_banks_own_not_found_means_never_received() -> None:
    assert never_received(Reply(404, orjson.dumps({"status": "NOT_FOUND"})), "NOT_FOUND")
    assert not never_received(Reply(200, b"{}"), "NOT_FOUND")
    for foreign in (b"<html>not found</html>", orjson.dumps({"status": "GONE"}), b""):
        with pytest.raises(TryAgain, match="without the bank's NOT_FOUND"):
            never_received(Reply(404, foreign), "NOT_FOUND")


def test_a_200_is_read_a_refusal_is_the_callers_and_an_unusable_answer_is_tried_again() -> None:
    def amount(answer: object) -> int:
        if not isinstance(answer, dict) or not isinstance(answer.get("amount"), int):
            raise ValueError("no amount")
        return answer["amount"]

    assert read_reply(Reply(200, b'{"amount": 7}'), amount, Refused) == 7
    with pytest.raises(Refused) as refused:
        read_reply(Reply(400, b'{"code": "BAD"}' + b"x" * 500), amount, Refused)
    assert refused.value.args[0] == 400 and len(refused.value.args[1]) == 200
    for unusable in (b"not json", b'{"amount": "7"}', b"[]"):
        with pytest.raises(TryAgain, match="unusable answer"):
            read_reply(Reply(200, unusable), amount, Refused)


class ShortRefused(BankRefused):
    reason_chars = 5


def test_a_refusal_reads_the_banks_reason_else_its_error_else_the_text_cut_short() -> None:
    both = ShortRefused.from_answer(409, {"reason": "", "error": "conflicting"}, "raw")
    assert (both.status_code, both.reason, str(both)) == (409, "confl", "HTTP 409: confl")
    assert ShortRefused.from_answer(400, {"reason": "bad"}, "raw").reason == "bad"
    assert ShortRefused.from_answer(400, None, "<html>proxy</html>").reason == "<html"
    assert ShortRefused.from_answer(400, {"code": 1}, "").reason == "no reason given"
    assert BankRefused.from_answer(400, {"reason": "x" * 300}, "").reason == "x" * 256
