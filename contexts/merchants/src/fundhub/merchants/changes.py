"""The depository's result on one request, applied in the caller's transaction: the request row
finished, the merchant, version and binding as ``states.on_result`` decides, and the callbacks of
the changes to ``notifyUrl`` (outbox rows to ``callbacks.v1``), together or not at all.

Every path a result takes comes here: the bank's signed notification (the results consumer),
its answer to a submission, and the poller's query. A request is decided once: a later result
for it (a duplicate, a notification racing the answer it repeats) changes nothing, and one that
contradicts the first raises an alert.

A result counts only from the bank app the request was sent through, and only for the member it
was sent for: a signature proves which app spoke, not what it may speak for (another registered
app could otherwise activate a merchant the depository never reviewed).
"""

from __future__ import annotations

from typing import Literal

import structlog

from fundhub.common.db import Connection, Row
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.topics import Topics
from fundhub.merchants import states, store
from fundhub.merchants.metrics import ALERTS
from fundhub.merchants.states import Change, Event, RequestKind, ResultStatus
from fundhub.merchants.wire import MerchantView, callback_body

log = structlog.get_logger(__name__)

TYPE_CALLBACK = "merchant.callback"
Settled = Literal["applied", "stale", "duplicate", "ignored"]


async def settle(
    conn: Connection,
    topics: Topics,
    request_id: str,
    status: ResultStatus,
    reason: str | None,
    member_no: str | None,
    correlation_id: str,
    *,
    from_app: str | None = None,
    default_app: str | None = None,
    member_ext_id: str | None = None,
) -> Settled:
    """Apply a final result; ``from_app``/``member_ext_id`` are what a notification says of
    itself (None for our own calls' answers), checked against the request."""
    request = await store.lock_request(conn, request_id)
    if request is None:
        return _ignored("unknown-request", request_id=request_id)
    if from_app is not None and from_app != (request["bank_app_id"] or default_app):
        return _ignored(
            "foreign-bank-app",
            request_id=request_id,
            app_id=from_app,
            expected_app_id=request["bank_app_id"] or default_app,
        )
    if member_ext_id is not None and member_ext_id != request["merchant_id"]:
        return _ignored("foreign-member", request_id=request_id, member_ext_id=member_ext_id)
    if request["state"] == "DONE":
        if request["outcome"] != status.value:
            ALERTS.labels("contradiction").inc()
            log.error(
                "merchant_result_contradicts",
                request_id=request_id,
                recorded=request["outcome"],
                reported=status.value,
            )
        return "duplicate"
    merchant_row = await store.lock_merchant(conn, request["merchant_id"])
    assert merchant_row is not None  # requests reference their merchant
    binding_row = (
        await store.binding(conn, request["binding_id"], lock=True)
        if request["binding_id"]
        else None
    )
    change = states.on_result(
        RequestKind(request["kind"]),
        request_id,
        store.to_merchant(merchant_row),
        request["version"],
        store.to_binding(binding_row) if binding_row is not None else None,
        status,
        reason,
        member_no,
    )
    await store.finish_request(conn, request_id, status, reason)
    if change.stale:
        if change.alert:
            ALERTS.labels("stale").inc()
            log.error("merchant_result_stale", request_id=request_id, note=change.note)
        else:
            log.info("merchant_result_stale", request_id=request_id, note=change.note)
        return "stale"
    await _write(conn, request, change)
    log.info(
        "merchant_changed",
        merchant_id=request["merchant_id"],
        request_id=request_id,
        note=change.note,
    )
    view = await store.fresh_view(conn, request["merchant_id"])
    await store.write_events(conn, _callbacks(topics, view, change.events, correlation_id))
    return "applied"


async def _write(conn: Connection, request: Row, change: Change) -> None:
    merchant_id = request["merchant_id"]
    if change.version is not None:
        await store.write_version(conn, merchant_id, change.version)
    if change.replaced is not None:
        await store.set_binding_state(conn, change.replaced, states.BindingState.REPLACED)
    if change.binding is not None:
        await store.write_binding(conn, change.binding)
    if change.merchant is not None:
        await store.write_merchant(conn, change.merchant)


def _callbacks(
    topics: Topics, view: MerchantView, events: tuple[Event, ...], correlation_id: str
) -> list[tuple[str, str | None, Envelope]]:
    """One ``merchant.callback`` per event, for the dispatcher; none without a notifyUrl. Its
    id derives from the merchant and the event's key, so a replay publishes the same one."""
    merchant = view.merchant
    url = merchant["notify_url"]
    if not url:
        return []
    merchant_id = merchant["merchant_id"]
    return [
        (
            topics.client_callbacks,
            merchant_id,
            Envelope(
                id=deterministic_id("merchant-callback", merchant_id, event.key),
                type=TYPE_CALLBACK,
                correlation_id=correlation_id,
                data={
                    "subjectId": merchant_id,
                    "state": event.key,
                    "url": url,
                    "keyId": merchant["owner_key_id"],
                    "body": callback_body(view, event.type, event.key),
                },
            ),
        )
        for event in events
    ]


def _ignored(reason: str, **context: object) -> Settled:
    ALERTS.labels(reason).inc()
    log.error("merchant_result_ignored", reason=reason, **context)
    return "ignored"
