"""API keys for upstream systems: validation and generation are pure; storing takes a connection."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from fundhub.cli.errors import UsageError
from fundhub.common.sealing import seal

# The one list of scopes a key may be given (README.md, "Operator command line").
API_KEY_SCOPES: frozenset[str] = frozenset(
    {"balance:read", "payouts:write", "payouts:read", "admin"}
)
ALL_ACCOUNTS = "*"
KEY_ID_PREFIX = "ak_"
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_NAME_MAX = 100


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({item.strip() for item in text.split(",") if item.strip()})
    if not scopes:
        raise UsageError("give at least one scope with --scopes")
    unknown = [s for s in scopes if s not in API_KEY_SCOPES]
    if unknown:
        allowed = ", ".join(sorted(API_KEY_SCOPES))
        raise UsageError(f"unknown scope {unknown[0]!r} (allowed: {allowed})")
    return scopes


def parse_accounts(text: str) -> list[str]:
    """Comma-separated account ids, or ``*`` alone for every account."""
    accounts = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not accounts:
        raise UsageError("give at least one account with --accounts (or '*' for all)")
    if ALL_ACCOUNTS in accounts:
        if len(accounts) > 1:
            raise UsageError("'*' means every account; do not combine it with account ids")
        return [ALL_ACCOUNTS]
    bad = [a for a in accounts if not _ACCOUNT.fullmatch(a)]
    if bad:
        raise UsageError(f"invalid account id {bad[0]!r}")
    return accounts


def parse_name(text: str) -> str:
    name = text.strip()
    if not name or len(name) > _NAME_MAX:
        raise UsageError(f"--name must be 1 to {_NAME_MAX} characters")
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
    # Signs the payout callbacks sent to this client; apart from ``secret``, so a leaked
    # callback receiver cannot call the API.
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


async def insert_api_key(conn: Any, key: NewApiKey, master_key: str) -> None:
    """Store the key with both secrets sealed under the master key (never in clear)."""
    await conn.execute(
        "INSERT INTO api_keys"
        " (key_id, name, secret_sealed, scopes, accounts, webhook_secret_sealed)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        key.key_id,
        key.name,
        seal(key.secret.encode("ascii"), master_key),
        key.scopes,
        key.accounts,
        seal(key.webhook_secret.encode("ascii"), master_key),
    )
