"""``/healthz``, ``/readyz`` and ``/metrics`` for every service, HTTP-facing or not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]


def health_router(
    checks: dict[str, ReadinessCheck],
    stopping: Callable[[], bool] | None = None,
    *,
    metrics: bool = True,
) -> APIRouter:
    """``stopping``: once it says so, ``/readyz`` answers 503 whatever the checks would say, so
    that a balancer stops sending work to a process that is shutting down. ``metrics=False``
    leaves ``/metrics`` out (the gateway serves it on its operations port)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Every dependency (Kafka, Postgres) is reachable")
    async def readyz(response: Response) -> dict[str, object]:
        if stopping is not None and stopping():
            response.status_code = 503
            return {"status": "stopping", "checks": {}}
        results = await asyncio.gather(*(check() for check in checks.values()))
        status = dict(zip(checks, results, strict=True))
        ready = all(results)
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not-ready", "checks": status}

    if metrics:

        @router.get("/metrics", summary="Prometheus metrics")
        async def prometheus() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def serve_health(
    checks: dict[str, ReadinessCheck],
    host: str,
    port: int,
    stopping: Callable[[], bool] | None = None,
) -> None:
    """Serve the operations endpoints inside a worker's own event loop."""
    app = FastAPI(title="fundhub operations", docs_url=None, redoc_url=None)
    app.include_router(health_router(checks, stopping))
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    await server._serve()  # the worker owns signals; uvicorn must not capture them
