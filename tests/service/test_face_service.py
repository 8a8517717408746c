"""FaceService: models warmed where they serve, shutdown off the event loop, 503s."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest

from facerep.service import ServiceSettings
from facerep.service.galleries import GalleryRegistry
from tests.service.conftest import TOKEN, open_client

DLIB_MODELS = (
    "get_frontal_face_detector",
    "cnn_face_detection_model_v1",
    "shape_predictor",
    "face_recognition_model_v1",
)


def test_warm_up_builds_each_model_once_in_each_thread_that_serves(
    service_dir: Path, orl, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlib

    built: Counter[tuple[str, str]] = Counter()  # (thread, dlib model) -> constructions
    for model in DLIB_MODELS:

        def counting(*args: object, _build=getattr(dlib, model), _model=model) -> object:
            built[(threading.current_thread().name, _model)] += 1
            return _build(*args)

        monkeypatch.setattr(dlib, model, counting)
    settings = ServiceSettings(
        gallery_dir=service_dir / "warm", token=TOKEN, detect_workers=3, detect_processes=False
    )
    with open_client(settings, service_dir / "home-warm") as client:
        warm = dict(built)
        detectors = [f"facerep-detect_{i}" for i in range(3)]
        assert warm == {
            **{(thread, "get_frontal_face_detector"): 1 for thread in detectors},
            # No CNN: the blank warm-up photo has no near miss for the cascade's CNN stage.
            **{(thread, "shape_predictor"): 1 for thread in detectors},
            ("facerep-embed_0", "face_recognition_model_v1"): 1,
        }
        for person in range(1, 7):
            files = {"a": ("a.pgm", orl(person, 1)), "b": ("b.pgm", orl(person, 2))}
            assert client.post("/v1/verify", files=files).status_code == 200
        assert dict(built) == warm  # serving built nothing more


def test_close_runs_off_the_event_loop(service_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed_on_loop: list[bool] = []
    close = GalleryRegistry.close

    def recording_close(self: GalleryRegistry) -> None:
        try:
            asyncio.get_running_loop()
            closed_on_loop.append(True)
        except RuntimeError:
            closed_on_loop.append(False)
        close(self)

    monkeypatch.setattr(GalleryRegistry, "close", recording_close)
    settings = ServiceSettings(gallery_dir=service_dir / "closing", token=TOKEN)
    with open_client(settings, service_dir / "home-closing"):
        pass
    assert closed_on_loop == [False]


def test_a_stopped_batcher_answers_503(service_dir: Path, orl) -> None:
    # In threads, so that the batcher embeds (dlib's process workers embed themselves).
    settings = ServiceSettings(
        gallery_dir=service_dir / "stopping", token=TOKEN, detect_processes=False
    )
    with open_client(settings, service_dir / "home-stopping") as client:
        client.portal.call(client.app.state.service.batcher.stop)
        answer = client.post("/v1/embed", files={"image": ("a.pgm", orl(1, 1))})
        assert answer.status_code == 503
        assert answer.json()["error"] == {
            "code": "unavailable",
            "message": "the embedding worker is not running",
        }
        assert client.get("/healthz").status_code == 200
