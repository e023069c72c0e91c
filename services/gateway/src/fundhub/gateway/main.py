"""``fundhub-gateway``: serve the gateway with uvicorn, every request through the one pipeline."""

from __future__ import annotations

import resource

import uvicorn

from fundhub.common.config import Settings, get_settings
from fundhub.common.logging import configure_logging
from fundhub.gateway.app import create_app
from fundhub.gateway.edge import Edge
from fundhub.gateway.transport import ConnectionLimits, guarded_protocol, tls_context_factory

FD_RESERVE = 128


def server_config(settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration: the connection limits and TLS of README "Transport"."""
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
        Edge(create_app(settings)),
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
        ssl_certfile=settings.gateway_tls_certfile if tls else None,
        ssl_keyfile=settings.gateway_tls_keyfile if tls else None,
        ssl_context_factory=tls_context_factory(settings.gateway_tls_client_ca) if tls else None,
    )


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    uvicorn.Server(server_config(settings)).run()


if __name__ == "__main__":
    main()
