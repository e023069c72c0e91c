"""What the client raises. Catch ``FundhubClientError`` for all of it.

``request_id`` is set on anything ``create_payout`` raises, so a caller left without an answer
(network down, server errors past the retries) can later ask ``find_payout(request_id)`` whether
the payout was taken, instead of guessing and paying twice.
"""

from __future__ import annotations

from typing import Any


class FundhubClientError(Exception):
    """Base of every error this package raises."""

    request_id: str | None = None


class FundhubError(FundhubClientError):
    """The gateway answered with a refusal (HTTP status, ``errorCode``, ``msg``).

    ``verified`` is False for an answer without a signature: the gateway cannot sign a refusal
    of a key it does not know, and proxies answer 502/504 themselves. Such an answer is still
    reported (it can only make the caller stop or retry, never believe money moved).
    """

    def __init__(
        self,
        status: int,
        error_code: str | None,
        msg: str,
        body: Any = None,
        *,
        verified: bool = True,
    ) -> None:
        super().__init__(f"HTTP {status} {error_code or '-'}: {msg}")
        self.status = status
        self.error_code = error_code
        self.msg = msg
        self.body = body
        self.verified = verified


class InvalidRequest(FundhubError):
    """400: a parameter was refused; ``msg`` names the field."""


class Unauthorized(FundhubError):
    """401: bad signature, unknown key, clock skew or a replayed nonce."""


class Forbidden(FundhubError):
    """403: the key lacks the scope or was not given the account."""


class NotFound(FundhubError):
    """404: no such payout or account."""


class Conflict(FundhubError):
    """409: the ``requestId`` was already used with another body."""


class ServerError(FundhubError):
    """5xx: the gateway or a dependency failed; retried before it is raised."""


class NetworkError(FundhubClientError):
    """No answer at all (connection refused or dropped, timeout) after every retry."""


class SignatureMismatch(FundhubClientError):
    """A response or callback whose signature is absent or wrong: do not trust its content."""


class StaleCallback(SignatureMismatch):
    """A correctly signed callback whose timestamp is outside the tolerance (a replay?)."""


class UnexpectedPayload(FundhubClientError):
    """Authentic, but not the JSON shape this client knows (a newer or misconfigured server)."""


_BY_STATUS: dict[int, type[FundhubError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def error_for(
    status: int, error_code: str | None, msg: str, body: Any, *, verified: bool
) -> FundhubError:
    """The most specific class for an HTTP status; other 4xx are plain ``FundhubError``."""
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, FundhubError)
    return cls(status, error_code, msg, body, verified=verified)
