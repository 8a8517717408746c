"""A micro-batcher: concurrent requests share encoder forward passes, one pass at a time.

Requests enqueue their aligned crops and await a future. One worker takes the queue's head,
waits up to `max_wait_s` for more crops while the batch holds fewer than `batch_size`, runs
`embed` once on the lot in its own thread (off the event loop) and hands each request its rows.
Under load the wait rarely matters: while one pass runs, the next batch queues up behind it.

Whether it pays depends on the encoder (bench/load_test.py, 2 CPU cores, concurrency 16): a
vit-tiny run serves 1.75-2x the requests/s with batching on, at a mean batch of 8 crops. dlib's
ResNet costs the same per crop at any batch size and holds the GIL while it runs: the server's
face workers embed with it in their own processes instead (`facerep.service.workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class _Pending:
    crops: np.ndarray
    future: asyncio.Future


class BatcherClosed(RuntimeError):
    """The batcher stopped (the server is shutting down) before these crops were embedded."""


class EmbedBatcher:
    """Embed `[N, S, S, 3]` uint8 crops through shared calls of `embed`.

    Args:
        embed: the encoder's `embed`: `[N, S, S, 3]` uint8 -> `[N, D]` float32.
        batch_size: crops per call at most (a single request with more runs alone); 1 = off.
        max_wait_s: how long the first request of a batch waits for others.
    """

    def __init__(
        self, embed: Callable[[np.ndarray], np.ndarray], batch_size: int = 8, max_wait_s=0.002
    ):
        self.embed_fn = embed
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.batches = 0  # encoder calls made
        self.crops = 0  # crops embedded
        self._pending: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task | None = None
        # One thread: passes never overlap, so a torch encoder never fights itself for cores.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="facerep-embed")

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def warm_up(self, crops: np.ndarray) -> None:
        """Embed `crops` once on the batcher's thread, uncounted: whatever the encoder loads per
        thread (dlib's models) is then loaded before the first request."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.embed_fn, crops)

    async def stop(self) -> None:
        """Stop the worker; requests waiting or in the encoder fail with `BatcherClosed`.

        (Uvicorn finishes open requests before the app shuts down, so normally there are none.)
        """
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        _fail(list(self._pending), BatcherClosed("the server is shutting down"))
        self._pending.clear()
        await asyncio.to_thread(self._executor.shutdown)  # waits for a pass still running

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        """`[N, S, S, 3]` uint8 crops -> `[N, D]` float32 unit rows, embedded in a shared pass."""
        if self._worker is None or self._worker.done():
            raise BatcherClosed("the embedding worker is not running")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(np.asarray(crops), future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._embed_batch(batch)

    async def _next_batch(self) -> list[_Pending]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        # An Event, not Queue.get under a timeout: a timed-out wait can never swallow a request.
        while self._queued_crops() < self.batch_size and loop.time() < deadline:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._arrived.wait()
        return self._take()

    def _queued_crops(self) -> int:
        return sum(len(item.crops) for item in self._pending)

    def _take(self) -> list[_Pending]:
        """The head of the queue up to `batch_size` crops (always at least one request)."""
        batch = [self._pending.popleft()]
        size = len(batch[0].crops)
        while self._pending and size + len(self._pending[0].crops) <= self.batch_size:
            item = self._pending.popleft()
            batch.append(item)
            size += len(item.crops)
        return [item for item in batch if not item.future.done()]  # done: client went away

    async def _embed_batch(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        crops = np.concatenate([item.crops for item in batch])
        loop = asyncio.get_running_loop()
        try:
            vectors = await loop.run_in_executor(self._executor, self.embed_fn, crops)
        except asyncio.CancelledError:
            _fail(batch, BatcherClosed("the server is shutting down"))
            raise
        except Exception as error:
            _fail(batch, error)
            return
        self.batches += 1
        self.crops += len(crops)
        start = 0
        for item in batch:
            rows = vectors[start : start + len(item.crops)]
            start += len(item.crops)
            if not item.future.done():
                item.future.set_result(rows)


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
