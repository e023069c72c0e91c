"""The master key that seals API secrets: from FUNDHUB_MASTER_KEY, or the dev key file in dev."""

from __future__ import annotations

from fundhub.cli.devstack.devkeys import ensure_master_key_file
from fundhub.cli.devstack.paths import dev_dir
from fundhub.cli.errors import UsageError
from fundhub.common.config import Settings
from fundhub.common.sealing import SealingError, seal


def resolve_master_key(settings: Settings) -> str:
    """The configured key (validated); in dev mode fall back to ``.data/dev/master.key``."""
    key = settings.master_key
    if not key and settings.env == "dev":
        key = ensure_master_key_file(dev_dir())
    if not key:
        raise UsageError(
            f"no master key: set FUNDHUB_MASTER_KEY (base64 of 32 bytes); "
            f"it is required when FUNDHUB_ENV={settings.env}"
        )
    try:
        seal(b"", key)
    except SealingError as exc:
        raise UsageError(f"FUNDHUB_MASTER_KEY is unusable: {exc}") from None
    return key


def resolve_master_keys(settings: Settings) -> list[str]:
    """The current key (which seals) and, during a rotation, the previous one (which opens)."""
    keys = [resolve_master_key(settings)]
    previous = settings.master_key_previous
    if previous:
        try:
            seal(b"", previous)
        except SealingError as exc:
            raise UsageError(f"FUNDHUB_MASTER_KEY_PREVIOUS is unusable: {exc}") from None
        keys.append(previous)
    return keys
