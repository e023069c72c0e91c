"""The gateway's answers counter: a refusal's label is a code from the one table, or its
status; never whatever a body says (the set of series must stay bounded)."""

from __future__ import annotations

import orjson

from fundhub.common.errors import ErrorCode
from fundhub.gateway.edge import answer_code


def test_a_refusal_is_labelled_with_its_error_code() -> None:
    body = orjson.dumps({"errorCode": "E002", "msg": "signature verification failed"})
    assert answer_code(401, body) == ErrorCode.BAD_SIGNATURE.code == "E002"


def test_a_code_outside_the_table_or_no_code_is_labelled_with_the_status() -> None:
    assert answer_code(400, orjson.dumps({"errorCode": "E002' OR 1=1"})) == "HTTP_400"
    assert answer_code(404, b'{"detail": "Not Found"}') == "HTTP_404"
    assert answer_code(502, b"<html>bad gateway</html>") == "HTTP_502"
    assert answer_code(400, b"{" + b" " * 100_000 + b"}") == "HTTP_400"
