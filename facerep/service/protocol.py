"""The HTTP/1.1 connection: uvicorn's h11 protocol, with a deadline for headers and JSON errors.

uvicorn (h11) sets no deadline for a client to send a request: a connection that sends
nothing, or half its headers, stays open for as long as the client likes (only the keep-alive
timeout between two requests closes anything). This protocol adds, per connection:
- a deadline for the request's head: `header_timeout` seconds from the connection's opening, or
  from the first byte of a request that follows another. A connection that sent nothing is
  closed; one that stalls mid-head gets 408 `request_timeout` and is closed. (The body's
  deadline is the app's: `facerep.service.uploads`.)
- a cap of `max_client_connections` open connections per client address (0: none); more are
  closed as they open, unanswered, so one address cannot hold every socket.
- JSON for the requests h11 refuses before the app runs (a malformed Content-Length, a bad
  request or header line, a head still incomplete past h11's 16 KB): 400 `bad_request`, like
  every other error. What uvicorn would still answer in plain text cannot happen here: its 500
  for an app that sent no response (the catch-all always answers) and its 503 for
  `limit_concurrency` (not set).

Built for one server by `protocol_for(settings)`, passed to uvicorn as `http=`; it replaces
uvicorn's choice between h11 and httptools (h11 always).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from facerep.service.settings import ServiceSettings

log = logging.getLogger("facerep.service")

BAD_REQUEST = (
    "the request line or headers are not valid HTTP/1.1 (a malformed Content-Length or "
    "header line, say)"
)


def protocol_for(settings: ServiceSettings) -> type[H11Protocol]:
    """The protocol class for one server: its limits, and a connection count of its own."""
    attributes = {
        "header_timeout": settings.header_timeout,
        "max_client_connections": settings.max_client_connections,
        "open_connections": Counter(),
    }
    return type("FacerepH11Protocol", (GuardedH11Protocol,), attributes)


def json_error(status: int, code: str, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a JSON error answered by the connection itself (it then closes)."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
    body = body.encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return headers, body


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a header deadline, a per-address connection cap and JSON 400s."""

    header_timeout: ClassVar[float] = ServiceSettings.header_timeout
    max_client_connections: ClassVar[int] = ServiceSettings.max_client_connections
    open_connections: ClassVar[Counter] = Counter()  # protocol_for gives each server its own

    _head_timer: asyncio.TimerHandle | None = None
    _address: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection against its address (closing it if over), start the deadline."""
        super().connection_made(transport)
        if self.max_client_connections and self.client:
            self._address = self.client[0]
            self.open_connections[self._address] += 1
            if self.open_connections[self._address] > self.max_client_connections:
                log.warning(
                    "%s: over %d open connections from this address; closed",
                    self._address,
                    self.max_client_connections,
                )
                transport.close()
                return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection: its address's count, its deadline."""
        self._stop_head_timer()
        if self._address is not None:
            self.open_connections[self._address] -= 1
            if self.open_connections[self._address] <= 0:
                del self.open_connections[self._address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Handle the bytes, then start or stop the deadline for the head they belong to."""
        super().data_received(data)
        waiting_for_head = self.conn.their_state is h11.IDLE
        if not waiting_for_head:
            self._stop_head_timer()
        elif self.conn.trailing_data[0] and self._head_timer is None:
            self._start_head_timer()  # a new request has begun on a kept-alive connection

    def on_response_complete(self) -> None:
        """After a response: a pipelined request's head already begun gets its deadline."""
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._unset_keepalive_if_required()  # not idle: the head's deadline applies
            if self._head_timer is None:
                self._start_head_timer()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what h11 refuses, as the JSON error every answer uses."""
        headers, body = json_error(400, "bad_request", BAD_REQUEST)
        response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why it is closed
            message = (
                f"the request's headers did not arrive within {self.header_timeout:g} s "
                "(--header-timeout); the connection is closed"
            )
            headers, body = json_error(408, "request_timeout", message)
            head = b"".join(b"%s: %s\r\n" % header for header in headers)
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\n%s\r\n%s" % (head, body))
        self.transport.close()
