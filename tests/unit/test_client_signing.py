"""The client's request signing: the README's worked example, and agreement with the gateway."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import QueryParams

from fundhub.client import calls
from fundhub.client.exchange import Call, Exchange
from fundhub.client.signing import (
    canonical_query,
    request_signature,
    response_signature_valid,
    signed_headers,
    string_to_sign,
)
from fundhub.common import signing as server

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_SECRET = "s3cr3t-example-only"
EXAMPLE_PATH = "/v1/accounts/15489516846/transactions"
EXAMPLE_TS = "1795939200"
EXAMPLE_NONCE = "n0nce-4f1c2a9e7b3d4c1a"
EXAMPLE_SIGNATURE = "91c65d62d12cc3661410c68020db4af1cf0daa4de9af225ebd46c1979c57a638"

TRICKY_QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("limit", "2"), ("cursor", "cDoxMDA")],
    [("a", "x y"), ("a", "1"), ("b", "2")],
    [("requestId", "req:2025.11-21_a~b")],
    [("q", "供应商"), ("Z", "é/?&=+#%")],
    [("k", ""), ("k", "*'()!$,;@")],
]


def test_readme_worked_example() -> None:
    query = canonical_query([("limit", "2"), ("cursor", "cDoxMDA")])
    assert query == "cursor=cDoxMDA&limit=2"
    text = string_to_sign("get", EXAMPLE_PATH, query, EXAMPLE_TS, EXAMPLE_NONCE, b"")
    assert text.splitlines() == [
        "GET",
        EXAMPLE_PATH,
        "cursor=cDoxMDA&limit=2",
        EXAMPLE_TS,
        EXAMPLE_NONCE,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]
    signature = request_signature(
        EXAMPLE_SECRET, "GET", EXAMPLE_PATH, query, EXAMPLE_TS, EXAMPLE_NONCE, b""
    )
    assert signature == EXAMPLE_SIGNATURE
    assert EXAMPLE_SIGNATURE in README.read_text(encoding="utf-8")


def test_request_built_for_the_readme_example_carries_its_signature() -> None:
    exchange = Exchange("http://127.0.0.1:8000", "ak_example", EXAMPLE_SECRET)
    headers = signed_headers(
        "ak_example",
        EXAMPLE_SECRET,
        "GET",
        EXAMPLE_PATH,
        "cursor=cDoxMDA&limit=2",
        b"",
        timestamp=EXAMPLE_TS,
        nonce=EXAMPLE_NONCE,
    )
    assert headers["X-Signature"] == EXAMPLE_SIGNATURE
    request = exchange.build(calls.transactions("15489516846", "cDoxMDA", 2))
    assert request.url.raw_path == f"{EXAMPLE_PATH}?cursor=cDoxMDA&limit=2".encode()
    assert request.headers["X-Api-Key"] == "ak_example"


@pytest.mark.parametrize("pairs", TRICKY_QUERIES)
def test_canonical_query_matches_the_gateway(pairs: list[tuple[str, str]]) -> None:
    assert canonical_query(pairs) == server.canonical_query(pairs)


@pytest.mark.parametrize("pairs", TRICKY_QUERIES)
@pytest.mark.parametrize("base_url", ["http://gw.test:8000", "https://gw.test/fundhub/"])
def test_gateway_verifies_what_the_client_sends(
    pairs: list[tuple[str, str]], base_url: str
) -> None:
    """Recompute the signature the way the gateway does: from the parsed query it receives."""
    secret = "s3cr3t-" + "x" * 40
    body = '{"amount":1000,"note":"供应商"}'.encode()
    request = Exchange(base_url, "ak_1", secret).build(
        Call("POST", "/v1/payouts", query=tuple(pairs), body=body)
    )
    raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
    received = QueryParams(raw_query).multi_items()
    assert sorted(received) == sorted(pairs)
    expected = server.sign_api_request(
        secret,
        request.method,
        raw_path,
        received,
        request.headers["X-Timestamp"],
        request.headers["X-Nonce"],
        request.content,
    )
    assert request.headers["X-Signature"] == expected
    assert raw_path.endswith("/v1/payouts")
    assert request.content == body


def test_each_build_gets_a_fresh_nonce() -> None:
    exchange = Exchange("http://gw.test", "ak_1", "secret")
    call = calls.balance("6222020000000001")
    nonces = {exchange.build(call).headers["X-Nonce"] for _ in range(20)}
    assert len(nonces) == 20
    assert all(16 <= len(n) <= 64 for n in nonces)


def test_response_signature_is_hmac_of_the_raw_body() -> None:
    body = b'{"statusCode":200}'
    good = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert good == server.body_signature("k", body)
    assert response_signature_valid("k", body, good)
    assert response_signature_valid("k", body, good.upper())
    assert not response_signature_valid("k", body + b" ", good)
    assert not response_signature_valid("other", body, good)
    assert not response_signature_valid("k", body, "")
    assert not response_signature_valid("k", body, "ä" * 64)


def test_path_segments_are_encoded_and_signed_as_sent() -> None:
    request = Exchange("http://gw.test", "ak_1", "secret").build(calls.get_payout("PAY/../x y"))
    assert request.url.raw_path == b"/v1/payouts/PAY%2F..%2Fx%20y"
    assert isinstance(request.url, httpx.URL)
