"""Secrets at rest: AES-256-GCM under a master key that lives only in the environment.

A blob names the key that sealed it (version 2: the first 8 bytes of the key's SHA-256), so
during a master-key rotation a service given the new key and the previous one
(``FUNDHUB_MASTER_KEY_PREVIOUS``) opens every blob with the right key at once, and an operator
can tell which rows are still under the old key. Version 1 blobs (no key id) stay readable: each
offered key is tried in turn.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_V1 = b"\x01"
_V2 = b"\x02"
_KEY_ID_LEN = 8
_NONCE_LEN = 12
_TAG_LEN = 16

MasterKeys = str | Sequence[str]


class SealingError(ValueError):
    pass


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _raw(master_key: str) -> bytes:
    try:
        raw = base64.b64decode(master_key, validate=True)
    except ValueError as exc:
        raise SealingError("master key is not base64") from exc
    if len(raw) != 32:
        raise SealingError("master key must be 32 bytes")
    return raw


def key_id(master_key: str) -> bytes:
    """What a version 2 blob records of the key that sealed it (not enough to guess the key)."""
    return hashlib.sha256(_raw(master_key)).digest()[:_KEY_ID_LEN]


def _as_list(master_keys: MasterKeys) -> list[str]:
    keys = [master_keys] if isinstance(master_keys, str) else [k for k in master_keys if k]
    if not keys:
        raise SealingError("no master key")
    return keys


def seal(plaintext: bytes, master_key: MasterKeys) -> bytes:
    """Sealed under the first key given (the current one)."""
    current = _as_list(master_key)[0]
    header = _V2 + key_id(current)
    nonce = os.urandom(_NONCE_LEN)
    return header + nonce + AESGCM(_raw(current)).encrypt(nonce, plaintext, header)


def sealed_by(blob: bytes, master_key: str) -> bool:
    """True when ``blob`` is a version 2 blob sealed under ``master_key``."""
    return blob.startswith(_V2) and blob[1 : 1 + _KEY_ID_LEN] == key_id(master_key)


def unseal(blob: bytes, master_key: MasterKeys) -> bytes:
    """Open with whichever of the keys sealed it (current first, then previous ones)."""
    keys = _as_list(master_key)
    if blob.startswith(_V2) and len(blob) >= 1 + _KEY_ID_LEN + _NONCE_LEN + _TAG_LEN:
        header = blob[: 1 + _KEY_ID_LEN]
        nonce = blob[len(header) : len(header) + _NONCE_LEN]
        body = blob[len(header) + _NONCE_LEN :]
        candidates = [k for k in keys if key_id(k) == header[1:]]
        aad = header
    elif blob.startswith(_V1) and len(blob) >= 1 + _NONCE_LEN + _TAG_LEN:
        nonce = blob[1 : 1 + _NONCE_LEN]
        body = blob[1 + _NONCE_LEN :]
        candidates = keys
        aad = _V1
    else:
        raise SealingError("not a sealed secret")
    for candidate in candidates:
        try:
            return AESGCM(_raw(candidate)).decrypt(nonce, body, aad)
        except SealingError:
            raise
        except Exception:  # InvalidTag: wrong key or tampered blob; try the next key
            continue
    raise SealingError("cannot unseal: wrong master key or corrupted secret")
