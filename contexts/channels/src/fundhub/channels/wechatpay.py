"""WeChat Pay APIv3 as a protocol: its signed messages, its encrypted resources, its
notifications as ``ChannelEvent``s, and the signature of our requests. No I/O.

A notification is proven by four headers: ``Wechatpay-Signature`` (SHA256withRSA, base64) over
``timestamp\\nnonce\\nbody\\n`` made with the WeChat Pay *platform* key that
``Wechatpay-Serial`` names (never the merchant's), ``Wechatpay-Timestamp`` within five minutes
of now (the official SDKs' rule, which ``wechatpayv3`` leaves out), and ``Wechatpay-Nonce``.
The resource inside is sealed with AES-256-GCM under the merchant's 32-byte APIv3 key, the
last 16 bytes of the ciphertext being the tag: a wrong key fails the tag. Every size and shape
is bounded before the RSA verification, the one costly step.

Our requests are signed the same way, the other way round: ``METHOD\\nPATH?QUERY\\ntimestamp\\n
nonce\\nbody\\n`` with the merchant's API key, in ``Authorization: WECHATPAY2-SHA256-RSA2048
mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"``; WeChat Pay signs its
answers like its notifications.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fundhub.channels.events import Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.channels.notification import (
    channel_event,
    fen,
    ident,
    malformed,
    obj,
    rfc3339,
    strict_object,
    text,
    unverified,
)
from fundhub.common.signing import rsa_sha256_sign, rsa_sha256_verify

HEADER_TIMESTAMP = "wechatpay-timestamp"
HEADER_NONCE = "wechatpay-nonce"
HEADER_SIGNATURE = "wechatpay-signature"
HEADER_SERIAL = "wechatpay-serial"
HEADER_SIGNATURE_TYPE = "wechatpay-signature-type"
AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
ALGORITHM = "AEAD_AES_256_GCM"
TIMESTAMP_TOLERANCE_S = 300  # "5 minutes or more off" is refused
APIV3_KEY_BYTES = 32
# A real notification is about 1 KiB (a refund's resource is the larger one); this leaves room
# and is all an unauthenticated caller can make the gateway read.
MAX_NOTIFICATION_BYTES = 16 * 1024
_MAX_CIPHERTEXT_B64 = 12 * 1024
_TAG_BYTES = 16
_NONCE_BYTES = 12

EVENT_TRANSACTION_SUCCESS = "TRANSACTION.SUCCESS"
REFUND_EVENTS: dict[str, RefundStatus] = {
    "REFUND.SUCCESS": RefundStatus.SUCCESS,
    "REFUND.ABNORMAL": RefundStatus.ABNORMAL,
    "REFUND.CLOSED": RefundStatus.CLOSED,
}

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{1,1024}={0,2}")
_AUTH_PARAM = re.compile(r'\s*([a-z_]{1,16})="([^"]{0,1024})"\s*')


# --- signed messages -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedHeaders:
    """The four headers that prove a notification (or an answer) came from WeChat Pay."""

    timestamp: str
    nonce: str
    signature: str
    serial: str

    def message(self, body: bytes) -> bytes:
        return signed_message(self.timestamp, self.nonce, body)

    def verifies(self, body: bytes, public_key: RSAPublicKey) -> bool:
        return rsa_sha256_verify(self.message(body), self.signature, public_key)

    def as_headers(self) -> dict[str, str]:
        return {
            "Wechatpay-Timestamp": self.timestamp,
            "Wechatpay-Nonce": self.nonce,
            "Wechatpay-Signature": self.signature,
            "Wechatpay-Serial": self.serial,
        }


def signed_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """``timestamp\\nnonce\\nbody\\n``: every line ends in a newline, the body's too."""
    return f"{timestamp}\n{nonce}\n".encode("ascii") + body + b"\n"


def sign(
    body: bytes, private_key: RSAPrivateKey, serial: str, timestamp: str, nonce: str
) -> SignedHeaders:
    """Sign as WeChat Pay signs its notifications and answers (the simulator's side)."""
    signature = rsa_sha256_sign(signed_message(timestamp, nonce, body), private_key)
    return SignedHeaders(timestamp, nonce, signature, serial)


def read_signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The four headers (lower-case names), each of a bounded shape; any missing or odd one is
    an unverified notification."""
    values = {
        name: headers.get(name, "")
        for name in (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE, HEADER_SERIAL)
    }
    if not _TIMESTAMP.fullmatch(values[HEADER_TIMESTAMP]):
        raise unverified("Wechatpay-Timestamp missing or not Unix seconds")
    if not _NONCE.fullmatch(values[HEADER_NONCE]):
        raise unverified("Wechatpay-Nonce missing or malformed")
    if not _SIGNATURE.fullmatch(values[HEADER_SIGNATURE]):
        raise unverified("Wechatpay-Signature missing or not base64")
    if not _SERIAL.fullmatch(values[HEADER_SERIAL]):
        raise unverified("Wechatpay-Serial missing or malformed")
    kind = headers.get(HEADER_SIGNATURE_TYPE)
    if kind is not None and kind != AUTH_SCHEMA:
        raise unverified("Wechatpay-Signature-Type is not WECHATPAY2-SHA256-RSA2048")
    return SignedHeaders(
        timestamp=values[HEADER_TIMESTAMP],
        nonce=values[HEADER_NONCE],
        signature=values[HEADER_SIGNATURE],
        serial=values[HEADER_SERIAL],
    )


def check_timestamp(
    signed: SignedHeaders, now: datetime, tolerance_s: int = TIMESTAMP_TOLERANCE_S
) -> None:
    """Refuse a signature made ``tolerance_s`` or more from now: a captured notification
    cannot be replayed later, nor one made for the future."""
    if abs(now.timestamp() - int(signed.timestamp)) >= tolerance_s:
        raise unverified(f"Wechatpay-Timestamp {tolerance_s} s or more from now")


# --- the encrypted resource ----------------------------------------------------------------


def apiv3_key(raw: bytes) -> bytes:
    """The merchant's APIv3 key: 32 bytes (32 ASCII characters, as WeChat Pay has it set)."""
    if len(raw) != APIV3_KEY_BYTES:
        raise ValueError(f"the APIv3 key must be {APIV3_KEY_BYTES} bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class EncryptedResource:
    original_type: str
    ciphertext: bytes  # the encrypted bytes followed by the 16-byte tag
    nonce: str
    associated_data: str

    def decrypt(self, key: bytes) -> bytes:
        """Raises NotificationRefused (unverified) when the tag fails: a wrong APIv3 key, or a
        resource changed on the way."""
        try:
            return AESGCM(key).decrypt(
                self.nonce.encode("ascii"),
                self.ciphertext,
                self.associated_data.encode("utf-8") or None,
            )
        except (InvalidTag, ValueError):
            raise unverified("the resource does not decrypt under the app's APIv3 key") from None


def encrypt_resource(
    plaintext: bytes, key: bytes, nonce: str, associated_data: str, original_type: str
) -> dict[str, str]:
    """The ``resource`` object as WeChat Pay sends it (the simulator's side)."""
    sealed = AESGCM(key).encrypt(
        nonce.encode("ascii"), plaintext, associated_data.encode("utf-8") or None
    )
    return {
        "original_type": original_type,
        "algorithm": ALGORITHM,
        "ciphertext": base64.b64encode(sealed).decode("ascii"),
        "associated_data": associated_data,
        "nonce": nonce,
    }


# --- notifications -------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    id: str
    create_time: datetime
    event_type: str
    resource: EncryptedResource


def parse_notification(body: bytes) -> Notification:
    """The envelope, every field bounded; the resource still sealed."""
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise malformed(f"body: more than {MAX_NOTIFICATION_BYTES} bytes")
    envelope = strict_object(body, "body", max_keys=16)
    event_type = text(envelope, "event_type", 32)
    if event_type != EVENT_TRANSACTION_SUCCESS and event_type not in REFUND_EVENTS:
        raise malformed(f"event_type {event_type!r} is not handled")
    if text(envelope, "resource_type", 32) != "encrypt-resource":
        raise malformed("resource_type: not encrypt-resource")
    resource = obj(envelope, "resource")
    if text(resource, "algorithm", 32) != ALGORITHM:
        raise malformed(f"resource.algorithm: not {ALGORITHM}")
    nonce = text(resource, "nonce", 32)
    if len(nonce.encode("utf-8")) != _NONCE_BYTES or not nonce.isascii():
        raise malformed(f"resource.nonce: not {_NONCE_BYTES} ASCII characters")
    encoded = text(resource, "ciphertext", _MAX_CIPHERTEXT_B64)
    try:
        ciphertext = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise malformed("resource.ciphertext: not base64") from None
    if len(ciphertext) <= _TAG_BYTES:
        raise malformed("resource.ciphertext: shorter than its tag")
    return Notification(
        id=ident(envelope, "id"),
        create_time=rfc3339(envelope, "create_time"),
        event_type=event_type,
        resource=EncryptedResource(
            original_type=text(resource, "original_type", 32),
            ciphertext=ciphertext,
            nonce=nonce,
            associated_data=text(resource, "associated_data", 64, required=False),
        ),
    )


def event_of(notification: Notification, plaintext: bytes, appid: str) -> ChannelEvent:
    """The decrypted resource as a ``ChannelEvent``. ``appid``: the app whose APIv3 key opened
    it (a refund's resource names only the mchid)."""
    resource = strict_object(plaintext, "resource", max_keys=32)
    if notification.event_type == EVENT_TRANSACTION_SUCCESS:
        return _transaction_event(notification, resource)
    return _refund_event(notification, resource, appid)


def _transaction_event(notification: Notification, resource: Mapping[str, object]) -> ChannelEvent:
    if notification.resource.original_type != "transaction":
        raise malformed("resource.original_type: not transaction")
    if text(resource, "trade_state", 16) != "SUCCESS":
        raise malformed("TRANSACTION.SUCCESS whose trade_state is not SUCCESS")
    amount = obj(resource, "amount")
    currency = text(amount, "currency", 8, required=False) or "CNY"
    if currency != "CNY":
        raise malformed(f"amount.currency {currency!r}: only CNY is taken")
    return channel_event(
        channel=Channel.WECHATPAY,
        kind=EventKind.PAYMENT,
        app_id=ident(resource, "appid"),
        merchant_ref=ident(resource, "mchid"),
        notification_id=notification.id,
        out_trade_no=ident(resource, "out_trade_no"),
        transaction_id=ident(resource, "transaction_id"),
        total_fen=fen(amount, "total"),
        occurred_at=rfc3339(resource, "success_time"),
    )


def _refund_event(
    notification: Notification, resource: Mapping[str, object], appid: str
) -> ChannelEvent:
    if notification.resource.original_type != "refund":
        raise malformed("resource.original_type: not refund")
    status = REFUND_EVENTS[notification.event_type]
    if text(resource, "refund_status", 16) != status.value:
        raise malformed(f"{notification.event_type} whose refund_status is not {status.value}")
    amount = obj(resource, "amount")
    occurred = (
        rfc3339(resource, "success_time")
        if status is RefundStatus.SUCCESS
        else notification.create_time
    )
    return channel_event(
        channel=Channel.WECHATPAY,
        kind=EventKind.REFUND,
        app_id=appid,
        merchant_ref=ident(resource, "mchid"),
        notification_id=notification.id,
        out_trade_no=ident(resource, "out_trade_no"),
        transaction_id=ident(resource, "transaction_id"),
        total_fen=fen(amount, "total"),
        occurred_at=occurred,
        out_refund_no=ident(resource, "out_refund_no"),
        refund_id=ident(resource, "refund_id"),
        refund_fen=fen(amount, "refund"),
        refund_status=status,
    )


def check_owner(event: ChannelEvent, appid: str, mchid: str) -> None:
    """A notification that is genuine but for another app (another mchid or appid) is not
    ours to take, even though a key we trust opened it."""
    if event.merchant_ref != mchid or event.app_id != appid:
        raise unverified("a notification for another WeChat Pay app")


# --- our requests ----------------------------------------------------------------------------


def request_message(method: str, url_path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """``METHOD\\nPATH?QUERY\\ntimestamp\\nnonce\\nbody\\n`` (an empty body is an empty line)."""
    return f"{method.upper()}\n{url_path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def authorization(
    mchid: str,
    serial_no: str,
    private_key: RSAPrivateKey,
    method: str,
    url_path: str,
    body: bytes,
    timestamp: str,
    nonce: str,
) -> str:
    """The ``Authorization`` header of one request, signed with the merchant's API key."""
    signature = rsa_sha256_sign(
        request_message(method, url_path, timestamp, nonce, body), private_key
    )
    return (
        f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


@dataclass(frozen=True)
class Authorization:
    mchid: str
    nonce: str
    signature: str
    timestamp: str
    serial_no: str

    def verifies(self, method: str, url_path: str, body: bytes, public_key: RSAPublicKey) -> bool:
        message = request_message(method, url_path, self.timestamp, self.nonce, body)
        return rsa_sha256_verify(message, self.signature, public_key)


def parse_authorization(header: str) -> Authorization:
    """An ``Authorization`` header read back (the simulator's side); ValueError if it is not
    one of ours."""
    schema, _, rest = header.partition(" ")
    if schema != AUTH_SCHEMA or len(rest) > 2048:
        raise ValueError("not a WECHATPAY2-SHA256-RSA2048 authorization")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_PARAM.fullmatch(part)
        if match is None or match.group(1) in fields:
            raise ValueError("malformed authorization parameter")
        fields[match.group(1)] = match.group(2)
    try:
        auth = Authorization(
            mchid=fields["mchid"],
            nonce=fields["nonce_str"],
            signature=fields["signature"],
            timestamp=fields["timestamp"],
            serial_no=fields["serial_no"],
        )
    except KeyError as exc:
        raise ValueError(f"authorization without {exc.args[0]}") from None
    if not _TIMESTAMP.fullmatch(auth.timestamp):
        raise ValueError("authorization timestamp is not Unix seconds")
    return auth


def jsapi_pay_sign(
    appid: str, timestamp: str, nonce: str, package: str, private_key: RSAPrivateKey
) -> str:
    """``paySign`` of wx.requestPayment: ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``."""
    message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
    return rsa_sha256_sign(message, private_key)
