"""What a request that raised answers: its own refusal, 503 when Postgres is out of reach, else 500."""

from __future__ import annotations

import asyncpg
import orjson
import pytest
from starlette.types import Scope

from fundhub.access.keys import ApiKey
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.signing import body_signature
from fundhub.gateway.edge import error_response


def request(authenticated: bool) -> Scope:
    scope: Scope = {"type": "http", "method": "POST", "path": "/v1/payouts", "headers": []}
    scope["state"] = {}
    if authenticated:
        scope["state"]["api_key"] = ApiKey("k1", "s3cret", frozenset(), frozenset())
    return scope


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("too many clients"),
        # A statement sent on a connection the server dropped while it stopped (seen on CI
        # under load during the Postgres restart test: it answered a 500).
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_an_unreachable_database_answers_503_signed(exc: Exception) -> None:
    response = error_response(request(authenticated=True), exc)
    body = orjson.loads(response.body)
    assert response.status_code == 503
    assert body["errorCode"] == ErrorCode.UNAVAILABLE.code and body["bizCode"] == "FAILED"
    assert response.headers["X-Signature"] == body_signature("s3cret", bytes(response.body))


def test_a_refusal_keeps_its_code_and_a_bug_answers_500_unsigned() -> None:
    refused = error_response(request(True), FundhubError(ErrorCode.NOT_FOUND, "payout X"))
    assert refused.status_code == 404 and orjson.loads(refused.body)["msg"] == "payout X"
    bug = error_response(request(True), KeyError("oops"))
    assert bug.status_code == 500 and orjson.loads(bug.body)["errorCode"] == "E500_INTERNAL"
    assert "X-Signature" not in bug.headers
