"""The micro-batcher: shared passes, rows back to the right request, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from facerep.service.batcher import BatcherClosed, EmbedBatcher


class CountingEncoder:
    """Embeds a crop as [its first pixel value, 1]: each row says which crop it came from."""

    def __init__(self, seconds_per_call: float = 0.0):
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.seconds = seconds_per_call

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        self.calls.append(len(crops))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return np.stack([crops[:, 0, 0, 0].astype(np.float32), np.ones(len(crops))], axis=1)


def crops(*values: int) -> np.ndarray:
    return np.stack([np.full((4, 4, 3), v, np.uint8) for v in values])


def run(coroutine):
    return asyncio.run(coroutine)


async def embed_all(batcher: EmbedBatcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.embed(r) for r in requests))
    finally:
        await batcher.stop()


def test_concurrent_requests_share_passes_and_get_their_own_rows() -> None:
    encoder = CountingEncoder(seconds_per_call=0.02)
    batcher = EmbedBatcher(encoder, batch_size=4, max_wait_s=0.01)
    requests = [crops(i) for i in range(10)] + [crops(100, 101)]
    results = run(embed_all(batcher, requests))
    for request, rows in zip(requests, results, strict=True):
        np.testing.assert_array_equal(rows[:, 0], request[:, 0, 0, 0])
    assert sum(encoder.calls) == 12 and max(encoder.calls) <= 4
    assert len(encoder.calls) <= 4  # 12 crops in passes of up to 4
    assert batcher.batches == len(encoder.calls) and batcher.crops == 12
    assert all(name.startswith("facerep-embed") for name in encoder.threads)  # off the loop


def test_batch_size_1_embeds_each_request_alone() -> None:
    encoder = CountingEncoder()
    run(
        embed_all(EmbedBatcher(encoder, batch_size=1, max_wait_s=0.0), [crops(i) for i in range(5)])
    )
    assert encoder.calls == [1] * 5


def test_a_request_larger_than_the_batch_runs_whole() -> None:
    encoder = CountingEncoder()
    [rows] = run(embed_all(EmbedBatcher(encoder, batch_size=2), [crops(*range(7))]))
    assert encoder.calls == [7] and rows.shape == (7, 2)


def test_a_lone_request_waits_at_most_max_wait() -> None:
    encoder = CountingEncoder()
    batcher = EmbedBatcher(encoder, batch_size=8, max_wait_s=0.05)
    start = time.perf_counter()
    run(embed_all(batcher, [crops(1)]))
    assert 0.04 <= time.perf_counter() - start < 1.0 and encoder.calls == [1]


def test_an_encoder_failure_reaches_every_request_of_its_batch_only() -> None:
    def failing(batch: np.ndarray) -> np.ndarray:
        if (batch[:, 0, 0, 0] == 13).any():
            raise RuntimeError("bad crop")
        return np.ones((len(batch), 2), np.float32)

    async def scenario() -> list:
        batcher = EmbedBatcher(failing, batch_size=2, max_wait_s=0.01)
        batcher.start()
        try:
            results = await asyncio.gather(
                batcher.embed(crops(13)),
                batcher.embed(crops(1)),
                batcher.embed(crops(2)),
                return_exceptions=True,
            )
            after = await batcher.embed(crops(3))  # the worker survives the failure
        finally:
            await batcher.stop()
        return [*results, after]

    first, second, third, after = run(scenario())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert third.shape == (1, 2) and after.shape == (1, 2)


def test_stop_fails_waiting_requests_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        batcher = EmbedBatcher(CountingEncoder(seconds_per_call=0.2), batch_size=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.embed(crops(1)))
        waiting = asyncio.ensure_future(batcher.embed(crops(2)))
        await asyncio.sleep(0.05)  # the first is in the encoder, the second queued
        await batcher.stop()
        for request in (first, waiting):  # nobody is left waiting forever
            with pytest.raises(BatcherClosed):
                await request
        with pytest.raises(BatcherClosed):
            await batcher.embed(crops(3))

    run(scenario())


def test_a_cancelled_request_is_skipped() -> None:
    async def scenario() -> list[int]:
        encoder = CountingEncoder(seconds_per_call=0.1)
        batcher = EmbedBatcher(encoder, batch_size=1, max_wait_s=0.0)
        batcher.start()
        busy = asyncio.ensure_future(batcher.embed(crops(1)))
        gone = asyncio.ensure_future(batcher.embed(crops(2)))
        await asyncio.sleep(0.02)
        gone.cancel()
        await busy
        await batcher.embed(crops(3))
        await batcher.stop()
        return encoder.calls

    assert run(scenario()) == [1, 1]  # crop 2 never reached the encoder
