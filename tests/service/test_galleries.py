"""The gallery registry: one open per gallery, opening off the registry lock, counted sizes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from facerep.encoders.registry import resolve_encoder
from facerep.service import galleries
from facerep.service.errors import ServiceError
from facerep.service.galleries import GalleryRegistry
from facerep.tasks.gallery import Gallery, GalleryError
from facerep.types import Box

BOX = Box(0.0, 0.0, 10.0, 10.0)


@pytest.fixture
def registry(tmp_path: Path) -> GalleryRegistry:
    """A registry on a fresh folder, with the cheap `pixels` encoder."""
    return GalleryRegistry(tmp_path, resolve_encoder("pixels"))


def vector(registry: GalleryRegistry, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=registry.encoder.dim).astype(np.float32)


def test_sizes_are_counted_at_open_and_follow_this_servers_writes(
    registry: GalleryRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Gallery(tmp_path / "old", registry.encoder) as made_elsewhere:
        made_elsewhere.add_embeddings(
            np.stack([vector(registry, 1), vector(registry, 2)]), ["a", "b"]
        )
    registry.get("old")
    first = registry.add("new", vector(registry, 3), "c", "c.jpg", BOX)
    registry.add("new", vector(registry, 4), "d", None, BOX)
    assert registry.remove("old", 1) and not registry.remove("old", 1)
    assert registry.remove("new", first)

    def no_count(gallery: Gallery) -> int:
        raise AssertionError("sizes() must not count a gallery's rows")

    monkeypatch.setattr(Gallery, "__len__", no_count)
    assert registry.sizes() == {"old": 1, "new": 1}
    registry.close()
    assert registry.sizes() == {}


def test_names_are_checked_before_the_filesystem(registry: GalleryRegistry, tmp_path: Path):
    for name in ("..", "a/b", ".x", "a\n"):
        with pytest.raises(ServiceError) as raised:
            registry.get(name, create=True)
        assert raised.value.status == 422
    assert list(tmp_path.iterdir()) == []


def test_a_missing_gallery_is_not_created_unless_asked(registry: GalleryRegistry) -> None:
    with pytest.raises(GalleryError) as raised:
        registry.get("later")
    assert raised.value.kind == "not_found"
    assert registry.get("later", create=True) is registry.get("later")


def test_opening_a_gallery_holds_up_only_that_gallery(
    registry: GalleryRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.get("other", create=True)
    release, entered = threading.Event(), threading.Event()
    opened: list[str] = []

    class SlowGallery(Gallery):
        def __init__(self, path: Path, *args: object, **kwargs: object):
            opened.append(path.name)
            if path.name == "slow":
                entered.set()
                assert release.wait(30)
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(galleries, "Gallery", SlowGallery)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(registry.get, "slow", create=True)
        assert entered.wait(30)
        second = pool.submit(registry.get, "slow")  # waits for the first open, no second one
        # While "slow" opens, other galleries and the sizes answer at once.
        assert pool.submit(registry.get, "other").result(timeout=5) is not None
        assert pool.submit(registry.get, "third", create=True).result(timeout=5) is not None
        assert registry.sizes() == {"other": 0, "third": 0}
        assert not second.done()
        release.set()
        assert first.result(timeout=30) is second.result(timeout=30)
    assert opened.count("slow") == 1 and registry.sizes()["slow"] == 0
    registry.close()


def test_a_failed_open_lets_the_next_caller_try_again(
    registry: GalleryRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    class FlakyGallery(Gallery):
        def __init__(self, *args: object, **kwargs: object):
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("disk hiccup")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(galleries, "Gallery", FlakyGallery)
    with pytest.raises(OSError, match="hiccup"):
        registry.get("flaky", create=True)
    assert registry.get("flaky", create=True) is registry.get("flaky")
    assert calls == 2
    registry.close()
