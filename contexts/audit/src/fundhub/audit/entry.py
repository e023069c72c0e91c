"""One audit entry: who (an API key, an operator, or nobody known yet), from where, when, what
(route and masked parameters), the result (HTTP status and errorCode), how long it took, and the
correlation id that ties it to the logs. Its JSON form is what the hash chain covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fundhub.audit.masking import mask, mask_headers

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
        return {
            "id": self.id,
            "at": self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "kind": self.kind,
            "actor": self.actor,
            "source": self.source,
            "route": self.route,
            "params": self.params,
            "status": self.status,
            "errorCode": self.error_code,
            "latencyMs": self.latency_ms,
            "correlationId": self.correlation_id,
        }

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
            return {"body": mask(dict(parse_qsl(body.decode(), keep_blank_values=True)))}
        except UnicodeDecodeError:
            return {"_body": f"{len(body)} bytes, not UTF-8"}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"_body": f"{len(body)} bytes, not JSON"}
    return {"body": mask(document)}


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
