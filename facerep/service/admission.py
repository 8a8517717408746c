"""At most `max_in_flight` requests that do work are handled at once; more get 503 at once.

A request reaches this limit only once its whole body has arrived (`uploads` reads it first,
within its deadline), so clients that upload slowly, or stall, never hold a place here. Every
request in flight holds an upload of up to the upload limit while it waits its turn for the
detector and the encoder. Without a cap a burst holds any amount of memory and every
client's latency grows without bound; with one, the excess is told to retry (`Retry-After`)
while the admitted requests keep their latency. Reads (GET, HEAD, OPTIONS: health, metrics,
gallery info, the schema) are never refused, so probes still answer under overload.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from facerep.service.errors import RETRY_AFTER_SECONDS, error_response

UNLIMITED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class InFlightLimitMiddleware:
    """Answer 503 `overloaded` to a request that would exceed `max_in_flight` at once."""

    def __init__(self, app: ASGIApp, max_in_flight: int):
        self.app = app
        self.max_in_flight = max_in_flight
        # Only the event loop's thread touches it, between awaits: no lock needed.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in UNLIMITED_METHODS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            message = (
                f"the server is handling its limit of {self.max_in_flight} requests; "
                f"retry in {RETRY_AFTER_SECONDS} s"
            )
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            await error_response(503, "overloaded", message, headers)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
