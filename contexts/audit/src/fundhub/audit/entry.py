"""One audit entry: who (an API key, an operator, or nobody known yet), from where, when, what
(route and masked parameters), the result (HTTP status and errorCode), how long it took, and the
correlation id that ties it to the logs. Its JSON form is what the hash chain covers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fundhub.audit.masking import mask, mask_headers
from fundhub.common.clock import ISO_UTC_US_FORMAT
from fundhub.common.forms import form_value

KIND_HTTP = "http"
KIND_OPERATOR = "operator"
# Bodies larger than this are described (size), not opened: the audit must not multiply the
# work an unauthenticated caller can make the gateway do.
MAX_PARSED_BODY = 64 * 1024
KEPT_HEADERS = (
    "x-api-key",
    "x-timestamp",
    "x-nonce",
    "x-signature",
    "content-type",
    # WeChat Pay's notifications are signed in headers (the signature itself is masked).
    "wechatpay-serial",
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
)
_KEPT_RAW = {name.encode("latin-1"): name for name in KEPT_HEADERS}


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: datetime
    kind: str  # http | operator
    actor: str | None  # the API key id, or the operator's name; None when not known
    source: str  # the client's address, or the operator's host
    route: str  # "POST /v1/payouts" (the route's template), or the command
    params: dict[str, Any]  # masked
    status: int  # HTTP status; for a command 0 when it succeeded
    error_code: str | None
    latency_ms: float
    correlation_id: str

    def to_json(self) -> dict[str, Any]:
        return entry_json(
            id=self.id,
            at=format_at(self.at),
            kind=self.kind,
            actor=self.actor,
            source=self.source,
            route=self.route,
            params=self.params,
            status=self.status,
            error_code=self.error_code,
            latency_ms=self.latency_ms,
            correlation_id=self.correlation_id,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(
            id=str(data["id"]),
            at=parse_at(str(data["at"])),
            kind=str(data["kind"]),
            actor=data.get("actor"),
            source=str(data["source"]),
            route=str(data["route"]),
            params=dict(data.get("params") or {}),
            status=int(data["status"]),
            error_code=data.get("errorCode"),
            latency_ms=float(data["latencyMs"]),
            correlation_id=str(data["correlationId"]),
        )


def entry_json(
    *,
    id: str,
    at: str,
    kind: str,
    actor: str | None,
    source: str,
    route: str,
    params: dict[str, Any],
    status: int,
    error_code: str | None,
    latency_ms: float,
    correlation_id: str,
) -> dict[str, Any]:
    """An entry's JSON form, the one the chain hashes (``at`` as ``format_at`` writes it).

    The gateway builds it directly for every answer, without an ``AuditEntry`` in between; the
    audit-writer reads it back (``AuditEntry.from_json``), so both ends share this one shape."""
    return {
        "id": id,
        "at": at,
        "kind": kind,
        "actor": actor,
        "source": source,
        "route": route,
        "params": params,
        "status": status,
        "errorCode": error_code,
        "latencyMs": latency_ms,
        "correlationId": correlation_id,
    }


def format_at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(ISO_UTC_US_FORMAT)


def parse_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def body_params(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as masked parameters: JSON or a form opened, anything else described."""
    if not body:
        return {}
    if len(body) > MAX_PARSED_BODY:
        return {"_body": f"{len(body)} bytes, not kept"}
    if "application/x-www-form-urlencoded" in content_type:
        try:
            return {"body": mask(form_fields(body.decode()))}
        except UnicodeDecodeError:
            return {"_body": f"{len(body)} bytes, not UTF-8"}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"_body": f"{len(body)} bytes, not JSON"}
    return {"body": mask(document)}


def form_fields(text: str) -> dict[str, str]:
    """``dict(parse_qsl(text, keep_blank_values=True))``, the same pairs, without its cost for
    the values (most) that need no decoding: the channels' notifications are forms, audited at
    their full rate."""
    fields: dict[str, str] = {}
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            fields[_form_decoded(name)] = _form_decoded(value)
    return fields


def _form_decoded(text: str) -> str:
    return form_value(text, errors="replace")


def error_code_of(answer_body: bytes) -> str | None:
    """The ``errorCode`` of one of our answers (all are small JSON objects), if it has one."""
    if not answer_body.startswith(b"{") or len(answer_body) > MAX_PARSED_BODY:
        return None
    try:
        document = orjson.loads(answer_body)
    except orjson.JSONDecodeError:
        return None
    code = document.get("errorCode") if isinstance(document, dict) else None
    return str(code) if code else None


def kept_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers an entry keeps (``KEPT_HEADERS``; the last of repeated ones), from ASGI's
    raw list, decoding only those."""
    kept: dict[str, str] = {}
    for name, value in raw:
        known = _KEPT_RAW.get(name)
        if known is not None:
            kept[known] = value.decode("latin-1")
    return kept


def http_params(path: str, query: bytes, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What an HTTP request said, masked: path, query, the signing headers and the body."""
    params: dict[str, Any] = {"path": path}
    if query:
        params["query"] = mask(dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)))
    kept = {name: value for name, value in headers.items() if name in KEPT_HEADERS}
    if kept:
        params["headers"] = mask_headers(kept)
    params.update(body_params(body, headers.get("content-type", "")))
    return params
