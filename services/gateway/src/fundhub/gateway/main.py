"""``fundhub-gateway``: serve the gateway with uvicorn, every request through the one pipeline."""

from __future__ import annotations

import uvicorn

from fundhub.common.config import get_settings
from fundhub.common.logging import configure_logging
from fundhub.common.topics import topics
from fundhub.gateway.app import create_app
from fundhub.gateway.audit import audit_observers
from fundhub.gateway.edge import Edge


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    app = create_app(settings)
    limiter = app.state.rate_limiter
    uvicorn.run(
        Edge(
            app,
            guards=limiter.guards() if limiter else (),
            # The audit observer comes last: it records the answer as it finally leaves.
            observers=[
                *(limiter.observers() if limiter else ()),
                *audit_observers(app, topics(settings), settings.audit_enabled),
            ],
        ),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # nothing reads the client address
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
