"""POST /v1/occlusion: the faces' occlusion maps over HTTP, and the server without a run for it."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from facerep.service import ServiceSettings
from tests.service.conftest import open_client, png_bytes


def covered_face(lfw_faces: np.ndarray) -> np.ndarray:
    """An LFW face at 150 px with a black bar over the eyes (thin enough to be detected)."""
    face = np.asarray(Image.fromarray(lfw_faces[0]).resize((150, 150)).convert("RGB")).copy()
    face[45:62, 30:120] = 0
    return face


def test_occlusion_answers_each_face_with_its_mask_in_the_photo(
    pixel_run: Path, tmp_path: Path, lfw_faces: np.ndarray
) -> None:
    (tmp_path / "g").mkdir()
    settings = ServiceSettings(gallery_dir=tmp_path / "g", occlusion=pixel_run, read_only=True)
    with open_client(settings, tmp_path / "home") as client:
        answer = client.post("/v1/occlusion", files={"image": png_bytes(covered_face(lfw_faces))})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["run"] == pixel_run.name and len(body["faces"]) == 1
        face = body["faces"][0]
        assert set(face["regions"]) == {"eyes", "nose", "mouth"}
        assert face["regions"]["eyes"] > face["regions"]["mouth"]
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(face["mask_png"]))))
        assert mask.shape == (150, 150) and (mask[45:62, 30:120] > 127).any()

        blank = client.post(
            "/v1/occlusion", files={"image": png_bytes(np.full((150, 150, 3), 90, np.uint8))}
        )
        assert blank.status_code == 422 and blank.json()["error"]["code"] == "no_face"
        schema = client.get("/openapi.json").json()
        assert "OcclusionResponse" in schema["components"]["schemas"]
        assert "/v1/occlusion" in schema["paths"]


def test_a_server_without_an_autoencoder_run_says_how_to_start_one(
    client: TestClient, lfw_faces: np.ndarray
) -> None:
    answer = client.post("/v1/occlusion", files={"image": png_bytes(covered_face(lfw_faces))})
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "occlusion_unavailable" and "--occlusion RUN" in error["message"]


def test_embed_can_ignore_occluders_with_a_vit_run_and_says_why_not_otherwise(
    pixel_run: Path, tmp_path: Path, lfw_faces: np.ndarray, client: TestClient
) -> None:
    photo = png_bytes(covered_face(lfw_faces))
    (tmp_path / "g").mkdir()
    settings = ServiceSettings(gallery_dir=tmp_path / "g", encoder=str(pixel_run), read_only=True)
    with open_client(settings, tmp_path / "home") as running:
        plain = running.post("/v1/embed", files={"image": photo}).json()["faces"][0]
        answer = running.post("/v1/embed", files={"image": photo}, data={"ignore_occluded": "true"})
        assert answer.status_code == 200, answer.text
        ignoring = answer.json()["faces"][0]
        assert len(ignoring["embedding"]) == len(plain["embedding"])
        assert not np.allclose(ignoring["embedding"], plain["embedding"])
    # The dlib server has no occlusion run, and dlib cannot leave patches out.
    refused = client.post("/v1/embed", files={"image": photo}, data={"ignore_occluded": "true"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "occlusion_unavailable"
