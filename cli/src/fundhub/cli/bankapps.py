"""Bank apps: the bank's public key per app id, used to verify its signed notifications."""

from __future__ import annotations

import re
from typing import Any

from cryptography.hazmat.primitives import serialization

from fundhub.cli.errors import UsageError
from fundhub.common.signing import load_public_key

# The app id of the seed documents; the dev stack registers the bank simulator under it.
SEED_BANK_APP_ID = "20210911888888888888888888"
_APP_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # the bank's app_id is string(32)
_PARAM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def parse_app_id(text: str) -> str:
    app_id = text.strip()
    if not _APP_ID.fullmatch(app_id):
        raise UsageError("--app-id must be 1 to 32 letters, digits, '_' or '-'")
    return app_id


def parse_sign_excludes(text: str | None) -> list[str]:
    """Parameters left out of the signed string; ``sign`` itself is always among them."""
    names = [item.strip() for item in (text or "").split(",") if item.strip()]
    bad = [n for n in names if not _PARAM.fullmatch(n)]
    if bad:
        raise UsageError(f"invalid parameter name {bad[0]!r} in --sign-excludes")
    return list(dict.fromkeys(["sign", *names]))


def normalize_public_key(text: str) -> str:
    """Check the text is an RSA public key and return it as a SubjectPublicKeyInfo PEM."""
    try:
        key = load_public_key(text)
    except Exception as exc:  # cryptography raises several types for malformed input
        raise UsageError(f"not a usable RSA public key: {exc}") from None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


async def upsert_bank_app(
    conn: Any, app_id: str, public_key_pem: str, sign_excludes: list[str]
) -> bool:
    """Insert or update; returns True when something changed."""
    status: str = await conn.execute(
        """
        INSERT INTO bank_apps (app_id, public_key_pem, sign_excludes) VALUES ($1, $2, $3)
        ON CONFLICT (app_id) DO UPDATE
           SET public_key_pem = EXCLUDED.public_key_pem,
               sign_excludes = EXCLUDED.sign_excludes,
               updated_at = now()
         WHERE bank_apps.public_key_pem IS DISTINCT FROM EXCLUDED.public_key_pem
            OR bank_apps.sign_excludes IS DISTINCT FROM EXCLUDED.sign_excludes
        """,
        app_id,
        public_key_pem,
        sign_excludes,
    )
    return status.rsplit(" ", 1)[-1] != "0"
