"""Request bodies are read whole, within a size limit and a deadline, before any work starts.

A declared `Content-Length` over the limit is answered 413 before a byte of the body is read;
a body without one (chunked) is counted as it streams in, and the request fails with 413 the
moment the count passes the limit. The whole body must arrive within `body_timeout` seconds of
the request's headers, else 408 and the connection is closed: a client that stalls mid-upload
holds nothing but its socket for that long. Only then does the request go on to the in-flight
limit (`admission`) and the routes, so a slow upload never holds a place a fast one could use,
and multipart parsing only ever sees a complete body within the limit.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerep.service.errors import error_response
from facerep.service.settings import MEGABYTE


class BodyTooLarge(Exception):
    """A streamed body passed the limit."""


class ClientGone(Exception):
    """The client disconnected before its body had arrived: there is no one to answer."""


class UploadLimitMiddleware:
    """Read every HTTP request body whole (at most `max_bytes`, within `body_timeout` s)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float = 60.0):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

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
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self._read_body(receive)
        except BodyTooLarge:
            message = f"request body over the limit of {describe_size(self.max_bytes)}"
            await error_response(413, "too_large", message)(scope, receive, send)
            return
        except TimeoutError:
            message = (
                f"the request body did not arrive within {self.body_timeout:g} s "
                "(--body-timeout); the connection is closed"
            )
            headers = {"Connection": "close"}
            await error_response(408, "request_timeout", message, headers)(scope, receive, send)
            return
        except ClientGone:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, received = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the whole body at once, then waits on the client (disconnect)."""
    sent = False

    async def receive_replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_replayed


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
