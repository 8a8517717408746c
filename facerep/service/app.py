"""The FastAPI application: `create_app(settings)` builds it, its lifespan loads the encoder.

Requests pass, outermost first: CORS (only with `cors_origins`), metrics (every request timed
and counted), a catch-all that turns bugs into a generic JSON 500 and logs the traceback, the
upload limit (the whole body read first: 413 over the size limit, 408 past `body_timeout`), the
in-flight limit (503 beyond `max_in_flight` requests at once, counted once their body is in),
then FastAPI's routing and error handlers. Below the app, `serve` runs uvicorn with the
connection protocol of `facerep.service.protocol` (header deadline, connections per address).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from facerep import __version__
from facerep.service import routes
from facerep.service.admission import InFlightLimitMiddleware
from facerep.service.docs import install_docs
from facerep.service.errors import CatchAllMiddleware, install_error_handlers
from facerep.service.face_service import FaceService
from facerep.service.metrics import Metrics, MetricsMiddleware
from facerep.service.settings import (
    ServiceSettings,
    check_host,
    check_settings,
    make_gallery_dir,
)
from facerep.service.uploads import UploadLimitMiddleware

DESCRIPTION = """Face embedding, verification and gallery search over HTTP.

Photos are sent as multipart form fields; their format is read from their bytes. Errors are
JSON: `{"error": {"code": "...", "message": "..."}}`. Adding and removing faces needs
`Authorization: Bearer <token>` (the server's `FACEREP_TOKEN` or `--token-file`).
"""


def create_app(settings: ServiceSettings) -> FastAPI:
    """The facerep HTTP API for `settings`; the encoder loads when the app starts.

    Raises:
        ValueError: settings the service must not run with (writes without a token...).
    """
    check_settings(settings)
    return _build_app(settings)


def _build_app(settings: ServiceSettings) -> FastAPI:
    """The app for settings already checked (`serve` checks them before loading the encoder)."""
    app = FastAPI(
        title="facerep",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN; install_docs serves them locally
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(routes.writes)
    install_docs(app)
    # add_middleware puts each new one outside the previous: innermost first.
    app.add_middleware(InFlightLimitMiddleware, max_in_flight=settings.max_in_flight)
    app.add_middleware(
        UploadLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        body_timeout=settings.body_timeout,
    )
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(
        MetricsMiddleware,
        metrics=app.state.metrics,
        routes=[*routes.router.routes, *routes.writes.routes],
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service = await FaceService.start(app.state.settings)
    app.state.service = service
    try:
        yield
    finally:
        await service.close()


def serve(
    settings: ServiceSettings, host: str = "127.0.0.1", port: int = 8000, log_level="info"
) -> None:
    """Check the settings, load the encoder, and serve the API with uvicorn until stopped.

    Raises:
        ValueError: unsafe settings, or an encoder that cannot be loaded (one line each).
    """
    import uvicorn

    from facerep.encoders.registry import check_ready, resolve_encoder
    from facerep.service.protocol import protocol_for

    check_settings(settings)
    check_host(settings, host)
    # Loaded here, so a bad --encoder is a one-line error instead of a failed startup.
    # An encoder passed in from Python (not by name) may still be an unfitted estimator.
    settings = replace(settings, encoder=check_ready(resolve_encoder(settings.encoder)))
    if settings.occlusion is not None:  # the same for a bad --occlusion run
        from facerep.tasks.occlusion import OcclusionMapper

        OcclusionMapper(settings.occlusion, prior=True)
    make_gallery_dir(settings)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    uvicorn.run(
        _build_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        http=protocol_for(settings),
    )
