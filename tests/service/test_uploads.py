"""The upload limit: refused by Content-Length unread, or counted while a chunked body streams;
the body's deadline; and the app sees a request only once its whole body is in."""

from __future__ import annotations

import asyncio
import json

from facerep.service.uploads import UploadLimitMiddleware, describe_size


class ReadingApp:
    """An ASGI app that reads the whole body, then answers 200 with its length."""

    def __init__(self) -> None:
        self.called = False
        self.received = 0  # body bytes read so far

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        more = True
        while more:
            message = await receive()
            self.received += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.received).encode()})


def call(app, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[list, int]:
    """Run one request through `app`; returns the sent messages and how many chunks were read."""
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    sent: list = []
    read = 0

    async def receive():
        nonlocal read
        read += 1
        body = chunks[read - 1] if read <= len(chunks) else b""
        return {"type": "http.request", "body": body, "more_body": read < len(chunks)}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, read


def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    inner = ReadingApp()
    app = UploadLimitMiddleware(inner, max_bytes=1000)
    sent, read = call(app, [b"x" * 2000], [(b"content-length", b"2000")])
    assert sent[0]["status"] == 413 and read == 0 and not inner.called
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "too_large"
    assert "2,000 bytes is over the limit of 1,000 bytes" in body["error"]["message"]


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    inner = ReadingApp()
    app = UploadLimitMiddleware(inner, max_bytes=1000)
    sent, read = call(app, [b"x" * 400] * 10, [(b"transfer-encoding", b"chunked")])
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["error"]["code"] == "too_large"
    assert read == 3 and not inner.called  # the third chunk passed the limit: nothing more read


def test_bodies_within_the_limit_pass_whole() -> None:
    app = UploadLimitMiddleware(ReadingApp(), max_bytes=1000)
    sent, read = call(app, [b"x" * 500, b"y" * 500], [(b"content-length", b"1000")])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"1000" and read == 2


def test_a_lying_content_length_is_still_counted() -> None:
    inner = ReadingApp()
    app = UploadLimitMiddleware(inner, max_bytes=1000)
    sent, read = call(app, [b"x" * 800, b"x" * 800], [(b"content-length", b"10")])
    assert sent[0]["status"] == 413 and read == 2 and not inner.called


def test_the_app_is_called_once_the_whole_body_is_in() -> None:
    events: list[str] = []

    class LoggingApp(ReadingApp):
        async def __call__(self, scope, receive, send) -> None:
            events.append("app")
            await super().__call__(scope, receive, send)

    chunks = iter([b"a" * 300, b"b" * 300, b"c" * 300])

    async def receive():
        events.append("read")
        chunk = next(chunks)
        return {"type": "http.request", "body": chunk, "more_body": chunk[:1] != b"c"}

    sent: list = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(UploadLimitMiddleware(LoggingApp(), max_bytes=1000)(scope, receive, send))
    assert events == ["read", "read", "read", "app"] and sent[1]["body"] == b"900"


def test_a_body_that_stalls_is_answered_408_and_the_connection_closed() -> None:
    inner = ReadingApp()
    app = UploadLimitMiddleware(inner, max_bytes=1000, body_timeout=0.2)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    sent: list = []
    first = True

    async def receive():
        nonlocal first
        if first:  # the first bytes come, then nothing
            first = False
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await asyncio.sleep(60)

    async def send(message):
        sent.append(message)

    async def timed() -> float:
        start = asyncio.get_running_loop().time()
        await app(scope, receive, send)
        return asyncio.get_running_loop().time() - start

    seconds = asyncio.run(timed())
    assert 0.2 <= seconds < 2 and not inner.called
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "request_timeout"
    assert "did not arrive within 0.2 s (--body-timeout)" in error["message"]


def test_a_client_gone_mid_body_gets_no_answer() -> None:
    inner = ReadingApp()
    app = UploadLimitMiddleware(inner, max_bytes=1000)
    messages = iter([{"type": "http.request", "body": b"x", "more_body": True}])
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    sent: list = []

    async def receive():
        return next(messages, {"type": "http.disconnect"})

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent == [] and not inner.called


def test_sizes_read_well() -> None:
    assert describe_size(900) == "900 bytes"
    assert describe_size(10 * 1024 * 1024) == "10 MB"
    assert describe_size(2_621_440) == "2.5 MB"
