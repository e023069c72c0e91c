"""``fundhub-gateway``: serve the gateway with uvicorn, every request through the one pipeline,
and its operations port (metrics, docs) beside it on the loopback address."""

from __future__ import annotations

import asyncio
import resource

import uvicorn
import uvloop
from starlette.types import ASGIApp

from fundhub.common import tracing
from fundhub.common.config import Settings, get_settings
from fundhub.common.logging import configure_logging
from fundhub.common.topics import topics
from fundhub.gateway.app import create_app
from fundhub.gateway.audit import audit_observers
from fundhub.gateway.edge import Edge
from fundhub.gateway.operations import operations_app
from fundhub.gateway.transport import ConnectionLimits, guarded_protocol, tls_context_factory

FD_RESERVE = 128


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """The API server's configuration: the connection limits and TLS of README "Transport"."""
    # Below the process's file descriptor limit, with room for the pools, logs and the listener:
    # past it accept() fails and the connections already held starve everything else.
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if fd_limit == resource.RLIM_INFINITY:
        fd_limit = settings.gateway_max_connections + FD_RESERVE
    limits = ConnectionLimits(
        header_timeout_s=settings.gateway_header_timeout_s,
        body_timeout_s=settings.gateway_body_timeout_s,
        max_connections=max(1, min(settings.gateway_max_connections, fd_limit - FD_RESERVE)),
        max_connections_per_address=settings.gateway_max_connections_per_address,
    )
    tls = bool(settings.gateway_tls_certfile)
    return uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # nothing reads the client address
        loop="uvloop",
        http=guarded_protocol(limits),
        timeout_keep_alive=max(1, round(settings.gateway_keepalive_s)),
        limit_concurrency=settings.gateway_limit_concurrency,
        timeout_graceful_shutdown=10,
        server_header=False,  # no banner naming the server software
        ssl_certfile=settings.gateway_tls_certfile if tls else None,
        ssl_keyfile=settings.gateway_tls_keyfile if tls else None,
        ssl_context_factory=tls_context_factory(settings.gateway_tls_client_ca) if tls else None,
    )


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    limiter = app.state.rate_limiter
    edge = Edge(
        app,
        guards=limiter.guards() if limiter else (),
        # The audit observer comes last: it records the answer as it finally leaves.
        observers=[
            *(limiter.observers() if limiter else ()),
            *audit_observers(
                app, topics(settings), settings.audit_enabled, settings.audit_send_interval_s
            ),
        ],
    )
    api = uvicorn.Server(server_config(settings, edge))
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
    tracing.configure(settings.otlp_endpoint, "gateway")
    try:
        uvloop.run(serve(settings))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
