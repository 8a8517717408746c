"""Where uploaded photos are decoded and their faces found: worker processes, or threads.

dlib's models do not run side by side in threads of one process: on ORL photos two threads
that detect and embed run at 0.85x the rate of one, and dlib's recogniser alone at 0.96x (it
holds the GIL). Worker processes run them side by side on every core. With an encoder that
holds the GIL (dlib's: `holds_gil`), a worker embeds the faces it found as well: dlib gains
nothing from batching, and shipping the crops back only to queue them on one core would waste
the other. Encoders that release the GIL (torch) keep embedding in the server, where the
micro-batcher shares forward passes.

Workers are spawned (never forked from a server that runs threads), build their models when they
start, die with the server (Linux: PR_SET_PDEATHSIG, so a kill -9 leaves no orphans) and ignore
Ctrl-C, which reaches the whole process group while the server drains its requests. If a worker
dies, the pool fails every photo it holds (503 with Retry-After) and a fresh pool, warmed in
the background, takes over.

Spawned workers import the module that started the server, as multiprocessing does: a script
that serves must keep its top level under `if __name__ == "__main__":`.

This module is what workers import: it stays free of FastAPI and FAISS.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from facerep.encoders.base import Encoder, embed_faces, holds_gil
from facerep.faces.find import NoFaceError, find_faces
from facerep.images import decode_image
from facerep.types import Face

PR_SET_PDEATHSIG = 1  # linux/prctl.h

logger = logging.getLogger(__name__)

# The encoder a worker process embeds with (None: the server embeds); set by `_start_worker`.
_worker_encoder: Encoder | None = None


@dataclass(frozen=True)
class PhotoJob:
    """What a worker needs to find (and maybe embed) the faces of one uploaded photo."""

    data: bytes
    name: str
    max_pixels: int
    size: int  # the encoder's input side: crops are aligned at it
    max_faces: int | None = None  # the largest this many (None: all)


def find_photo_faces(job: PhotoJob) -> list[Face]:
    """Decode the photo and find its faces, largest first; embedded too in an embedding worker.

    Raises:
        ImageError: the bytes are not a usable image. NoFaceError: it holds no face.
    """
    pixels = decode_image(job.data, job.name, max_pixels=job.max_pixels)
    faces = find_faces(pixels, size=job.size, max_faces=job.max_faces)
    if not faces:
        raise NoFaceError.in_image(job.name, pixels)
    if _worker_encoder is not None:
        embed_faces(faces, _worker_encoder)
    return faces


class FaceWorkers:
    """A pool that finds faces in photos: `processes` workers, or threads of this process.

    Args:
        workers: photos handled at once.
        processes: run them in worker processes (else threads).
        encoder: the server's encoder; with processes and `holds_gil`, workers embed with it.
    """

    def __init__(self, workers: int, processes: bool, encoder: Encoder):
        self.workers, self.processes = workers, processes
        self.embeds = processes and holds_gil(encoder)
        self._encoder = encoder if self.embeds else None
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._warming: asyncio.Task | None = None  # a replacement pool starting its workers

    def _new_pool(self) -> Executor:
        if not self.processes:
            return ThreadPoolExecutor(self.workers, "facerep-detect")
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(), self._encoder),
        )

    async def start(self) -> None:
        """Start every worker and build its models now, not on the first requests."""
        loop = asyncio.get_running_loop()
        if self.processes:
            # No worker is idle yet, so each of these spawns one; each builds its models first.
            jobs = [loop.run_in_executor(self._pool, _ready) for _ in range(self.workers)]
        else:
            # Each waits until all have started, so every thread of the pool takes one.
            started = threading.Barrier(self.workers)
            jobs = [
                loop.run_in_executor(self._pool, _warm_up_thread, started)
                for _ in range(self.workers)
            ]
        await asyncio.gather(*jobs)

    async def find(self, job: PhotoJob) -> list[Face]:
        """The photo's faces, largest first (with embeddings when `embeds`).

        Raises:
            ImageError: not a usable image. NoFaceError: it holds none. ServiceError: 503 when
            a worker died meanwhile.
        """
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, find_photo_faces, job)
        except BrokenProcessPool:
            self._replace(pool)
            # Server-side only: errors imports FastAPI, which workers never load.
            from facerep.service.errors import RETRY_AFTER_SECONDS, ServiceError

            raise ServiceError(
                503,
                "unavailable",
                f"{job.name}: a face worker stopped while it waited; retry",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None

    def _replace(self, broken: Executor) -> None:
        """A new pool for the broken one (once, however many requests saw it break), warmed
        in the background so that the next requests do not wait for its models."""
        with self._lock:
            if self._pool is not broken:
                return
            self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)
        logger.warning("a face worker process died; its photos were answered 503, restarting")
        self._warming = asyncio.get_running_loop().create_task(self.start())

    def pids(self) -> list[int]:
        """The worker processes' ids (none for threads, or before `start`)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(process.pid for process in processes.values())

    def close(self) -> None:
        """Finish the photos under way and stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(server_pid: int, encoder: Encoder | None) -> None:
    """Runs first in each worker process: tie it to the server, then build its models."""
    global _worker_encoder
    # Ctrl-C reaches the whole process group: the server drains its requests, then stops us.
    # SIGTERM keeps its default: the pool terminates the workers of a broken pool with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The signal comes when the thread that spawned us ends: the server's event loop thread,
    # which submits every job (a pool spawns its processes on submit), lives as long as it.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d)", ctypes.get_errno())
        if os.getppid() != server_pid:  # the server died before prctl took effect
            os._exit(1)
    _worker_encoder = encoder
    _warm_up_models()


def _warm_up_models() -> None:
    find_faces(np.full((64, 64, 3), 128, np.uint8))  # builds the detector and landmark models
    if _worker_encoder is not None:
        size = _worker_encoder.input_size
        _worker_encoder.embed(np.zeros((1, size, size, 3), np.uint8))


def _ready() -> int:
    return os.getpid()


def _warm_up_thread(started: threading.Barrier) -> None:
    started.wait(timeout=60)
    find_faces(np.full((64, 64, 3), 128, np.uint8))  # this thread's own dlib models
