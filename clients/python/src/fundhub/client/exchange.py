"""One API call without the I/O: build the signed request, judge the answer, decide on retries.

The sync and async clients only differ in how they send and sleep; everything that must be
identical between them (their options, signing, response verification, error mapping, retry
policy, callback verification) lives here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from fundhub.client.errors import (
    FundhubError,
    NetworkError,
    ServerError,
    SignatureMismatch,
    UnexpectedPayload,
    error_for,
)
from fundhub.client.signing import (
    HEADER_SIGNATURE,
    canonical_query,
    response_signature_valid,
    signed_headers,
)
from fundhub.client.webhooks import DEFAULT_TOLERANCE_S, verify_callback

USER_AGENT = "fundhub-client/0.1.0"

# Failures where the request may or may not have reached the gateway: resending is safe because
# every call is a read or carries its requestId. Local protocol errors are bugs, not retried.
RETRYABLE_EXCEPTIONS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class Call:
    """What to send: ``path`` is percent-encoded already; ``body`` is sent byte for byte."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    correlation_id: str | None = None


class Exchange:
    """Signs requests and verifies answers for one API key."""

    def __init__(self, base_url: str, key_id: str, secret: str) -> None:
        if not key_id or not secret:
            raise ValueError("key_id and secret are required")
        base = httpx.URL(base_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._origin = f"{base.scheme}://{base.netloc.decode('ascii')}"
        # A gateway mounted under a prefix signs the whole path it receives.
        self._prefix = base.raw_path.decode("ascii").split("?", 1)[0].rstrip("/")
        self._key_id = key_id
        self._secret = secret

    def build(self, call: Call) -> httpx.Request:
        """A freshly signed request: new timestamp and nonce on every attempt, same body."""
        path = self._prefix + call.path
        query = canonical_query(call.query)
        headers = signed_headers(self._key_id, self._secret, call.method, path, query, call.body)
        headers["User-Agent"] = USER_AGENT
        headers["Accept"] = "application/json"
        if call.body:
            headers["Content-Type"] = "application/json"
        if call.correlation_id:
            headers["X-Correlation-Id"] = call.correlation_id
        # The query goes on the wire exactly as signed, so no re-encoding can make them differ.
        url = self._origin + path + (f"?{query}" if query else "")
        return httpx.Request(call.method, url, headers=headers, content=call.body)

    def interpret(self, response: httpx.Response) -> dict[str, Any]:
        """The verified JSON object of a 2xx answer; anything else raises.

        A 2xx answer must be signed. A refusal is checked when signed and reported unverified
        when not (see ``FundhubError.verified``).
        """
        body = response.content
        given = response.headers.get(HEADER_SIGNATURE)
        ok = 200 <= response.status_code < 300
        if given is not None:
            if not response_signature_valid(self._secret, body, given):
                raise SignatureMismatch(
                    f"HTTP {response.status_code}: X-Signature does not match the body"
                )
        elif ok:
            raise SignatureMismatch(f"HTTP {response.status_code}: response has no X-Signature")
        data = _json(body)
        if not ok:
            raise _refusal(response, data, verified=given is not None)
        if not isinstance(data, dict):
            raise UnexpectedPayload(f"HTTP {response.status_code}: body is not a JSON object")
        return data


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None


def _refusal(response: httpx.Response, data: Any, *, verified: bool) -> FundhubError:
    status = response.status_code
    fields: Mapping[str, Any] = data if isinstance(data, dict) else {}
    code = fields.get("errorCode")
    msg = fields.get("msg")
    if not isinstance(msg, str) or not msg:
        msg = response.reason_phrase or "no message"
    return error_for(
        status,
        code if isinstance(code, str) else None,
        msg,
        data if data is not None else response.text[:500],
        verified=verified,
    )


def backoff_delay(base_s: float, attempt: int) -> float:
    """Exponential with jitter so many clients recovering together do not stampede."""
    return float(base_s * (2**attempt) * random.uniform(0.5, 1.0))


def network_error(exc: Exception, attempt_no: int) -> NetworkError:
    return NetworkError(f"no answer (attempt {attempt_no}): {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class RetryPolicy:
    """Network errors and 5xx are tried again ``retries`` times, after a growing pause."""

    retries: int
    backoff_s: float

    def pause(self, exc: Exception, attempt_no: int) -> float:
        """The pause before trying again after ``exc`` ended attempt ``attempt_no`` (from 1).

        Raises instead what must not be retried, or the last failure: a transport exception
        as ``NetworkError``, anything else as it was.
        """
        error = network_error(exc, attempt_no) if isinstance(exc, RETRYABLE_EXCEPTIONS) else exc
        if isinstance(error, ServerError | NetworkError) and attempt_no <= self.retries:
            return backoff_delay(self.backoff_s, attempt_no - 1)
        if error is exc:
            raise exc
        raise error from exc


TransportT = TypeVar("TransportT")
HttpT = TypeVar("HttpT")


class ClientBase(Generic[TransportT, HttpT]):
    """The options and the parts of both clients that do no I/O; each opens its own httpx
    client (``_open``) and sends through it."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        webhook_secret: str | Sequence[str] | None = None,
        timeout_s: float = 10,
        retries: int = 3,
        transport: TransportT | None = None,
        *,
        backoff_s: float = 0.25,
    ) -> None:
        if retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0, timeout_s > 0")
        self._exchange = Exchange(base_url, key_id, secret)
        self._webhook_secret = webhook_secret
        self._retry = RetryPolicy(retries, backoff_s)
        self._http = self._open(transport, httpx.Timeout(timeout_s))

    def _open(self, transport: TransportT | None, timeout: httpx.Timeout) -> HttpT:
        raise NotImplementedError

    def verify_callback(
        self,
        timestamp_header: str | None,
        signature_header: str | None,
        body: bytes,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
    ) -> dict[str, Any]:
        """``verify_callback`` with this client's ``webhook_secret``."""
        if not self._webhook_secret:
            raise RuntimeError("this client was created without a webhook_secret")
        return verify_callback(
            self._webhook_secret, timestamp_header, signature_header, body, tolerance_s
        )
