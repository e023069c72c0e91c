"""``/v1/sandbox``: scenario controls, mounted only on a gateway that serves sandbox keys.

A live gateway does not have these routes at all, so a live key asking for one gets exactly
what an unknown route gets; nothing tells it that a sandbox exists. The scenario is stored in
the sandbox's own database for the key and requestId, and payment-worker hands it to the bank
simulator with the payout (``payouts.sandbox_bank``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fundhub.access.keys import SCOPE_PAYOUTS_WRITE
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.gateway.auth import authenticated
from fundhub.gateway.edge import edge_route
from fundhub.gateway.responses import signed, success
from fundhub.gateway.schemas import PayoutScenarioPlaced, answers, request_body
from fundhub.payouts.sandbox import InvalidScenario, ScenarioRequest, parse_scenario_request
from fundhub.payouts.sandbox_store import Placed, place

SANDBOX_PATH = "/v1/sandbox"
_MAX_BODY_BYTES = 2 * 1024  # the longest scenario is a few hundred bytes


def sandbox_router() -> APIRouter:
    router = APIRouter(prefix=SANDBOX_PATH, tags=["sandbox"])

    @router.post(
        "/payout-scenarios",
        summary="Sandbox only: how the simulated bank treats the payout created with requestId",
        status_code=201,
        responses=answers(
            {201: (PayoutScenarioPlaced, "In place for the key's next payout of requestId")},
            400,
            401,
            403,
            (
                409,
                "Refused: a payout with that requestId exists (E081_SCENARIO_TOO_LATE), or "
                "the key holds 1000 scenarios not used yet (E082_SCENARIO_LIMIT)",
            ),
            413,
            503,
        ),
        openapi_extra=request_body(ScenarioRequest),
    )
    @edge_route(body_limit=_MAX_BODY_BYTES)
    async def place_scenario(request: Request) -> Response:
        key = await authenticated(request, SCOPE_PAYOUTS_WRITE)
        try:
            scenario = parse_scenario_request(await request.body())
        except InvalidScenario as exc:
            raise FundhubError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        placed = await place(request.app.state.pool, key.key_id, scenario)
        if placed is Placed.TOO_LATE:
            raise FundhubError(ErrorCode.SCENARIO_TOO_LATE)
        if placed is Placed.LIMIT:
            raise FundhubError(ErrorCode.SCENARIO_LIMIT)
        body = scenario.model_dump(mode="json", by_alias=True)
        return signed(request, success(body, status=201))

    return router
