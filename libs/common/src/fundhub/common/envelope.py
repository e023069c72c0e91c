"""The Kafka envelope every message travels in; its JSON is the wire contract."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fundhub.common import tracing
from fundhub.common.clock import utcnow
from fundhub.common.ids import content_uuid, random_uuid

HEADER_CORRELATION_ID = "correlation-id"
HEADER_MESSAGE_TYPE = "message-type"
HEADER_DEAD_LETTER_REASON = "dead-letter-reason"
HEADER_DEAD_LETTER_SOURCE = "dead-letter-source"


class Envelope(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    id: str = Field(default_factory=random_uuid)
    type: str
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        # The same JSON as model_dump(mode="json", by_alias=True), without the serializer's
        # per-call cost: this runs for every message every service sends.
        return orjson.dumps(
            {
                "id": self.id,
                "type": self.type,
                "occurredAt": self.occurred_at,
                "correlationId": self.correlation_id,
                "data": self.data,
            },
            option=orjson.OPT_UTC_Z,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)

    def headers(self) -> list[tuple[str, bytes]]:
        """Made where the message is made (a request, a batch): the trace context in them is
        that of the work that caused the message, even when an outbox relay sends it later."""
        headers = [
            (HEADER_CORRELATION_ID, self.correlation_id.encode()),
            (HEADER_MESSAGE_TYPE, self.type.encode()),
        ]
        if tracing.ON:
            tracing.inject(headers)
        return headers


def deterministic_id(*parts: str) -> str:
    """A message id derived from content, so the same fact published twice dedupes in the inbox."""
    return content_uuid("fundhub:" + "\x1f".join(parts))
