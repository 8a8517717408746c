"""A real `facerep serve` (uvicorn subprocess on loopback): load, limits, kill -9 safety."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.load_test import (
    AUTH,
    GALLERY,
    STALLED_UPLOAD,
    Server,
    enrol,
    fire,
    make_jobs,
    open_stalled,
    orl_photo,
    read_to_close,
)
from facerep.service import ServiceSettings
from facerep.tasks.gallery import Gallery


@pytest.fixture(scope="module")
def server(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A dlib server with a 1 MB upload limit and a gallery of 10 ORL people."""
    root = tmp_path_factory.mktemp("server")
    with Server(root / "galleries", root / "server.log", "--max-upload-mb", "1") as running:
        asyncio.run(enrol(running.url, shared_data, people=10))
        yield running


def test_smoke_load_has_no_errors(server: Server, shared_data: Path) -> None:
    outcome = asyncio.run(fire(server.url, make_jobs(shared_data, 60), concurrency=8))
    assert not outcome.errors, outcome.errors
    assert len(outcome.latencies["embed"]) == len(outcome.latencies["search"]) == 30
    # The event loop answered throughout while the encoder worked: a probe every 0.2 s plus
    # its latency, so at least one per 2.5 s however long a probe took, each within 2 s.
    assert len(outcome.healthz) >= max(2, outcome.seconds / 2.5), (outcome.seconds, outcome.healthz)
    assert np.percentile(outcome.healthz, 99) < 2.0, outcome.healthz


def send_chunk(connection: socket.socket, data: bytes) -> None:
    """One chunk of a `Transfer-Encoding: chunked` body."""
    connection.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def test_a_streamed_body_is_answered_413_once_it_passes_the_limit(server: Server) -> None:
    head = (
        b"POST /v1/embed HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
    )
    part = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
    reply, chunks = b"", 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head)
        send_chunk(connection, part)
        while chunks < 40 and not reply:  # up to a 4 MB photo, against a 1 MB limit
            send_chunk(connection, b"x" * 100_000)
            chunks += 1
            if select.select([connection], [], [], 0.05)[0]:
                reply = connection.recv(65536)
        while reply and b"too_large" not in reply and (more := connection.recv(65536)):
            reply += more
    assert reply.startswith(b"HTTP/1.1 413") and b'"too_large"' in reply
    assert 10 <= chunks < 20  # answered as the count passed 1 MB, not after the whole body


def test_a_declared_length_over_the_limit_is_413(server: Server) -> None:
    answer = httpx.post(f"{server.url}/v1/embed", files={"image": ("a", bytes(2_000_000))})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"


def test_writes_over_http_need_the_token(server: Server, shared_data: Path) -> None:
    files = {"image": ("a.pgm", orl_photo(shared_data, 1, 1))}
    url = f"{server.url}/v1/galleries/{GALLERY}/faces"
    assert httpx.post(url, files=files, data={"label": "x"}).status_code == 401
    assert httpx.post(url, files=files, data={"label": "x"}, headers=AUTH).status_code == 201


STALL_SECONDS = 4  # the test server's header and body timeouts: short, so the test is too


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with short header and body deadlines and small limits; no data needed."""
    root = tmp_path_factory.mktemp("guarded")
    limits = ["--max-in-flight", "4", "--max-client-connections", "12"]
    limits += ["--header-timeout", str(STALL_SECONDS), "--body-timeout", str(STALL_SECONDS)]
    with Server(root / "galleries", root / "server.log", *limits) as running:
        yield running


def test_stalled_clients_hold_no_place_and_are_dropped(guarded: Server, astronaut_jpeg: bytes):
    port = guarded.port
    start = time.monotonic()
    # From 127.0.0.2: 8 uploads (twice the in-flight limit), 2 half heads, 2 silent, 3 more.
    uploads = [open_stalled(port, STALLED_UPLOAD) for _ in range(8)]
    heads = [open_stalled(port, b"POST /v1/embed HTTP/1.1\r\nHost: x") for _ in range(2)]
    idle = [open_stalled(port, b"") for _ in range(2)]
    over = [open_stalled(port, b"") for _ in range(3)]  # over the 12 per address
    # From 127.0.0.1: a request answered, then the next one's head begun and left unfinished.
    kept = open_stalled(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /he", "127.0.0.1")
    for connection in over:  # closed as they open, unanswered
        assert read_to_close(connection) == b""
    # Another client is served at once, while all 12 stalled connections are still open.
    answer = httpx.post(f"{guarded.url}/v1/embed", files={"image": ("a", astronaut_jpeg)})
    assert answer.status_code == 200 and answer.json()["faces"]
    assert not select.select([*uploads, *heads, *idle], [], [], 0)[0]
    # Then each stalled connection is dropped at its deadline: 408 (JSON) if it began one.
    for connection in [*uploads, *heads]:
        reply = read_to_close(connection)
        assert reply.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in reply, reply
    assert all(read_to_close(connection) == b"" for connection in idle)
    first, _, second = read_to_close(kept).partition(b"HTTP/1.1 408 ")
    assert first.startswith(b"HTTP/1.1 200 ") and b'"request_timeout"' in second
    assert STALL_SECONDS - 0.5 < time.monotonic() - start < 3 * STALL_SECONDS
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    ],
    ids=["length-not-a-number", "negative-length", "two-lengths", "request-line", "header-line"],
)
def test_requests_the_http_layer_refuses_get_json_400(guarded: Server, head: bytes) -> None:
    reply = read_to_close(open_stalled(guarded.port, head, source="127.0.0.1"))
    status_and_headers, _, body = reply.partition(b"\r\n\r\n")
    assert status_and_headers.startswith(b"HTTP/1.1 400 "), reply
    assert b"content-type: application/json" in status_and_headers.lower()
    assert json.loads(body)["error"]["code"] == "bad_request"


BURST = 48
KILL_AFTER = 8


def test_kill_9_mid_burst_keeps_every_acknowledged_add(shared_data: Path, tmp_path: Path) -> None:
    galleries = tmp_path / "galleries"
    labels = [f"add-{i}" for i in range(BURST)]
    acknowledged: dict[str, int] = {}

    async def burst(server: Server) -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client:

            async def add(i: int) -> None:
                person, n = 1 + i % 40, 2 + i // 40
                files = {"image": (f"s{person}-{n}.pgm", orl_photo(shared_data, person, n))}
                try:
                    answer = await client.post(
                        f"/v1/galleries/{GALLERY}/faces", files=files, data={"label": labels[i]}
                    )
                except httpx.HTTPError:
                    return  # no answer: the add may or may not have been committed
                if answer.is_success:
                    acknowledged[labels[i]] = answer.json()["id"]
                    if len(acknowledged) == KILL_AFTER:
                        server.kill()

            await asyncio.gather(*(add(i) for i in range(BURST)))

    with Server(galleries, tmp_path / "server.log") as server:  # stopped even if the burst fails
        workers = [pid for pid in children(server.process.pid) if is_face_worker(pid)]
        asyncio.run(burst(server))
    assert server.process.returncode == -9, "the burst finished before the kill"
    assert len(workers) == ServiceSettings.detect_workers
    deadline = time.monotonic() + 10
    while set(workers) & alive_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(workers) & alive_pids(), "worker processes outlived the killed server"
    assert KILL_AFTER <= len(acknowledged) < BURST

    with Server(galleries, tmp_path / "restarted.log") as restarted:
        stored = Gallery(galleries / GALLERY, create=False).faces()
        found = {face.label: face.id for face in stored}
        assert len(found) == len(stored)  # no add is there twice
        assert set(found) <= set(labels)  # nothing that was not sent
        for label, face_id in acknowledged.items():  # everything that was acknowledged
            assert found.get(label) == face_id, label
        info = httpx.get(f"{restarted.url}/v1/galleries/{GALLERY}").json()
        assert info["faces"] == len(stored)
        query = {"image": ("q.pgm", orl_photo(shared_data, 1, 9))}
        search = httpx.post(f"{restarted.url}/v1/galleries/{GALLERY}/search", files=query)
        assert search.status_code == 200 and search.json()["matches"]


def children(pid: int) -> list[int]:
    """The running processes whose parent is `pid` (Linux /proc)."""
    return [child for child in alive_pids() if _state_and_parent(child)[1] == pid]


def is_face_worker(pid: int) -> bool:
    """Whether `pid` is a spawned multiprocessing worker (not its resource tracker)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in command


def alive_pids() -> set[int]:
    """Running processes (zombies, dead but not yet reaped, count as gone)."""
    pids = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    return {pid for pid in pids if _state_and_parent(pid)[0] not in ("Z", "gone")}


def _state_and_parent(pid: int) -> tuple[str, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except OSError:
        return "gone", 0
    return fields[0], int(fields[1])
