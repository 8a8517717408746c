"""The in-flight limit: work beyond it is answered 503 at once, reads never are."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from facerep.service import ServiceSettings, create_app
from facerep.service.admission import InFlightLimitMiddleware


class HeldApp:
    """An ASGI app whose POSTs wait until released; anything else answers at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["method"] == "POST":
            self.entered += 1
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


async def until(condition, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_requests_beyond_the_limit_get_503_and_reads_still_answer() -> None:
    inner = HeldApp()
    limited = InFlightLimitMiddleware(inner, max_in_flight=2)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(client.post("/v1/embed")) for _ in range(2)]
            await until(lambda: inner.entered == 2)

            refused = await client.post("/v1/embed")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert "limit of 2 requests" in refused.json()["error"]["message"]
            assert (await client.delete("/v1/galleries/g/faces/1")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200  # reads are never refused
            assert inner.entered == 2  # the refused requests never reached the app

            inner.release.set()
            assert [(await answer).status_code for answer in held] == [200, 200]
            assert limited.in_flight == 0
            assert (await client.post("/v1/embed")).status_code == 200  # room again

    asyncio.run(scenario())


def test_a_failing_request_gives_its_place_back() -> None:
    async def failing(scope, receive, send) -> None:
        raise RuntimeError("bug")

    limited = InFlightLimitMiddleware(failing, max_in_flight=1)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    for _ in range(3):
        with pytest.raises(RuntimeError):
            asyncio.run(limited(scope, receive, send))
        assert limited.in_flight == 0


def test_the_app_applies_the_configured_limit(tmp_path) -> None:
    app = create_app(ServiceSettings(gallery_dir=tmp_path, token="t", max_in_flight=3))
    [limit] = [m for m in app.user_middleware if m.cls is InFlightLimitMiddleware]
    assert limit.kwargs == {"max_in_flight": 3}
