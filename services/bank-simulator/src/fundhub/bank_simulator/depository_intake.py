"""How the depository takes a money request that shares an amount out among members (a split's
receivers, a refund debit's members): one intake for both desks, so they refuse alike.

A request comes as a JSON object of at most a given size, is checked as the bank checks its
shape (the fields named, the shares adding up to the amount), and is held under its request
id: the same id with the same content is the same request, with other content it is refused
(409). A query for an id the desk does not hold answers ``NOT_FOUND`` (404). The split and the
refund-debit contracts spell their refusals and ``NOT_FOUND`` alike; the split's are used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import orjson
from fastapi import Request, Response, status

from fundhub.common.money import MoneyError, normalize_currency, parse_minor_units
from fundhub.settlement.depository import NOT_FOUND, REFUSED

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestRefused(ValueError):
    """A malformed or impossible request: refused 400, nothing registered."""

    status_code: ClassVar[int] = status.HTTP_400_BAD_REQUEST


class RequestConflict(RequestRefused):
    """The request id was used for another request: 409."""

    status_code: ClassVar[int] = status.HTTP_409_CONFLICT


class Held(Protocol):
    """A request a desk holds: the wire it came as, and the answer it gets."""

    @property
    def wire(self) -> dict[str, Any]: ...

    def answer(self) -> dict[str, str]: ...


H = TypeVar("H", bound=Held)


def shares_from_wire(
    body: Any,
    *,
    id_field: str,
    fields: Sequence[str],
    parts: str,
    part_fields: Sequence[str],
    max_parts: int,
) -> dict[str, Any]:
    """``body`` checked as the bank checks its shape: ``id_field`` and ``fields`` non-empty
    strings, the list ``parts`` of 1 to ``max_parts`` objects with ``part_fields``, whose
    positive ``amount`` shares add up to ``amount``; RequestRefused names the field."""
    if not isinstance(body, dict):
        raise RequestRefused("body: not a JSON object")
    for name in (id_field, *fields):
        if not isinstance(body.get(name), str) or not body[name]:
            raise RequestRefused(f"{name}: required, a non-empty string")
    if not _ID.fullmatch(body[id_field]):
        raise RequestRefused(f"{id_field}: 1 to 64 of [A-Za-z0-9._:-]")
    try:
        normalize_currency(body["currency"])
        amount = parse_minor_units(body["amount"])
    except MoneyError as exc:
        raise RequestRefused(f"amount or currency: {exc}") from None
    items = body.get(parts)
    if not isinstance(items, list) or not 0 < len(items) <= max_parts:
        raise RequestRefused(f"{parts}: 1 to {max_parts}")
    total = 0
    for index, item in enumerate(items):
        where = f"{parts}[{index}]"
        if not isinstance(item, dict):
            raise RequestRefused(f"{where}: not a JSON object")
        for name in part_fields:
            if not isinstance(item.get(name), str) or not item[name]:
                raise RequestRefused(f"{where}.{name}: required, a non-empty string")
        try:
            share = parse_minor_units(item["amount"])
        except MoneyError as exc:
            raise RequestRefused(f"{where}.amount: {exc}") from None
        if share <= 0:
            raise RequestRefused(f"{where}.amount: must be positive")
        total += share
    if total != amount:
        raise RequestRefused(f"amount: {amount} is not the {parts}' sum {total}")
    return body


def held_before(held: Mapping[str, H], wire: dict[str, Any], id_field: str, what: str) -> H | None:
    """The request held under the wire's id (a repeat: answered as the first time), None for a
    new one; RequestConflict when the id was used for another ``what``."""
    known = held.get(wire[id_field])
    if known is not None and known.wire != wire:
        raise RequestConflict(f"{id_field}: used before for another {what}")
    return known


async def json_body(request: Request, limit: int) -> Any:
    """The request's JSON body; RequestRefused when it is over ``limit`` bytes or not JSON."""
    raw = await request.body()
    if len(raw) > limit:
        raise RequestRefused(f"body: over {limit} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestRefused("body: not JSON") from None


def json_response(body: Any, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def refusal(exc: RequestRefused) -> Response:
    return json_response({"status": REFUSED, "error": str(exc)}, exc.status_code)


def held_answer(request: Held | None) -> Response:
    """A query's answer: the request's state, or ``NOT_FOUND``."""
    if request is None:
        return json_response({"status": NOT_FOUND}, status.HTTP_404_NOT_FOUND)
    return json_response(request.answer())
