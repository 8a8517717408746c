"""Occlusion maps and anomaly scores: what a face's masked autoencoder cannot explain.

After FOCUS (Li et al., "Robust Model-based Face Reconstruction through Weakly-Supervised Outlier
Segmentation", CVPR 2023): the regions a face model cannot fit are occluders, make-up or
manipulations, told apart from regions that are merely hard to fit (hairlines, eyebrows, the
background at the crop's edge) by a per-location prior of the residuals on clean faces. FSFM and
GANprintR use such residuals as evidence of manipulated faces.

Here the face model is a facerep run's masked autoencoder:
1. Every patch is predicted from its context: the face is reconstructed under complementary
   masks, each showing one cell of a 2x2 lattice of patches (a quarter of them, MAE's 75% ratio),
   so each patch is hidden in three of the four passes, and its prediction is their mean.
2. The residual per pixel and channel (absolute, in the model's own target space: pixels, or
   each patch normalised for a `norm_pix_loss` run) is normalised by the run's prior: the mean and
   spread of that residual at that location on clean training faces (`OcclusionPrior`).
   Without a prior, each face's residuals are normalised by their own median and spread.
3. The normalised map, smoothed, is thresholded at what only 1% of clean faces' pixels exceed,
   grown by hysteresis into the weaker outliers that touch it, and specks smaller than
   `MIN_OUTLIER_AREA` of the face are dropped: the outlier mask.
4. The patches the mask covers are then hidden in every pass, so no prediction leans on the
   occluder, and steps 2-3 run again (one round of FOCUS's alternation).
5. The anomaly score of a ViT run's face comes from its encoder's tokens instead (PaDiM-style,
   `TokenPrior`): each patch token's Mahalanobis distance from the clean faces' tokens at that
   location, as a z-score against held-out clean faces; the score is the mean of the highest
   `TOKEN_TOP_SHARE` of them. The pixel residual cannot score a smooth occluder the decoder
   copies from its neighbours (a hand); the token, which knows it is not a cheek, can.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facerep.encoders.run import RunEncoder, model_inputs, model_tokens
from facerep.faces.dlib_models import DetectorName
from facerep.models.losses import patch_norm_stats
from facerep.models.mae import MaskedAutoencoder
from facerep.models.masking import face_regions, rows_by_mask_count
from facerep.models.vit import patchify, unpatchify
from facerep.runs import load_run_model, weights_digest
from facerep.tasks.occlusion_prior import OcclusionPrior, TokenPrior, run_prior
from facerep.types import Face

# The lattice of the complementary masks: a stride of 2 shows every other patch in both
# directions, a quarter of them, so each pass hides 75% as MAE trained, and every hidden patch
# has visible neighbours on all sides.
LATTICE = 2
# A pixel is an outlier where its smoothed normalised residual exceeds this quantile of the
# same on clean faces: 1% of a clean face's pixels, before specks are dropped.
CLEAN_QUANTILE = 0.99
# Smoothing of the normalised map, as a share of the input side (1.3 px at 64 px): single noisy
# pixels do not make a mask, a sunglasses bar or a hand does.
SMOOTH_SIGMA = 0.02
# An outlier region reaches out to the pixels above this share of the threshold that touch it:
# an occluder's edges and flat middle fit the face better than its strongest pixels. Set on the
# built-in LFW sample with the bench's synthetic occluders (mean mask IoU of the 4 kinds 0.23
# without, 0.36 at 0.5; clean faces' outlier share 2%), never on the bench's ORL or cs131 faces.
HYSTERESIS_LOW = 0.5
# The threshold without a prior: 3 robust standard deviations above the face's own median.
SELF_THRESHOLD = 3.0
# Connected outlier regions smaller than this share of the crop are dropped as specks.
MIN_OUTLIER_AREA = 0.01
# A patch is kept out of the context in the second pass when this share of it is outlier.
HIDE_PATCH_SHARE = 0.25
# Faces the prior sets the threshold on are held out of its mean and spread, so the threshold
# sees residuals as unseen clean faces give them.
THRESHOLD_SHARE = 0.2
# The anomaly score is the mean of this share of a face's patches, those with the highest token
# z-scores: an occluder or a swapped region covers part of the face, and the mean over all
# patches dilutes it. Set on the built-in LFW sample with the bench's synthetic occluders
# (mean AUC of the 4 kinds against clean faces 0.977 at a tenth, 0.972 at a quarter, 0.948
# for the mean of all patches; the pixel residual's mean 0.824), never on ORL or cs131.
TOKEN_TOP_SHARE = 0.1
# Regions of `face_regions` reported per face; the eyes are one region.
REGIONS = {"eyes": (0, 1), "nose": (2,), "mouth": (3,)}


@dataclass(frozen=True)
class OcclusionMap:
    """Where one aligned face departs from what the autoencoder predicts, at the model's input size.

    Attributes:
        residual: `[H, W]` absolute residual, mean over channels, in the model's target units.
        normalised: `[H, W]` residual normalised by the prior (or by the face's own spread).
        mask: `[H, W]` bool outlier mask.
        score: the face's anomaly score: the mean of its highest `TOKEN_TOP_SHARE` token
            z-scores where the prior has tokens, else the mean normalised residual.
        regions: outlier share of each face region (eyes, nose, mouth).
        region_scores: mean token z-score (else normalised residual) of each face region.
        tokens: `[gh, gw]` z-score of each patch token's distance from clean faces' tokens at
            that place, or None without a token prior.
    """

    residual: np.ndarray
    normalised: np.ndarray
    mask: np.ndarray
    score: float
    regions: dict[str, float]
    region_scores: dict[str, float]
    tokens: np.ndarray | None = None

    @property
    def outlier_fraction(self) -> float:
        """Share of the crop the mask covers."""
        return float(self.mask.mean())


class OcclusionMapper:
    """A run's masked autoencoder, reconstructing faces to map what it cannot explain.

    Args:
        run: a run folder whose model has a decoder (a ViT MAE or the conv-AE).
        prior: use the run's stored `OcclusionPrior`: None when it has one, True to require it,
            False to normalise each face by itself.
        batch_size: faces per forward pass.
        device: where to run; CUDA when present by default.
    """

    def __init__(
        self,
        run: str | Path,
        prior: bool | None = None,
        batch_size: int = 64,
        device: str | torch.device | None = None,
    ):
        self.run = Path(run)
        self.model, config = load_run_model(self.run)
        if not hasattr(self.model, "forward_decoder"):
            raise ValueError(
                f"{run}: a {config.model.name} run has no decoder to reconstruct with; "
                "occlusion maps need a masked autoencoder run (vit-*, conv-ae)"
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        preprocess = config.preprocess
        self.input_size, self.batch_size = preprocess.input_size, batch_size
        self.mean = torch.tensor(preprocess.mean, device=self.device)[None, :, None, None]
        self.std = torch.tensor(preprocess.std, device=self.device)[None, :, None, None]
        self.padding = preprocess.crop_padding
        self.prior = run_prior(self.run, prior)
        self.weights = weights_digest(self.run)

    def residuals(self, faces: np.ndarray, hidden: np.ndarray | None = None) -> np.ndarray:
        """Absolute residuals of `[N, S, S, 3]` uint8 faces: `[N, H, W, C]` at the input size.

        `hidden`: `[N, L]` bool, patches kept out of the context in every pass.
        """
        step = self.batch_size
        parts = [
            self._residuals(faces[i : i + step], None if hidden is None else hidden[i : i + step])
            for i in range(0, len(faces), step)
        ]
        size = self.input_size
        return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.float32)

    @torch.no_grad()
    def _residuals(self, faces: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        model = self.model
        imgs = self._inputs(faces)
        target = patchify(imgs, model.patch_size)
        if model.norm_pix_loss:
            mean, std = patch_norm_stats(target)
            target = (target - mean) / std
        lattice = torch.from_numpy(lattice_groups(model.grid_size)).to(self.device)
        kept_out = (
            torch.zeros(target.shape[:2], dtype=torch.bool, device=self.device)
            if hidden is None
            else torch.from_numpy(hidden).to(self.device)
        )
        total = torch.zeros_like(target)
        count = torch.zeros(target.shape[:2], device=self.device)
        for group in range(LATTICE * LATTICE):
            masked = (lattice != group)[None] | kept_out
            pred = self._predict(imgs, masked)
            total += pred * masked[..., None]
            count += masked
        pred = total / count.clamp(min=1)[..., None]
        residual = (pred - target).abs()
        image = unpatchify(residual, model.patch_size, model.in_chans, model.grid_size)
        return image.permute(0, 2, 3, 1).contiguous().float().cpu().numpy()

    def _predict(self, imgs: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Predicted patches `[N, L, K]`; rows hiding different counts run in separate batches."""
        pred = torch.empty(
            (*masked.shape, self.model.patch_size**2 * self.model.in_chans), device=self.device
        )
        for rows in rows_by_mask_count(masked):
            _, pred[rows], _ = self.model(imgs[rows], mask=masked[rows].float())
        return pred

    def normalise(self, residuals: np.ndarray) -> np.ndarray:
        """`[N, H, W, C]` residuals -> `[N, H, W]` normalised by the prior (or each face)."""
        return normalise_residuals(residuals, self.prior)

    def maps(self, faces: np.ndarray, landmarks: np.ndarray | None = None) -> list[OcclusionMap]:
        """The occlusion map of each of `[N, S, S, 3]` uint8 aligned faces.

        `landmarks`: `[N, 5, 2]` in crop pixels, for the per-region shares; the template's
        points at the run's padding when not given.
        """
        if len(faces) == 0:
            return []
        threshold = self.prior.threshold_ if self.prior else SELF_THRESHOLD
        residuals = self.residuals(faces)
        normalised = self.normalise(residuals)
        masks = np.stack([outlier_mask(m, threshold) for m in normalised])
        hidden = patch_shares(masks, self.model.patch_size) >= HIDE_PATCH_SHARE
        # Only the faces with outliers are reconstructed again; the others' second pass would
        # hide nothing more and give the same residuals.
        again = np.flatnonzero(hidden.any(axis=1))
        if len(again):
            residuals[again] = self.residuals(faces[again], hidden[again])
            normalised[again] = self.normalise(residuals[again])
        points = _crop_points(landmarks, len(faces), faces.shape[1], self.input_size, self.padding)
        tokens = self.token_scores(faces)
        return [
            _occlusion_map(r.mean(axis=-1), n, outlier_mask(n, threshold), p, t)
            for r, n, p, t in zip(residuals, normalised, points, tokens, strict=True)
        ]

    def tokens(self, faces: np.ndarray) -> np.ndarray:
        """The encoder's patch tokens of `[N, S, S, 3]` uint8 faces, nothing hidden: `[N, L, D]`."""
        dim = self.model.embed_dim
        return model_tokens(self.model, faces, self._inputs, self.batch_size, dim).numpy()

    def _inputs(self, faces: np.ndarray) -> torch.Tensor:
        return model_inputs(faces, self.input_size, self.mean, self.std, self.device)

    def token_scores(self, faces: np.ndarray) -> list[np.ndarray | None]:
        """Per face its `[gh, gw]` token z-scores against the prior; Nones without token prior."""
        if self.prior is None or self.prior.tokens is None:
            return [None] * len(faces)
        grid = self.model.grid_size
        scores = token_zscores(self.tokens(faces), self.prior.tokens)
        return list(scores.reshape(len(faces), *grid))

    def explain_photo(self, image: np.ndarray, source: str = "image") -> list[FaceOcclusion]:
        """Every face of an `[H, W, 3]` uint8 photo with its occlusion map, largest first.

        Raises:
            NoFaceError: the photo holds no face (the reason says when it is too small to).
        """
        from facerep.faces.find import NoFaceError, find_faces

        faces = find_faces(image, size=self.input_size, padding=self.padding)
        if not faces:
            raise NoFaceError.in_image(source, image)
        crops = np.stack([face.crop for face in faces])
        maps = self.maps(crops, np.stack([face.crop_landmarks for face in faces]))
        return [FaceOcclusion(face, m) for face, m in zip(faces, maps, strict=True)]

    def embed_ignoring_occluders(self, encoder: RunEncoder, faces: np.ndarray) -> np.ndarray:
        """`encoder`'s embeddings of `[N, S, S, 3]` uint8 aligned faces, leaving out the patches
        each face's occlusion map marks (`HIDE_PATCH_SHARE` of the patch or more)."""
        grid = encoder.model.grid_size
        patch = self.input_size // grid[0]
        if patch * grid[0] != self.input_size:
            raise ValueError(f"{encoder.run}: its patch grid does not tile this run's input")
        if len(faces) == 0:
            return encoder.embed_visible(faces, np.zeros((0, grid[0] * grid[1]), bool))
        masks = np.stack([m.mask for m in self.maps(faces)])
        return encoder.embed_visible(faces, patch_shares(masks, patch) >= HIDE_PATCH_SHARE)

    def embed_photo(
        self,
        encoder: RunEncoder,
        image: np.ndarray,
        source: str = "image",
        detector: DetectorName = "hog",
        upsample: int = 0,
    ) -> list[Face]:
        """Every face of a photo, embedded by `encoder` without the patches its occlusion map
        marks, largest first (crops at the encoder's input size, the run's padding)."""
        from facerep.faces.find import find_faces

        faces = find_faces(
            image,
            size=encoder.input_size,
            padding=self.padding,
            detector=detector,
            upsample=upsample,
        )
        if faces:
            crops = np.stack([face.crop for face in faces])
            for face, vector in zip(
                faces, self.embed_ignoring_occluders(encoder, crops), strict=True
            ):
                face.embedding = vector
        return faces


@dataclass(frozen=True)
class FaceOcclusion:
    """A face found in a photo and its occlusion map."""

    face: Face
    map: OcclusionMap


def token_distances(tokens: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """`[N, L]` Mahalanobis distance of `[N, L, D]` tokens from `[L, D]` means, `[L, D, D]`
    precisions, one location at a time."""
    centred = (tokens - mean[None]).transpose(1, 0, 2)  # [L, N, D]
    squared = np.einsum("lnd,lnd->ln", centred @ precision, centred)
    return np.sqrt(np.maximum(squared, 0.0)).T


def token_zscores(tokens: np.ndarray, prior: TokenPrior) -> np.ndarray:
    """`[N, L]` token distances as z-scores against the prior's held-out clean faces."""
    distances = token_distances(tokens, prior.mean_, prior.precision_)
    return (distances - prior.distance_mean_) / prior.distance_std_


def fit_token_prior(fit: np.ndarray, held: np.ndarray) -> TokenPrior:
    """A Gaussian per location from `[N, L, D]` clean tokens `fit`, the distances' scale from
    `held` (faces the Gaussians did not see, as unseen faces will give them)."""
    from sklearn.covariance import LedoitWolf

    # Ledoit-Wolf shrinkage: a few thousand faces estimate a 192-d covariance poorly, and the
    # precision of the sample covariance would blow up its smallest directions.
    fits = [LedoitWolf().fit(fit[:, loc].astype(np.float64)) for loc in range(fit.shape[1])]
    mean = np.stack([f.location_ for f in fits]).astype(np.float32)
    precision = np.stack([f.precision_ for f in fits]).astype(np.float32)
    distances = token_distances(held, mean, precision)
    spread = np.maximum(distances.std(axis=0), 1e-6)
    return TokenPrior(mean, precision, distances.mean(axis=0), spread)


def lattice_groups(grid: tuple[int, int]) -> np.ndarray:
    """`[L]` the complementary mask each patch is shown in, patches in `patchify` order."""
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    return ((rows % LATTICE) * LATTICE + cols % LATTICE).reshape(-1)


def normalise_residuals(residuals: np.ndarray, prior: OcclusionPrior | None) -> np.ndarray:
    """`[N, H, W, C]` residuals -> `[N, H, W]`: z-scores against the prior, channel mean.

    Without a prior, each face against its own median and spread (a robust z-score): outliers
    within the face, with no notion of which locations are hard for every face.
    """
    if prior is not None:
        return ((residuals - prior.mean_) / prior.std_).mean(axis=-1)
    mean = residuals.mean(axis=-1)
    median = np.median(mean, axis=(1, 2), keepdims=True)
    spread = 1.4826 * np.median(np.abs(mean - median), axis=(1, 2), keepdims=True)
    return (mean - median) / np.maximum(spread, 1e-6)


def smoothed(normalised: np.ndarray) -> np.ndarray:
    """`[H, W]` normalised residuals, Gaussian-smoothed by `SMOOTH_SIGMA` of the side."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(normalised, SMOOTH_SIGMA * normalised.shape[0], mode="nearest")


def outlier_mask(normalised: np.ndarray, threshold: float) -> np.ndarray:
    """`[H, W]` bool: smoothed residuals above `threshold`, grown by hysteresis into the pixels
    above `HYSTERESIS_LOW` of it that touch them, specks dropped."""
    from scipy.ndimage import label
    from skimage.filters import apply_hysteresis_threshold

    mask = apply_hysteresis_threshold(smoothed(normalised), HYSTERESIS_LOW * threshold, threshold)
    labels, count = label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.reshape(-1))
    keep = sizes >= MIN_OUTLIER_AREA * mask.size
    keep[0] = False
    return keep[labels]


def patch_shares(masks: np.ndarray, patch_size: int) -> np.ndarray:
    """`[N, H, W]` bool masks -> `[N, L]` share of each patch they cover, `patchify` order."""
    n, height, width = masks.shape
    p = patch_size
    blocks = masks.reshape(n, height // p, p, width // p, p).mean(axis=(2, 4))
    return blocks.reshape(n, -1)


def region_discs(landmarks: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """`[size, size]` bool discs of each of `REGIONS` for `[5, 2]` landmarks in those pixels."""
    centres, radii = face_regions(torch.from_numpy(np.asarray(landmarks, np.float32))[None])
    ys, xs = np.mgrid[0:size, 0:size]
    discs = [
        (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
        for (cx, cy), r in zip(centres[0].tolist(), radii[0].tolist(), strict=True)
    ]
    return {name: np.any([discs[i] for i in parts], axis=0) for name, parts in REGIONS.items()}


def _occlusion_map(
    residual: np.ndarray,
    normalised: np.ndarray,
    mask: np.ndarray,
    landmarks: np.ndarray,
    tokens: np.ndarray | None,
) -> OcclusionMap:
    discs = region_discs(landmarks, mask.shape[0])
    if tokens is None:
        score, evidence = float(normalised.mean()), normalised
    else:
        top = max(1, round(TOKEN_TOP_SHARE * tokens.size))
        score, evidence = float(np.sort(tokens, axis=None)[-top:].mean()), _resized(tokens, mask)
    return OcclusionMap(
        residual=residual,
        normalised=normalised,
        mask=mask,
        score=score,
        regions={name: float(mask[disc].mean()) for name, disc in discs.items()},
        region_scores={name: float(evidence[disc].mean()) for name, disc in discs.items()},
        tokens=tokens,
    )


def _resized(grid: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A `[gh, gw]` map of patch values, bilinear at `like`'s size (pixel centres aligned)."""
    out = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(grid, np.float32))[None, None],
        size=like.shape, mode="bilinear", align_corners=False,
    )  # fmt: skip
    return out[0, 0].numpy()


def _crop_points(
    landmarks: np.ndarray | None, count: int, crop_size: int, size: int, padding: float
) -> np.ndarray:
    """Landmarks `[N, 5, 2]` from crop pixels to the model's input pixels; where none are
    given, the template's (crops aligned with the run's `padding` put them there)."""
    from facerep.faces.align import alignment_template

    if landmarks is None:
        return np.repeat(alignment_template(size, padding)[None], count, axis=0)
    # Pixel centres at integers: a point x maps to (x + 0.5) * s - 0.5.
    scale = size / crop_size
    return (np.asarray(landmarks, np.float64) + 0.5) * scale - 0.5


def fit_occlusion_prior(
    mapper: OcclusionMapper, faces: np.ndarray, seed: int = 0
) -> OcclusionPrior:
    """The prior of `mapper`'s run on clean `[N, S, S, 3]` uint8 faces (at least 10).

    The mean and spread come from most faces; the threshold from the `THRESHOLD_SHARE` held out.
    For a ViT the token prior too: its Gaussians from the same faces, its z-scale from those held
    out.
    """
    if len(faces) < 10:
        raise ValueError(f"an occlusion prior needs at least 10 clean faces, got {len(faces)}")
    order = np.random.default_rng(seed).permutation(len(faces))
    held = max(1, round(THRESHOLD_SHARE * len(faces)))
    fit_rows, threshold_rows = np.sort(order[held:]), np.sort(order[:held])
    residuals = mapper.residuals(np.asarray(faces[fit_rows]))
    mean = residuals.mean(axis=0)
    # A floor on the spread: a location every face reconstructs exactly would divide by zero.
    std = np.maximum(residuals.std(axis=0), 1e-3 * float(residuals.std()) + 1e-8)
    partial = OcclusionPrior(mean, std, 0.0, len(fit_rows), mapper.weights)
    normalised = normalise_residuals(mapper.residuals(np.asarray(faces[threshold_rows])), partial)
    threshold = float(np.quantile([smoothed(m) for m in normalised], CLEAN_QUANTILE))
    tokens = None
    # A ViT's tokens are one per patch of its grid. The conv-AE's are its bottleneck cells, on
    # another grid than its masks' patches, and the token score was measured on ViTs only.
    if isinstance(mapper.model, MaskedAutoencoder):
        fit_faces, held_faces = (np.asarray(faces[rows]) for rows in (fit_rows, threshold_rows))
        tokens = fit_token_prior(mapper.tokens(fit_faces), mapper.tokens(held_faces))
    return OcclusionPrior(mean, std, threshold, len(faces), mapper.weights, tokens)


def fit_run_prior(
    run: str | Path, datasets: list[str] | None = None, *, max_faces: int = 2000, seed: int = 0
) -> OcclusionPrior:
    """Fit RUN's occlusion prior on clean faces of `datasets` (default: the run's own) and save it.

    As for the run's whitening, identity datasets give only the training identities of the
    run's split, so held-out identities stay unseen; at most `max_faces`, a seeded sample.
    """
    from facerep.runs import read_run_config
    from facerep.tasks.occlusion_prior import save_prior
    from facerep.train.whiten import run_training_faces

    faces = run_training_faces(run, read_run_config(run), datasets, "the occlusion prior")
    rows = np.random.default_rng(seed).permutation(len(faces))[:max_faces]
    crops = faces.imgs[np.sort(rows)].permute(0, 2, 3, 1).numpy()
    prior = fit_occlusion_prior(OcclusionMapper(run, prior=False), crops, seed)
    save_prior(run, prior)
    return prior
