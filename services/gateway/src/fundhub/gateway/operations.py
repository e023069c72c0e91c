"""The gateway's operations port: ``/metrics`` and the interactive API documents.

Not on the API port: metrics tell an outsider the traffic, the error rates and the routes, and
``/docs`` is an invitation to explore. This port binds to ``FUNDHUB_GATEWAY_OPS_HOST``
(127.0.0.1 by default), where Prometheus and operators reach it and callers do not.
``/openapi.json`` stays on the API port: it is the published contract clients build against.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def operations_app(api: FastAPI) -> FastAPI:
    """Metrics of this process and the documents of ``api``."""
    app = FastAPI(title="fundhub gateway operations", docs_url=None, redoc_url=None)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def document() -> dict[str, Any]:
        return api.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=api.title)

    return app
