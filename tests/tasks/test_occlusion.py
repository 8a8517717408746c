"""Occlusion maps: geometry on real faces, the prior's round trip with the run, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerep.data.store import open_dataset
from facerep.models.registry import create_model
from facerep.runs import WEIGHTS_FILE, Preprocess, RunConfig, save_weights, write_run_config
from facerep.tasks.occlusion import (
    LATTICE,
    OcclusionMapper,
    fit_occlusion_prior,
    fit_run_prior,
    fit_token_prior,
    lattice_groups,
    patch_shares,
    token_distances,
    token_zscores,
)
from facerep.tasks.occlusion_prior import PRIOR_FILE, load_prior, save_prior
from tests.cli.test_app import facerep
from tests.conftest import PRIOR_FACES

# A dark bar over the eyes of a 32-px crop (rows 8-15, columns 6-25): sunglasses.
BAR = (slice(8, 16), slice(6, 26))


@pytest.fixture(scope="module")
def unseen(lfw_dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    """The faces the prior did not see, and their landmarks."""
    data = open_dataset(lfw_dataset)
    return np.asarray(data.crops[PRIOR_FACES:]), data.landmarks[PRIOR_FACES:]


def copied_run(run: Path, to: Path) -> Path:
    """A copy of `run`'s config and weights, without its prior."""
    to.mkdir()
    for name in ("config.json", WEIGHTS_FILE):
        (to / name).write_bytes((run / name).read_bytes())
    return to


def test_the_complementary_masks_show_each_patch_once_and_a_quarter_each_time() -> None:
    groups = lattice_groups((8, 8))
    counts = np.bincount(groups)
    assert len(counts) == LATTICE * LATTICE and (counts == 16).all()
    # Neighbours are never shown together: each hidden patch has visible context around it.
    grid = groups.reshape(8, 8)
    assert (grid[:, 1:] != grid[:, :-1]).all() and (grid[1:] != grid[:-1]).all()


def test_an_occluder_is_found_where_it_was_put_and_a_clean_face_stays_clear(
    pixel_run: Path, unseen: tuple[np.ndarray, np.ndarray]
) -> None:
    faces, landmarks = unseen
    occluded = faces.copy()
    occluded[:, BAR[0], BAR[1]] = 0
    truth = np.zeros(faces.shape[1:3], bool)
    truth[BAR] = True
    mapper = OcclusionMapper(pixel_run)
    clean = mapper.maps(faces, landmarks)
    hidden = mapper.maps(occluded, landmarks)
    ious = [(m.mask & truth).sum() / (m.mask | truth).sum() for m in hidden]
    assert np.median(ious) >= 0.5
    assert np.median([m.outlier_fraction for m in clean]) <= 0.05
    # The bar lies over the eyes, not the mouth, and the anomaly score sees it.
    assert np.median([m.regions["eyes"] for m in hidden]) >= 0.5
    assert np.median([m.regions["mouth"] for m in hidden]) <= 0.1
    assert np.mean([h.score > c.score for h, c in zip(hidden, clean, strict=True)]) >= 0.9


def test_the_maps_are_arrays_at_the_run_input_size(
    pixel_run: Path, unseen: tuple[np.ndarray, np.ndarray]
) -> None:
    faces, _ = unseen
    mapper = OcclusionMapper(pixel_run)
    residuals = mapper.residuals(faces[:3])
    assert residuals.shape == (3, 32, 32, 3) and np.isfinite(residuals).all()
    (first,) = mapper.maps(faces[:1])
    assert first.residual.shape == first.normalised.shape == first.mask.shape == (32, 32)
    assert first.mask.dtype == bool
    # Patches kept out of every pass's context change the predictions (attention is global).
    hidden = np.zeros((3, 16), bool)
    hidden[:, 5] = True
    assert not np.allclose(mapper.residuals(faces[:3], hidden), residuals)
    assert patch_shares(np.ones((1, 32, 32), bool), 8).shape == (1, 16)


def test_the_prior_round_trips_with_the_run_and_a_stale_one_is_refused(
    pixel_run: Path, tmp_path: Path, lfw_dataset: Path
) -> None:
    prior = load_prior(pixel_run)
    assert prior is not None and prior.faces == PRIOR_FACES and prior.threshold_ > 0
    assert prior.mean_.shape == prior.std_.shape == (32, 32, 3) and (prior.std_ > 0).all()
    copy = copied_run(pixel_run, tmp_path / "run")
    refit = fit_run_prior(copy, [str(lfw_dataset)], max_faces=PRIOR_FACES)
    again = load_prior(copy)
    assert np.array_equal(again.mean_, refit.mean_) and again.threshold_ == refit.threshold_
    for name in ("mean_", "precision_", "distance_mean_", "distance_std_"):
        stored = getattr(again.tokens, name)
        assert np.allclose(stored, getattr(refit.tokens, name)), name
    # New weights make the prior stale: refused, never silently used.
    model = OcclusionMapper(copy).model
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_weights(copy / WEIGHTS_FILE, state)
    with pytest.raises(ValueError, match="fitted for other weights"):
        OcclusionMapper(copy)
    assert OcclusionMapper(copy, prior=False).prior is None
    (copy / PRIOR_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="damaged occlusion prior"):
        OcclusionMapper(copy)


def test_token_distances_are_mahalanobis_and_an_odd_token_stands_out() -> None:
    rng = np.random.default_rng(0)
    # Two locations with different typical tokens and spreads, as a face's eye and cheek have.
    scale = np.array([[1.0, 1.0, 1.0], [5.0, 0.2, 1.0]])
    fit = rng.normal(size=(400, 2, 3)) * scale + [[0, 0, 0], [3, -1, 2]]
    held = rng.normal(size=(200, 2, 3)) * scale + [[0, 0, 0], [3, -1, 2]]
    prior = fit_token_prior(fit, held)
    point = np.array([1.0, -2.0, 0.5])
    centred = point - prior.mean_[1]
    direct = np.sqrt(centred @ prior.precision_[1] @ centred)
    assert token_distances(np.stack([[point, point]]), prior.mean_, prior.precision_)[0, 1] == (
        pytest.approx(direct, rel=1e-5)
    )
    # Held-out clean tokens are z-scores near 0 and 1; a step along the narrow axis of the
    # second location is far, though the same step along its wide axis is not.
    z = token_zscores(held, prior)
    assert np.abs(z.mean(axis=0)).max() < 0.1 and np.abs(z.std(axis=0) - 1).max() < 0.1
    odd, wide = held[:50].copy(), held[:50].copy()
    odd[:, 1, 1] += 2.0
    wide[:, 1, 0] += 2.0
    assert token_zscores(odd, prior)[:, 1].mean() > 3
    assert token_zscores(wide, prior)[:, 1].mean() < 1


def test_the_token_prior_scores_a_smooth_blob_and_places_it(
    pixel_run: Path, unseen: tuple[np.ndarray, np.ndarray]
) -> None:
    faces, landmarks = unseen
    mapper = OcclusionMapper(pixel_run)
    tokens = mapper.prior.tokens
    assert tokens is not None and tokens.mean_.shape == (16, mapper.model.embed_dim)
    assert tokens.precision_.shape == (16, mapper.model.embed_dim, mapper.model.embed_dim)
    # A flat skin-coloured disc over the mouth and chin, as the bench's hand.
    ys, xs = np.mgrid[0:32, 0:32]
    disc = (xs - 16) ** 2 + (ys - 24) ** 2 <= 7**2
    blob = faces.copy()
    blob[:, disc] = (200, 150, 120)
    clean, covered = mapper.maps(faces, landmarks), mapper.maps(blob, landmarks)
    assert all(m.tokens.shape == (4, 4) for m in clean)
    assert mapper.tokens(faces[:0]).shape == (0, 16, mapper.model.embed_dim)
    # This 8-epoch test model is weaker than a real run (the bench measures the gain over the
    # pixels there); it still scores most covered faces above their clean selves.
    pairs = list(zip(clean, covered, strict=True))
    assert np.mean([c.score < b.score for c, b in pairs]) >= 0.75
    assert np.median([m.region_scores["mouth"] - m.region_scores["eyes"] for m in covered]) > 0


def test_a_prior_without_tokens_still_loads_and_scores_by_the_pixels(
    pixel_run: Path, tmp_path: Path, unseen: tuple[np.ndarray, np.ndarray]
) -> None:
    from dataclasses import replace

    copy = copied_run(pixel_run, tmp_path / "run")
    save_prior(copy, replace(load_prior(pixel_run), tokens=None))
    assert load_prior(copy).tokens is None
    (face,) = OcclusionMapper(copy).maps(unseen[0][:1])
    assert face.tokens is None and face.score == pytest.approx(face.normalised.mean())


def test_a_conv_ae_prior_has_no_token_prior_and_its_maps_score_by_the_pixels(
    tmp_path: Path, unseen: tuple[np.ndarray, np.ndarray]
) -> None:
    # Its bottleneck cells (4x4) lie on another grid than its masks' patches (8x8).
    model = create_model("conv-ae")
    write_run_config(tmp_path / "ae", RunConfig(model.config, Preprocess(64, 256, 0.25)))
    save_weights(tmp_path / "ae" / WEIGHTS_FILE, model.state_dict())
    faces, landmarks = unseen
    prior = fit_occlusion_prior(OcclusionMapper(tmp_path / "ae", prior=False), faces[:12])
    assert prior.tokens is None
    save_prior(tmp_path / "ae", prior)
    (face,) = OcclusionMapper(tmp_path / "ae").maps(faces[:1], landmarks[:1])
    assert face.tokens is None and face.score == pytest.approx(face.normalised.mean())


def test_a_run_without_a_decoder_or_a_prior_is_a_one_line_error(tmp_path: Path) -> None:
    model = create_model("resnet-tiny")
    write_run_config(tmp_path / "cnn", RunConfig(model.config, Preprocess(64, 128, 0.25)))
    save_weights(tmp_path / "cnn" / WEIGHTS_FILE, model.state_dict())
    with pytest.raises(ValueError, match="has no decoder to reconstruct with"):
        OcclusionMapper(tmp_path / "cnn")
    mae = create_model("vit-test")
    write_run_config(tmp_path / "mae", RunConfig(mae.config, Preprocess(32, 32, 0.25)))
    save_weights(tmp_path / "mae" / WEIGHTS_FILE, mae.state_dict())
    with pytest.raises(ValueError, match=r"no occlusion_prior\.safetensors: fit one"):
        OcclusionMapper(tmp_path / "mae", prior=True)


def test_the_cli_writes_masks_overlays_and_a_summary_and_ranks_anomalies(
    pixel_run: Path, tmp_path: Path, lfw_faces: np.ndarray
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    face = np.asarray(Image.fromarray(lfw_faces[0]).resize((150, 150)))
    Image.fromarray(face).save(photos / "clean.png")
    covered = face.copy()
    covered[45:62, 30:120] = 0  # thin enough for the detector to still find the face
    Image.fromarray(covered).save(photos / "covered.png")
    Image.new("RGB", (150, 150), (128, 128, 128)).save(photos / "blank.png")
    Image.new("RGB", (8, 8)).save(photos / "tiny.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")

    out = tmp_path / "out"
    result = facerep("occlusion", str(photos), "-e", str(pixel_run), "--out", str(out), "-q")
    assert result.returncode == 1  # the broken photo could not be read; the rest were explained
    summary = json.loads((out / "occlusion.json").read_text())
    explained = {Path(p["source"]).name: p["faces"] for p in summary["photos"]}
    reasons = {Path(f["source"]).name: f["reason"] for f in summary["failures"]}
    assert set(explained) == {"clean.png", "covered.png"}
    assert reasons["blank.png"] == "no face found"
    assert "too small" in reasons["tiny.png"] and "broken.jpg" in reasons
    for faces in explained.values():
        mask = np.asarray(Image.open(out / faces[0]["mask"]))
        overlay = Image.open(out / faces[0]["overlay"])
        assert mask.shape == (150, 150) and overlay.size == (150, 150)
    # The mask is drawn in the photo's pixels: inside the bar, not around it.
    covered_mask = np.asarray(Image.open(out / explained["covered.png"][0]["mask"])) > 127
    inside = covered_mask[45:62, 30:120]
    assert inside.any() and inside.sum() >= 0.8 * covered_mask.sum()
    assert explained["covered.png"][0]["score"] > explained["clean.png"][0]["score"]

    # A second run replaces the folder whole, and only when asked to.
    again = facerep("occlusion", str(photos / "clean.png"), "-e", str(pixel_run), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    again = facerep(
        "occlusion",
        str(photos / "clean.png"),
        "-e",
        str(pixel_run),
        "--out",
        str(out),
        "--overwrite",
    )
    assert again.returncode == 0, again.stderr
    listed = json.loads((out / "occlusion.json").read_text())["photos"][0]["faces"][0]
    assert sorted(p.name for p in out.glob("*.png")) == sorted([listed["mask"], listed["overlay"]])

    ranked = facerep("anomaly", str(photos), "-e", str(pixel_run), "--json")
    rows = json.loads(ranked.stdout)
    assert [Path(r["source"]).name for r in rows["faces"]] == ["covered.png", "clean.png"]
    assert {Path(f["source"]).name for f in rows["failures"]} == {
        "blank.png",
        "tiny.png",
        "broken.jpg",
    }


def test_the_cli_refuses_a_run_without_a_prior_and_an_input_as_out(
    tiny_run: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(photo)
    result = facerep("occlusion", str(photo), "-e", str(tiny_run), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "fit one with `facerep occlusion-prior`" in result.stderr
    result = facerep(
        "occlusion", str(photo), "-e", str(tiny_run), "--out", str(tmp_path), "--no-prior"
    )
    assert result.returncode == 2 and "\n" not in result.stderr.strip()
    assert "contains the input" in result.stderr


def test_ignoring_occluders_leaves_their_patches_out_of_the_embedding(
    pixel_run: Path, unseen: tuple[np.ndarray, np.ndarray], lfw_faces: np.ndarray
) -> None:
    from facerep.api import embed, verify
    from facerep.encoders.run import RunEncoder

    faces, _ = unseen
    occluded = faces.copy()
    occluded[:, BAR[0], BAR[1]] = 0
    encoder, mapper = RunEncoder(pixel_run), OcclusionMapper(pixel_run)
    plain = encoder.embed(occluded)
    ignoring = mapper.embed_ignoring_occluders(encoder, occluded)
    assert ignoring.shape == plain.shape and np.allclose(
        np.linalg.norm(ignoring, axis=1), 1, atol=1e-5
    )
    assert not np.allclose(ignoring, plain)
    # Nothing hidden is the plain embedding; hiding almost everything keeps the whole face.
    none = np.zeros((len(faces), 16), bool)
    assert np.allclose(encoder.embed_visible(faces, none), encoder.embed(faces), atol=1e-5)
    assert np.allclose(encoder.embed_visible(faces, ~none), encoder.embed(faces), atol=1e-5)

    photo = np.asarray(Image.fromarray(lfw_faces[0]).resize((150, 150)).convert("RGB"))
    (face,) = embed(photo, pixel_run, ignore_occluded=True)
    assert face.embedding.shape == (encoder.dim,)
    covered = photo.copy()
    covered[45:62, 30:120] = 0
    verdict = verify(photo, covered, pixel_run, threshold=0.5, ignore_occluded=True)
    assert 0 < verdict.distance < 2
    with pytest.raises(ValueError, match="ignoring occluders needs a ViT run"):
        embed(photo, "pixels", ignore_occluded=True)
