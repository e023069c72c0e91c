"""Secrets at rest: AES-256-GCM under a master key that lives only in the environment."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_LEN = 12


class SealingError(ValueError):
    pass


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _key(master_key: str) -> AESGCM:
    try:
        raw = base64.b64decode(master_key, validate=True)
    except ValueError as exc:
        raise SealingError("master key is not base64") from exc
    if len(raw) != 32:
        raise SealingError("master key must be 32 bytes")
    return AESGCM(raw)


def seal(plaintext: bytes, master_key: str) -> bytes:
    nonce = os.urandom(_NONCE_LEN)
    return _VERSION + nonce + _key(master_key).encrypt(nonce, plaintext, _VERSION)


def unseal(blob: bytes, master_key: str) -> bytes:
    if not blob.startswith(_VERSION) or len(blob) < 1 + _NONCE_LEN + 16:
        raise SealingError("not a sealed secret")
    nonce = blob[1 : 1 + _NONCE_LEN]
    try:
        return _key(master_key).decrypt(nonce, blob[1 + _NONCE_LEN :], _VERSION)
    except Exception as exc:  # InvalidTag: wrong key or tampered blob
        raise SealingError("cannot unseal: wrong master key or corrupted secret") from exc
