"""Every error the service answers is JSON: `{"error": {"code": "...", "message": "..."}}`.

Status codes:
- 400 `bad_request`: a body that cannot be parsed (broken multipart), or a request line or
  header that is not valid HTTP (a malformed Content-Length), answered by the connection
  itself before the app runs (`facerep.service.protocol`).
- 401 `unauthorized`: a write without the bearer token, or with a wrong one.
- 403 `read_only`: a write to a server started with `--read-only`.
- 404 `not_found`, `gallery_not_found`, `face_not_found`.
- 405 `method_not_allowed`.
- 409 `gallery_conflict`: the gallery holds another encoder's embeddings.
- 408 `request_timeout`: the request's headers or body did not arrive within `--header-timeout`
  or `--body-timeout`; the connection is closed.
- 413 `too_large`: the request body is over `--max-upload-mb`.
- 422 `invalid_request` (missing or out-of-range fields, a bad gallery name), `invalid_image`
  (not an image, truncated or corrupt), `image_refused` (over `--max-pixels`: a likely
  decompression bomb; 422 rather than 413 because the upload itself was small), `no_face`,
  `no_threshold` (verify with an uncalibrated encoder and no `threshold`).
- 500 `internal_error`: a bug; the traceback goes to the server log, never to the client.
- 503 `overloaded`: over `--max-in-flight` requests at once; `unavailable`: the server is
  shutting down, or a face worker died meanwhile. Both retryable: `Retry-After` says when
  (except while shutting down).
- 503 `gallery_unavailable`: the gallery's files cannot be read as a gallery (damaged, not a
  folder), cannot be written (a read-only folder), or are of a format this server does not
  support. Not the client's mistake, so not a
  4xx, and not a bug, so not a 500: it stays so until someone repairs the gallery on the server
  (the reason is in the server log).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerep.faces.find import NoFaceError
from facerep.images import ImageError
from facerep.tasks.gallery import GalleryError, GalleryErrorKind

log = logging.getLogger("facerep.service")

# Seconds a client told to retry (503 overloaded, a face worker died) should wait: a request
# takes ~0.1 s of CPU, so by then the queue has moved or a new worker has started.
RETRY_AFTER_SECONDS = 1

# Codes for the errors Starlette and FastAPI raise themselves.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
}


class ServiceError(Exception):
    """An error the client caused (or a state it must know of), with its status and code."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    """The JSON error body every failure uses."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def image_error(error: ImageError) -> ServiceError:
    """422 for an upload that is not a usable image; a bomb says so in its code."""
    code = "image_refused" if error.kind == "refused" else "invalid_image"
    return ServiceError(422, code, str(error))


# How each kind of GalleryError is answered: status, code and message. A gallery the server
# cannot open is named, never located: the reason names server paths, so it goes to the log.
GALLERY_ANSWERS: dict[GalleryErrorKind, tuple[int, str, str]] = {
    "not_found": (404, "gallery_not_found", "no gallery named {name!r}"),
    "encoder_mismatch": (
        409,
        "gallery_conflict",
        "gallery {name!r} holds another encoder's embeddings and cannot be used with this "
        "server's encoder; see the server log",
    ),
    "damaged": (
        503,
        "gallery_unavailable",
        "gallery {name!r} cannot be read (damaged); see the server log",
    ),
    "unsupported": (
        503,
        "gallery_unavailable",
        "gallery {name!r} is in a format this server does not support; see the server log",
    ),
    "invalid": (422, "invalid_request", "{reason}"),
    "read_only": (
        503,
        "gallery_unavailable",
        "gallery {name!r} cannot be written on this server; see the server log",
    ),
}


def gallery_error(error: GalleryError) -> ServiceError:
    """The answer to a GalleryError (its gallery is known to the client by the folder's name)."""
    status, code, message = GALLERY_ANSWERS[error.kind]
    if error.kind in ("encoder_mismatch", "damaged", "unsupported", "read_only"):
        log.warning("gallery error: %s", error)  # the operator must act: they need the reason
    name = error.path.name if error.path is not None else "?"
    return ServiceError(status, code, message.format(name=name, reason=error.reason))


async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
    return error_response(error.status, error.code, error.message, error.headers)


async def _image_error(request: Request, error: ImageError) -> JSONResponse:
    return await _service_error(request, image_error(error))


async def _no_face(request: Request, error: NoFaceError) -> JSONResponse:
    return error_response(422, "no_face", str(error))


async def _gallery_error(request: Request, error: GalleryError) -> JSONResponse:
    return await _service_error(request, gallery_error(error))


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    status = error.status_code
    code = STATUS_CODES.get(status, "error")
    # Starlette sets the status's phrase when no detail is given; FastAPI's may be JSON data.
    message = error.detail if isinstance(error.detail, str) and error.detail else code
    return error_response(status, code, message, getattr(error, "headers", None))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    # Name each bad field and why, never echo its value (it may be a whole photo).
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body",))
        problems.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


def install_error_handlers(app: FastAPI) -> None:
    """Make every expected error a JSON body with a status and a code."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(NoFaceError, _no_face)
    app.add_exception_handler(GalleryError, _gallery_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


class CatchAllMiddleware:
    """Answer any unexpected exception with a generic JSON 500 and log its traceback here.

    Without it, Starlette's outermost ServerErrorMiddleware would answer a plain-text 500, not
    the JSON body every error has, and re-raise the exception to the server. (Where it sits does
    not matter to the metrics: their middleware records 500 when no response was sent.)
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(500, "internal_error", "internal server error")
                await response(scope, receive, send)
