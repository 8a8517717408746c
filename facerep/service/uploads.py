"""Request bodies are capped while they arrive, never after an unlimited body was buffered.

A declared `Content-Length` over the limit is answered 413 before a byte of the body is read;
a body without one (chunked) is counted as it streams in, and the request fails with 413 the
moment the count passes the limit. Multipart parsing only ever sees bodies within the limit.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerep.service.errors import error_response
from facerep.service.settings import MEGABYTE


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; answered 413 as JSON."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over the limit of {describe_size(limit)}")


class UploadLimitMiddleware:
    """Cap every HTTP request body at `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            message = (
                f"request body of {describe_size(declared)} is over the limit of "
                f"{describe_size(self.max_bytes)}"
            )
            await error_response(413, "too_large", message)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return receive_counted


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server rejects a malformed length; counting still applies


def describe_size(size: int) -> str:
    """A byte count for messages: `10 MB`, `2.5 MB` or `900 bytes` (1 MB = 1,048,576 bytes)."""
    if size < MEGABYTE:
        return f"{size:,} bytes"
    return f"{size / MEGABYTE:.3g} MB"
