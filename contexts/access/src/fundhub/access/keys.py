"""API keys for upstream systems: what a key may do, and a new key's parts. Pure, no I/O.

A key names its scopes (the kinds of request it may make) and the accounts it may touch; its
secret signs every request and its webhook secret signs the callbacks sent to the client, so a
leaked callback receiver cannot call the API.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from fundhub.common.cidrs import Network

SCOPE_BALANCE_READ = "balance:read"
SCOPE_PAYOUTS_WRITE = "payouts:write"
SCOPE_PAYOUTS_READ = "payouts:read"
SCOPE_ADMIN = "admin"
# The one list of scopes a key may be given (README.md, "Operator command line").
SCOPES: frozenset[str] = frozenset(
    {SCOPE_BALANCE_READ, SCOPE_PAYOUTS_WRITE, SCOPE_PAYOUTS_READ, SCOPE_ADMIN}
)
ALL_ACCOUNTS = "*"
KEY_ID_PREFIX = "ak_"
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_NAME_MAX = 100


class InvalidKeySpec(ValueError):
    """A key asked for with a bad name, scope or account; the message says which."""


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway holds it while it serves a request (its secret unsealed)."""

    key_id: str
    secret: str = field(repr=False)
    scopes: frozenset[str]
    accounts: frozenset[str]
    # Where it may be used from (``access.binding``): a client certificate, address ranges.
    client_cert_sha256: str | None = None
    allowed_cidrs: tuple[Network, ...] = ()

    def may_access(self, account_id: str) -> bool:
        return ALL_ACCOUNTS in self.accounts or account_id in self.accounts


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

    def as_json(self) -> dict[str, Any]:
        """The one-time output: the only place the secrets ever leave this process."""
        return {"keyId": self.key_id, "secret": self.secret, "webhookSecret": self.webhook_secret}


def new_api_key(name: str, scopes: str, accounts: str) -> NewApiKey:
    return NewApiKey(
        key_id=new_key_id(),
        name=parse_name(name),
        scopes=parse_scopes(scopes),
        accounts=parse_accounts(accounts),
        secret=new_secret(),
        webhook_secret=new_secret(),
    )
