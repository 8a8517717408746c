"""`/docs`: Swagger UI from an installed package, so the interactive docs work offline.

FastAPI's own `/docs` loads Swagger UI's script and style (and `/redoc` its script) from a
public CDN: blank on a machine without internet. facerep serves the files of the
`swagger-ui-bundle-v2` package (Swagger UI 5, which reads the OpenAPI 3.1 schema FastAPI
writes) under `/docs/assets/`, and has no `/redoc`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `/docs` and its files at `/docs/assets/` (create the app with
    `docs_url=None, redoc_url=None`, so FastAPI's CDN pages are not there too)."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that adds a prefix
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            # No badge that sends the schema to swagger.io's online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
