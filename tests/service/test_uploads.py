"""The upload limit: refused by Content-Length unread, or counted while a chunked body streams."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException

from facerep.service.uploads import BodyTooLarge, UploadLimitMiddleware, describe_size


class ReadingApp:
    """An ASGI app that reads the whole body, then answers 200 with its length."""

    def __init__(self) -> None:
        self.called = False

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


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
    app = UploadLimitMiddleware(ReadingApp(), max_bytes=1000)
    chunks = [b"x" * 400] * 10
    try:
        call(app, chunks, [(b"transfer-encoding", b"chunked")])
    except HTTPException as error:  # the route's handler turns it into the JSON 413
        assert isinstance(error, BodyTooLarge) and error.status_code == 413
    else:
        raise AssertionError("the body passed the limit unnoticed")


def test_bodies_within_the_limit_pass_whole() -> None:
    app = UploadLimitMiddleware(ReadingApp(), max_bytes=1000)
    sent, read = call(app, [b"x" * 500, b"y" * 500], [(b"content-length", b"1000")])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"1000" and read == 2


def test_a_lying_content_length_is_still_counted() -> None:
    app = UploadLimitMiddleware(ReadingApp(), max_bytes=1000)
    try:
        call(app, [b"x" * 800, b"x" * 800], [(b"content-length", b"10")])
    except BodyTooLarge:
        return
    raise AssertionError("the body passed the limit unnoticed")


def test_sizes_read_well() -> None:
    assert describe_size(900) == "900 bytes"
    assert describe_size(10 * 1024 * 1024) == "10 MB"
    assert describe_size(2_621_440) == "2.5 MB"
