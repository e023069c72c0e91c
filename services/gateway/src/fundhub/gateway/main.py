"""``fundhub-gateway``: serve the gateway with uvicorn, every request through the one pipeline,
and its operations port (metrics, docs) beside it on the loopback address."""

from __future__ import annotations

import asyncio

import uvicorn
import uvloop

from fundhub.common.config import Settings, get_settings
from fundhub.common.logging import configure_logging
from fundhub.common.topics import topics
from fundhub.gateway.app import create_app
from fundhub.gateway.audit import audit_observers
from fundhub.gateway.edge import Edge
from fundhub.gateway.operations import operations_app


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    limiter = app.state.rate_limiter
    edge = Edge(
        app,
        guards=limiter.guards() if limiter else (),
        # The audit observer comes last: it records the answer as it finally leaves.
        observers=[
            *(limiter.observers() if limiter else ()),
            *audit_observers(app, topics(settings), settings.audit_enabled),
        ],
    )
    api = uvicorn.Server(
        uvicorn.Config(
            edge,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # nothing reads the client address
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=10,
            server_header=False,  # no banner naming the server software
        )
    )
    ops = uvicorn.Server(
        uvicorn.Config(
            operations_app(app),
            host=settings.gateway_ops_host,
            port=settings.gateway_ops_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
        )
    )
    # The API server owns the signals; the operations server stops when it has.
    operations = asyncio.create_task(ops._serve())
    try:
        await api.serve()
    finally:
        ops.should_exit = True
        await operations


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
