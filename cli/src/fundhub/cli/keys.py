"""API keys and the master key as an operator sees them: listings without secrets, rotation."""

from __future__ import annotations

from typing import Any

from fundhub.access.keys import iso
from fundhub.access.store import KeySummary, reseal_access_secrets
from fundhub.channels.apps import reseal_channel_secrets
from fundhub.cli.errors import CliError
from fundhub.cli.tables import render_table
from fundhub.common.db import Connection
from fundhub.common.sealing import SealingError


def summary_json(key: KeySummary) -> dict[str, Any]:
    return {
        "keyId": key.key_id,
        "name": key.name,
        "environment": key.environment,
        "state": key.state,
        "scopes": key.scopes,
        "accounts": key.accounts,
        "createdAt": iso(key.created_at),
        "expiresAt": None if key.expires_at is None else iso(key.expires_at),
        "revokedAt": None if key.revoked_at is None else iso(key.revoked_at),
        # The current secrets are valid as long as the key; replaced ones until their overlap ends.
        "secrets": [
            {"kind": "api", "current": True, "validUntil": None},
            {"kind": "webhook", "current": True, "validUntil": None},
            *(
                {"kind": kind, "current": False, "validUntil": iso(until)}
                for kind, until in key.retiring
            ),
        ],
    }


def summaries_table(keys: list[KeySummary]) -> str:
    rows = [
        [
            k.key_id,
            k.name,
            k.environment,
            k.state,
            ",".join(k.scopes),
            ",".join(k.accounts),
            "-" if k.expires_at is None else iso(k.expires_at),
            ", ".join(f"old {kind} until {iso(until)}" for kind, until in k.retiring) or "-",
        ]
        for k in keys
    ]
    headers = ["KEY", "NAME", "ENV", "STATE", "SCOPES", "ACCOUNTS", "EXPIRES", "OVERLAPS"]
    return render_table(headers, rows, right=set())


async def reseal_everything(conn: Connection, master_keys: list[str]) -> int:
    """Every stored secret under ``master_keys[0]``, in one transaction: all or nothing."""
    try:
        async with conn.transaction():
            access = await reseal_access_secrets(conn, master_keys)
            return access + await reseal_channel_secrets(conn, master_keys)
    except SealingError:
        raise CliError(
            "a stored secret opens under neither FUNDHUB_MASTER_KEY nor "
            "FUNDHUB_MASTER_KEY_PREVIOUS; nothing was changed"
        ) from None
