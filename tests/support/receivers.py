"""Local HTTP receivers for tests: an aiohttp app served in the test's loop, and a threaded
stdlib server for code under test that blocks (TestClient apps, threads of their own)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiohttp import web

from fundhub.common.signing import webhook_signature

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Callbacks go to public addresses only; a service whose test receiver listens on this
# machine is started with this in its environment.
ALLOW_LOCAL_RECEIVERS = {"FUNDHUB_CALLBACK_ALLOW_CIDRS": "127.0.0.1/32"}


@asynccontextmanager
async def serving(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (on ``port``, or a free one); yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def posts_to(path: str, handle: Handler) -> web.Application:
    """An app that answers POST ``path`` with ``handle`` (and nothing else)."""
    app = web.Application()
    app.router.add_post(path, handle)
    return app


@dataclass
class SignedCallbacks:
    """A tenant's notifyUrl, served with ``handle``: each callback's JSON body goes to
    ``took``; one whose signature does not hold with ``secret`` is counted in
    ``bad_signatures`` (and taken all the same, so a test sees what came)."""

    secret: str = ""
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = webhook_signature(
            self.secret, request.headers.get("X-Fundhub-Timestamp", ""), raw
        )
        if request.headers.get("X-Fundhub-Signature") != expected:
            self.bad_signatures += 1
        self.took(json.loads(raw))
        return web.Response(text="ok")

    def took(self, body: dict[str, Any]) -> None:
        raise NotImplementedError


class ThreadedReceiver:
    """A threaded local HTTP server on a free port that takes JSON POSTs: each body goes to
    ``answer`` (in the server's thread), whose text is sent back with status 200. ``url`` is
    the server's base URL followed by ``path``."""

    def __init__(self, path: str = "") -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                params = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = outer.answer(self.path, params).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, params: dict[str, Any]) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
