"""Signatures: RSA2 for the bank's protocol, HMAC-SHA256 for our own API and callbacks.

Pure functions over bytes and keys; which key belongs to whom is the caller's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

# --- RSA2 (SHA256withRSA, PKCS#1 v1.5, base64): the bank's notifications --------------------


def rsa2_signing_string(params: Mapping[str, Any], excludes: Collection[str] = ("sign",)) -> bytes:
    """The bytes the bank signs: non-empty parameters but the excluded, sorted, ``k=v&k=v``.

    None and "" count as empty and are left out, as the bank's SDK does. Values must be strings:
    a number's text form is ambiguous across languages, so the caller refuses them first.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if key in excludes or value is None or value == "":
            continue
        if not isinstance(value, str):
            raise TypeError(f"parameter {key} is not a string")
        pairs.append((key, value))
    pairs.sort()
    return "&".join(f"{key}={value}" for key, value in pairs).encode("utf-8")


def rsa2_sign(
    params: Mapping[str, Any],
    private_key: str | bytes | RSAPrivateKey,
    excludes: Collection[str] = ("sign",),
) -> str:
    """Sign like the bank does; the simulator and tests use it to produce genuine signatures."""
    key = private_key if isinstance(private_key, RSAPrivateKey) else load_private_key(private_key)
    signature = key.sign(rsa2_signing_string(params, excludes), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa2_verify(
    params: Mapping[str, Any],
    signature_b64: str,
    public_key: RSAPublicKey,
    excludes: Collection[str] = ("sign",),
) -> bool:
    """True only for a valid signature; malformed base64 is just a failed verification."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(
            signature, rsa2_signing_string(params, excludes), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


def rsa_sha256_sign(message: bytes, private_key: RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over raw bytes, base64: the channels sign messages built
    their own way (WeChat Pay's lines, Alipay's response JSON), not a parameter map."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_sha256_verify(message: bytes, signature_b64: str, public_key: RSAPublicKey) -> bool:
    """True only for a valid signature over ``message``; malformed base64 is a failure."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@lru_cache(maxsize=256)
def load_public_key(pem: str) -> RSAPublicKey:
    """Parse a bank's public key once per distinct text (verification runs per request).

    Besides PEM, the bare base64 of the DER SubjectPublicKeyInfo is accepted: banks commonly
    hand their key out in that form and operators paste it as given.
    """
    text = pem.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
    else:
        try:
            der = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not a PEM or base64 DER public key") from exc
        key = serialization.load_der_public_key(der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


@lru_cache(maxsize=16)
def load_private_key(pem: str | bytes) -> RSAPrivateKey:
    """Parse an unencrypted PEM private key (PKCS#8 or PKCS#1); refuse non-RSA keys.

    Cached: parsing validates the key (~50 ms), far more than a signature (~1 ms)."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def generate_rsa_keypair(bits: int = 2048) -> tuple[str, str]:
    """A fresh key pair as (private PEM PKCS#8, public PEM SubjectPublicKeyInfo)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


# --- HMAC-SHA256 (lowercase hex): our API, its responses and webhooks -----------------------


def _percent_encode(text: str) -> str:
    # RFC 3986: only A-Z a-z 0-9 - . _ ~ stay; everything else is %XX (uppercase) of its UTF-8.
    return quote(text, safe="~", encoding="utf-8", errors="strict")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The query string as signed: encoded pairs sorted by name then value, ``k=v&k=v``.

    Sorting is on the encoded (pure ASCII) text so every client language orders alike.
    """
    encoded = sorted((_percent_encode(name), _percent_encode(value)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def api_string_to_sign(
    method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Six lines: method, path, canonical query, timestamp, nonce, hex SHA-256 of the body."""
    body_hash = hashlib.sha256(body).hexdigest()
    return api_string_to_sign_of_digest(method, path, query, timestamp, nonce, body_hash)


def api_string_to_sign_of_digest(
    method: str, path: str, query: str, timestamp: str, nonce: str, body_sha256: str
) -> str:
    """As ``api_string_to_sign``, the body's hex SHA-256 given (a body spooled to disk, hashed
    as it was read)."""
    return "\n".join((method.upper(), path, query, timestamp, nonce, body_sha256))


def api_signature(secret: str, string_to_sign: str) -> str:
    return hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def sign_api_request(
    secret: str,
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, str]],
    timestamp: str,
    nonce: str,
    body: bytes,
) -> str:
    """What a client puts in its signature header (also used by the CLI and the tests)."""
    string_to_sign = api_string_to_sign(
        method, path, canonical_query(query_pairs), timestamp, nonce, body
    )
    return api_signature(secret, string_to_sign)


def verify_hex_signature(expected_hex: str, given: str) -> bool:
    """Constant-time comparison; ``expected_hex`` is our lowercase hex, ``given`` is untrusted."""
    return hmac.compare_digest(expected_hex.encode("utf-8"), given.encode("utf-8"))


def body_signature(secret: str, body: bytes) -> str:
    """Signature of a response body, so clients can tell our answers from forgeries."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Signature of a callback: HMAC over ``timestamp + "." + body`` binds the time to the body."""
    message = timestamp.encode("utf-8") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
