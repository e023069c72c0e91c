"""Where a key may be used from: over TLS with its own client certificate, from its ranges.

Pure. A signature proves who spoke; these checks make a leaked secret useless without the
client's private key (mutual TLS) or outside the client's network (allowlist).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fundhub.access.keys import ApiKey
from fundhub.common.cidrs import address_allowed

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class InvalidBinding(ValueError):
    """A certificate or fingerprint that cannot be bound to a key; the message says why."""


def parse_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as tools print it (``AB:CD:…`` or plain hex), as stored."""
    value = text.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(value):
        raise InvalidBinding("a certificate fingerprint is 64 hex digits (SHA-256)")
    return value


def certificate_fingerprint(pem: bytes) -> str:
    """The SHA-256 of the certificate's DER form: what the gateway sees in the handshake."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise InvalidBinding(f"not a PEM certificate: {exc}") from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def transport_refusal(
    key: ApiKey, client_address: str | None, client_cert_sha256: str | None
) -> str | None:
    """Why this key may not be used over this connection, or None when it may."""
    if key.client_cert_sha256 is not None and (
        client_cert_sha256 is None
        or not hmac.compare_digest(key.client_cert_sha256, client_cert_sha256)
    ):
        return "client certificate missing or not the one bound to the key"
    if not address_allowed(key.allowed_cidrs, client_address):
        return "client address outside the key's allowed ranges"
    return None
