"""API keys for upstream systems: what a key may do, and a new key's parts. Pure, no I/O.

A key names its scopes (the kinds of request it may make) and the accounts it may touch; its
secret signs every request and its webhook secret signs the callbacks sent to the client, so a
leaked callback receiver cannot call the API.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fundhub.common.cidrs import Network
from fundhub.common.signing import api_signature, verify_hex_signature

SCOPE_BALANCE_READ = "balance:read"
SCOPE_PAYOUTS_WRITE = "payouts:write"
SCOPE_PAYOUTS_READ = "payouts:read"
SCOPE_ADMIN = "admin"
SCOPE_AUDIT_READ = "audit:read"
SCOPE_MERCHANTS_WRITE = "merchants:write"
SCOPE_MERCHANTS_READ = "merchants:read"
SCOPE_ORDERS_WRITE = "orders:write"
SCOPE_ORDERS_READ = "orders:read"
SCOPE_RECON_READ = "reconciliation:read"
SCOPE_RECON_WRITE = "reconciliation:write"
# The one list of scopes a key may be given (README.md, "Operator command line").
SCOPES: frozenset[str] = frozenset(
    {
        SCOPE_BALANCE_READ,
        SCOPE_PAYOUTS_WRITE,
        SCOPE_PAYOUTS_READ,
        SCOPE_ADMIN,
        SCOPE_AUDIT_READ,
        SCOPE_MERCHANTS_WRITE,
        SCOPE_MERCHANTS_READ,
        SCOPE_ORDERS_WRITE,
        SCOPE_ORDERS_READ,
        SCOPE_RECON_READ,
        SCOPE_RECON_WRITE,
    }
)
ALL_ACCOUNTS = "*"
KEY_ID_PREFIX = "ak_"
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_NAME_MAX = 100


# A key is for one environment: a sandbox key never moves real money, a live key is never
# tried against a test system. FUNDHUB_ENV=prod serves live keys only; dev and test sandbox.
Environment = Literal["live", "sandbox"]
LIVE: Environment = "live"
SANDBOX: Environment = "sandbox"
ENVIRONMENTS: frozenset[str] = frozenset({LIVE, SANDBOX})
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidKeySpec(ValueError):
    """A key asked for with a bad name, scope or account; the message says which."""


def environment_served_by(service_env: str) -> Environment:
    """Which keys a service running with FUNDHUB_ENV=``service_env`` accepts."""
    return LIVE if service_env == "prod" else SANDBOX


@dataclass(frozen=True)
class RetiringSecret:
    """A replaced secret, still valid until its overlap ends."""

    secret: str = field(repr=False)
    valid_until: datetime


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway holds it while it serves a request (its secrets unsealed).

    ``secret`` is the current secret, or, on a key returned by ``signed_by``, the one that
    signed the request, so the answer is signed with a secret the client holds.
    """

    key_id: str
    secret: str = field(repr=False)
    scopes: frozenset[str]
    accounts: frozenset[str]
    # Where it may be used from (``access.binding``): a client certificate, address ranges.
    client_cert_sha256: str | None = None
    allowed_cidrs: tuple[Network, ...] = ()
    environment: Environment = SANDBOX
    expires_at: datetime | None = None
    retiring: tuple[RetiringSecret, ...] = field(default=(), repr=False)

    def may_access(self, account_id: str) -> bool:
        return ALL_ACCOUNTS in self.accounts or account_id in self.accounts

    def usable(self, now: datetime, environment: Environment) -> bool:
        """An expired key, or one of the other environment, is as good as unknown."""
        if self.environment != environment:
            return False
        return self.expires_at is None or now < self.expires_at

    def secrets_valid_at(self, now: datetime) -> list[str]:
        """The current secret, then those of a rotation whose overlap has not ended."""
        return [self.secret, *(r.secret for r in self.retiring if now < r.valid_until)]

    def signed_by(self, string_to_sign: str, signature: str, now: datetime) -> ApiKey | None:
        """This key narrowed to the valid secret that made ``signature``, or None."""
        for secret in self.secrets_valid_at(now):
            if verify_hex_signature(api_signature(secret, string_to_sign), signature):
                return self if secret == self.secret else replace(self, secret=secret)
        return None


KeyState = Literal["active", "expired", "revoked"]


def key_state(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> KeyState:
    if revoked_at is not None and revoked_at <= now:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"


def parse_duration(text: str, option: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``30d``."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InvalidKeySpec(f"{option} must be a number and a unit s, m, h or d (e.g. 24h)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


def parse_expiry(expires_in: str | None, expires_at: str | None, now: datetime) -> datetime | None:
    """When a new key stops working: ``--expires-in`` from now or ``--expires-at`` (ISO 8601)."""
    if expires_in and expires_at:
        raise InvalidKeySpec("give --expires-in or --expires-at, not both")
    if expires_in:
        return now + parse_duration(expires_in, "--expires-in")
    if not expires_at:
        return None
    try:
        when = datetime.fromisoformat(expires_at.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidKeySpec("--expires-at must be ISO 8601, e.g. 2027-01-31T00:00:00Z") from None
    if when.tzinfo is None:
        raise InvalidKeySpec("--expires-at needs a time zone (e.g. Z for UTC)")
    if when <= now:
        raise InvalidKeySpec("--expires-at is in the past")
    return when.astimezone(UTC)


def parse_environment(text: str) -> Environment:
    value = text.strip().lower()
    if value == LIVE:
        return LIVE
    if value == SANDBOX:
        return SANDBOX
    raise InvalidKeySpec("--env must be live or sandbox")


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({item.strip() for item in text.split(",") if item.strip()})
    if not scopes:
        raise InvalidKeySpec("give at least one scope with --scopes")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        allowed = ", ".join(sorted(SCOPES))
        raise InvalidKeySpec(f"unknown scope {unknown[0]!r} (allowed: {allowed})")
    return scopes


def parse_accounts(text: str) -> list[str]:
    """Comma-separated account ids, or ``*`` alone for every account."""
    accounts = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not accounts:
        raise InvalidKeySpec("give at least one account with --accounts (or '*' for all)")
    if ALL_ACCOUNTS in accounts:
        if len(accounts) > 1:
            raise InvalidKeySpec("'*' means every account; do not combine it with account ids")
        return [ALL_ACCOUNTS]
    bad = [a for a in accounts if not _ACCOUNT.fullmatch(a)]
    if bad:
        raise InvalidKeySpec(f"invalid account id {bad[0]!r}")
    return accounts


def parse_name(text: str) -> str:
    name = text.strip()
    if not name or len(name) > _NAME_MAX:
        raise InvalidKeySpec(f"--name must be 1 to {_NAME_MAX} characters")
    return name


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_hex(10)


def new_secret() -> str:
    """32 random bytes, URL-safe base64 without padding (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    name: str
    scopes: list[str]
    accounts: list[str]
    secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    environment: Environment = SANDBOX
    expires_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The one-time output: the only place the secrets ever leave this process."""
        return {
            "keyId": self.key_id,
            "secret": self.secret,
            "webhookSecret": self.webhook_secret,
            "environment": self.environment,
            "expiresAt": None if self.expires_at is None else iso(self.expires_at),
        }


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_api_key(
    name: str,
    scopes: str,
    accounts: str,
    environment: Environment = SANDBOX,
    expires_at: datetime | None = None,
) -> NewApiKey:
    return NewApiKey(
        key_id=new_key_id(),
        name=parse_name(name),
        scopes=parse_scopes(scopes),
        accounts=parse_accounts(accounts),
        secret=new_secret(),
        webhook_secret=new_secret(),
        environment=environment,
        expires_at=expires_at,
    )
