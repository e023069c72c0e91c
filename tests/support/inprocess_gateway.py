"""The gateway served on a thread of this process, every request through its one pipeline, for
tests that hand it adapters of their own (test channels) rather than the installed ones."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from fundhub.channels.events import Channel
from fundhub.channels.ports import ChannelPayments
from fundhub.common.config import Settings
from fundhub.common.topics import topics
from fundhub.gateway.app import create_app
from fundhub.gateway.audit import audit_observers
from fundhub.gateway.edge import Edge
from support.uvicorn_thread import ThreadedServer


@contextmanager
def gateway_serving(
    settings: Settings, channels: Mapping[Channel, ChannelPayments]
) -> Iterator[str]:
    """The gateway's base URL, composed as ``fundhub.gateway.main.serve`` composes it."""
    app = create_app(settings, channels=channels)
    limiter = app.state.rate_limiter
    edge = Edge(
        app,
        guards=limiter.guards() if limiter else (),
        observers=[
            *(limiter.observers() if limiter else ()),
            *audit_observers(app, topics(settings), settings.audit_enabled),
        ],
    )
    server = ThreadedServer(edge)
    try:
        yield server.url
    finally:
        server.stop()
