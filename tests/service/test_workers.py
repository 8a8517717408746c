"""Face workers: processes that find (and, for dlib, embed) faces; replaced when one dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facerep.encoders.dlib import DlibEncoder
from facerep.encoders.pixels import PixelsEncoder
from facerep.faces.find import NoFaceError
from facerep.images import ImageError
from facerep.service.errors import ServiceError
from facerep.service.workers import FaceWorkers, PhotoJob, find_photo_faces
from tests.service.conftest import png_bytes

LIMIT = 40_000_000


def job(data: bytes, name: str = "photo.pgm", max_faces: int | None = None) -> PhotoJob:
    return PhotoJob(data, name, LIMIT, DlibEncoder.input_size, max_faces)


def test_process_workers_find_and_embed_like_the_server_would(orl) -> None:
    photo = orl(3, 1)

    async def scenario() -> None:
        workers = FaceWorkers(2, processes=True, encoder=DlibEncoder())
        try:
            await workers.start()
            assert workers.embeds and len(set(workers.pids())) == 2
            assert os.getpid() not in set(workers.pids())
            [face] = await workers.find(job(photo))
            in_process = find_photo_faces(job(photo))  # this process: found, not embedded
            assert in_process[0].embedding is None
            assert face.box == in_process[0].box
            expected = DlibEncoder().embed(in_process[0].crop[None])[0]
            assert np.abs(face.embedding - expected).max() < 1e-5
        finally:
            workers.close()

    asyncio.run(scenario())


def test_image_and_no_face_errors_cross_the_process_boundary_whole(tmp_path: Path) -> None:
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("L", (8000, 6000)).save(bomb)

    async def scenario() -> None:
        workers = FaceWorkers(1, processes=True, encoder=DlibEncoder())
        try:
            with pytest.raises(ImageError) as corrupt:
                await workers.find(job(b"certainly not a photo", "notes.jpg"))
            assert corrupt.value.kind == "corrupt" and corrupt.value.source == "notes.jpg"
            huge = PhotoJob(bomb.read_bytes(), "bomb.png", 1_000_000, 150)
            with pytest.raises(ImageError) as refused:
                await workers.find(huge)
            assert refused.value.kind == "refused"
            tiny = PhotoJob(png_bytes(np.zeros((6, 6), np.uint8)), "tiny.png", LIMIT, 150)
            with pytest.raises(NoFaceError) as no_face:
                await workers.find(tiny)
            assert no_face.value.source == "tiny.png"
            assert no_face.value.reason == "no face found: image too small to hold a face (6x6 px)"
        finally:
            workers.close()

    asyncio.run(scenario())


def test_a_worker_that_dies_is_answered_503_then_replaced(orl) -> None:
    photo = orl(5, 2)

    async def scenario() -> None:
        workers = FaceWorkers(1, processes=True, encoder=DlibEncoder())
        try:
            await workers.start()
            [pid] = set(workers.pids())
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ServiceError) as died:
                for _ in range(50):  # until the pool notices the death
                    await workers.find(job(photo))
                    await asyncio.sleep(0.1)
            assert died.value.status == 503 and died.value.code == "unavailable"
            assert died.value.headers == {"Retry-After": "1"}
            faces = await workers.find(job(photo))  # a new pool took over
            assert len(faces) == 1 and faces[0].embedding is not None
            assert pid not in set(workers.pids())
        finally:
            workers.close()

    asyncio.run(scenario())


def test_thread_workers_and_batching_encoders_leave_embedding_to_the_server(orl) -> None:
    photo = orl(7, 1)

    async def scenario(workers: FaceWorkers) -> None:
        try:
            await workers.start()
            assert not workers.embeds
            [face] = await workers.find(job(photo, max_faces=1))
            assert face.embedding is None and face.crop.shape == (150, 150, 3)
        finally:
            workers.close()

    asyncio.run(scenario(FaceWorkers(2, processes=False, encoder=DlibEncoder())))
    asyncio.run(scenario(FaceWorkers(1, processes=True, encoder=PixelsEncoder())))


SERVER = """
import asyncio, sys, time
from facerep.encoders.dlib import DlibEncoder
from tests.service.conftest import png_bytes
from facerep.service.workers import FaceWorkers

async def main():
    workers = FaceWorkers(2, processes=True, encoder=DlibEncoder())
    await workers.start()
    print(*workers.pids(), flush=True)
    time.sleep(600)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_server() -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in server.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "workers outlived the killed server"


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
