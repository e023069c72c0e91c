"""Upstream request authentication: HMAC-SHA256 over method, path, query, time, nonce and body.

See README.md ("Signing requests") for the string to sign and a worked example.
"""

from __future__ import annotations

import hashlib
import time

import structlog
from starlette.requests import Request

from fundhub.access.binding import transport_refusal
from fundhub.access.keys import ApiKey
from fundhub.access.store import ApiKeyStore, purge_nonces, take_nonce
from fundhub.common.clock import utcnow
from fundhub.common.db import Pool
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.signing import api_string_to_sign_of_digest, canonical_query
from fundhub.gateway.metrics import AUTH_FAILURES
from fundhub.gateway.rate_limits import limit_key
from fundhub.gateway.spool import spooled_of
from fundhub.gateway.transport import client_cert_sha256

log = structlog.get_logger(__name__)

HEADER_KEY = "x-api-key"
HEADER_TIMESTAMP = "x-timestamp"
HEADER_NONCE = "x-nonce"
HEADER_SIGNATURE = "x-signature"
# One text for an unknown key and a bad signature: a caller must not learn which key ids exist
# (the log keeps the difference for operators).
BAD_SIGNATURE_TEXT = "unknown API key or signature does not match"


def _refuse(error: ErrorCode, message: str, **context: object) -> FundhubError:
    AUTH_FAILURES.labels(error.code).inc()
    log.warning("request_refused", code=error.code, reason=message, **context)
    return FundhubError(error, message)


def _valid_nonce(nonce: str) -> bool:
    return 16 <= len(nonce) <= 64 and nonce.isascii() and nonce.isprintable() and " " not in nonce


class Authenticator:
    def __init__(self, pool: Pool, keys: ApiKeyStore, tolerance_s: int) -> None:
        self._pool = pool
        self._keys = keys
        self._tolerance_s = tolerance_s

    async def authenticate(self, request: Request, *, take_nonce_now: bool = True) -> ApiKey:
        """The caller's key, once signature, time and (unless deferred) nonce all hold.

        ``take_nonce_now=False`` leaves recording the nonce to the caller, who must do it in the
        same statement as the request's effect (see ``payouts.admission``): one round trip
        less, and a request refused afterwards for its content leaves no trace.
        """
        headers = request.headers
        key_id = headers.get(HEADER_KEY)
        timestamp = headers.get(HEADER_TIMESTAMP)
        nonce = headers.get(HEADER_NONCE)
        signature = headers.get(HEADER_SIGNATURE)
        if not (key_id and timestamp and nonce and signature):
            raise _refuse(
                ErrorCode.BAD_SIGNATURE,
                "missing X-Api-Key, X-Timestamp, X-Nonce or X-Signature header",
            )
        if not _valid_nonce(nonce):
            raise _refuse(ErrorCode.BAD_SIGNATURE, "X-Nonce must be 16-64 printable characters")
        key = await self._keys.get(key_id)
        if key is None:
            raise _refuse(
                ErrorCode.BAD_SIGNATURE, BAD_SIGNATURE_TEXT, key_id=key_id, cause="unknown key"
            )
        spooled = spooled_of(request.scope)  # a file upload: hashed as it was spooled
        body_sha256 = (
            hashlib.sha256(await request.body()).hexdigest() if spooled is None else spooled.sha256
        )
        query = canonical_query(request.query_params.multi_items())
        # Any of the key's valid secrets (two during a rotation's overlap); the key comes back
        # narrowed to the one that signed, so the answer is signed with it too.
        signer = key.signed_by(
            api_string_to_sign_of_digest(
                request.method, request.url.path, query, timestamp, nonce, body_sha256
            ),
            signature,
            utcnow(),
        )
        if signer is None:
            raise _refuse(
                ErrorCode.BAD_SIGNATURE, BAD_SIGNATURE_TEXT, key_id=key_id, cause="bad signature"
            )
        key = signer
        _check_transport(request, key)
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self._tolerance_s:
            raise _refuse(
                ErrorCode.TIMESTAMP_SKEW,
                f"X-Timestamp must be Unix seconds within {self._tolerance_s}s of now",
                key_id=key_id,
            )
        await limit_key(request, key)
        if take_nonce_now and not await take_nonce(self._pool, key_id, nonce):
            raise nonce_replayed(key_id)
        structlog.contextvars.bind_contextvars(key_id=key_id)
        request.state.api_key = key
        return key

    async def purge_nonces(self) -> int:
        """Nonces older than twice the window can never be replayed: the timestamp check refuses."""
        return await purge_nonces(self._pool, float(self._tolerance_s * 2))


def _check_transport(request: Request, key: ApiKey) -> None:
    """The key's client certificate and address ranges (README "Transport"). Refused exactly as
    a bad signature, so a leaked secret tried from elsewhere learns nothing."""
    client = request.scope.get("client")
    reason = transport_refusal(
        key, client[0] if client else None, client_cert_sha256(request.scope)
    )
    if reason is not None:
        AUTH_FAILURES.labels(ErrorCode.BAD_SIGNATURE.code).inc()
        log.warning(
            "request_refused", code=ErrorCode.BAD_SIGNATURE.code, reason=reason, key_id=key.key_id
        )
        raise FundhubError(ErrorCode.BAD_SIGNATURE, BAD_SIGNATURE_TEXT)


def request_nonce(request: Request) -> str:
    """The X-Nonce of a request ``authenticate`` has checked."""
    return request.headers[HEADER_NONCE]


def nonce_replayed(key_id: str) -> FundhubError:
    return _refuse(ErrorCode.NONCE_REPLAYED, "X-Nonce was used before", key_id=key_id)


def require_scope(key: ApiKey, scope: str) -> None:
    if scope not in key.scopes:
        raise _refuse(ErrorCode.SCOPE_FORBIDDEN, f"scope {scope} required", key_id=key.key_id)


def require_account(key: ApiKey, account_id: str) -> None:
    if not key.may_access(account_id):
        raise _refuse(
            ErrorCode.ACCOUNT_FORBIDDEN,
            "this key was not given that account",
            key_id=key.key_id,
            account_id=account_id,
        )


async def authenticated(request: Request, scope: str, *, take_nonce_now: bool = True) -> ApiKey:
    """The caller's key, holding ``scope``; the nonce is recorded now unless the caller records
    it with the request's effect (see ``Authenticator.authenticate``)."""
    auth: Authenticator = request.app.state.authenticator
    key = await auth.authenticate(request, take_nonce_now=take_nonce_now)
    require_scope(key, scope)
    return key
