"""A teacher's embeddings of fixed views of every face, computed once and cached beside the data.

Distillation (`mimic`) needs the teacher's embedding of exactly the pixels the student sees.
dlib's ResNet costs about 75 ms a face on one core, far too slow inside the training loop, so
each face is embedded for `views` fixed views: view 0 is the crop itself, the others face-safe
augmentations (`VIEW_RECIPE`) whose parameters are stored with the embeddings, so the trainer
rebuilds the same pixels at its own input size and the student never meets one view only.

Layout: `DATASET/teachers/<teacher>-<views>views-<recipe digest>/chunk-NNNNN.safetensors`, one
file per `CHUNK_FACES` rows of the dataset, written atomically with a digest of the crops it
embedded. A killed build resumes at the missing chunks; a dataset that grew (`prepare` appends
rows and never changes them) gets only its new chunks; a chunk whose crops changed is redone.
The build runs in worker processes: dlib keeps the GIL while it embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as safetensors_bytes

from facerep.data.store import open_dataset
from facerep.files import atomic_write
from facerep.teachers import TeacherEntry, check_teacher
from facerep.train.augment import AugmentParams, augment, sample_augment

TEACHERS_DIR = "teachers"
CHUNK_FACES = 256
# Face-safe views: most of the face stays in the frame (zoom 0.9-1.1, shift 5%), a small roll,
# colour and light changes, sometimes greyscale, a blur or an occluder. The student must give
# the teacher's answer under each, which is what makes it a face model and not a copy of one
# picture. Part of the cache's key: changing it starts a new cache.
VIEW_RECIPE = {
    "hflip": 0.5,
    "scale_jitter": 0.1,
    "shift_jitter": 0.05,
    "color_jitter": 0.3,
    "rotation": 10.0,
    "grey": 0.1,
    "blur": 0.1,
    "erase": 0.1,
}
RECIPE_VERSION = 1  # bump when the views would come out differently for the same recipe


@dataclass
class TeacherTargets:
    """The cached views of some faces: teacher embeddings `[N, K, D]` and view parameters."""

    embeddings: torch.Tensor  # [N, K, D] float32 unit rows
    params: dict[str, torch.Tensor]  # AugmentParams' fields, each [N, K, ...]

    @property
    def views(self) -> int:
        """Fixed views per face (K)."""
        return self.embeddings.shape[1]

    def pick(self, faces: torch.Tensor, views: torch.Tensor) -> tuple[AugmentParams, torch.Tensor]:
        """The augmentation and teacher embedding of view `views[i]` of face `faces[i]`."""
        params = AugmentParams(**{name: v[faces, views] for name, v in self.params.items()})
        return params, self.embeddings[faces, views]

    @staticmethod
    def concat(parts: list[TeacherTargets]) -> TeacherTargets:
        """The targets of several datasets, in order."""
        names = parts[0].params
        return TeacherTargets(
            torch.cat([p.embeddings for p in parts]),
            {name: torch.cat([p.params[name] for p in parts]) for name in names},
        )

    def centred(self) -> TeacherTargets:
        """The same views with the mean embedding (over every face and view) taken away, as
        unit rows.

        A face recogniser's unit embeddings share one strong direction (dlib's mean has norm
        about 0.93: two strangers score cosine 0.86), so a student that matches only that
        direction already scores 0.93 against the raw rows, and what tells faces apart is a
        small remainder of the loss. Centred, the whole target is that remainder.
        """
        mean = self.embeddings.reshape(-1, self.embeddings.shape[-1]).mean(dim=0)
        embeddings = torch.nn.functional.normalize(self.embeddings - mean, dim=-1)
        return TeacherTargets(embeddings, self.params)


def recipe_digest() -> str:
    """A short digest of the views' recipe, part of the cache's folder name."""
    text = json.dumps({"recipe": VIEW_RECIPE, "version": RECIPE_VERSION}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def cache_dir(dataset: str | Path, teacher: str, views: int) -> Path:
    """Where the teacher's embeddings of `dataset`'s faces are cached."""
    return Path(dataset) / TEACHERS_DIR / f"{teacher}-{views}views-{recipe_digest()}"


def view_params(chunk: int, rows: int, views: int) -> AugmentParams:
    """The fixed views of one chunk's faces, fields `[rows, views, ...]`; view 0 is the crop.

    Drawn from a generator seeded by the chunk's number alone, so a face's views never depend
    on how many faces the dataset has.
    """
    seed = np.random.SeedSequence([RECIPE_VERSION, chunk]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator().manual_seed(int(seed))
    drawn = sample_augment(CHUNK_FACES * views, generator, **VIEW_RECIPE)
    identity = sample_augment(CHUNK_FACES, generator, 0.0, 0.0, 0.0, 0.0)  # zero jitters
    out = {}
    for field in fields(AugmentParams):
        value = getattr(drawn, field.name).reshape(CHUNK_FACES, views, -1).squeeze(-1).clone()
        plain = getattr(identity, field.name)
        value[:, 0] = 0.0 if plain is None else plain.reshape(CHUNK_FACES, -1).squeeze(-1)
        out[field.name] = value[:rows]
    return AugmentParams(**out)


def crops_digest(crops: np.ndarray) -> str:
    """A digest of some crops' bytes: a chunk is reused only for the crops it embedded."""
    return hashlib.blake2b(np.ascontiguousarray(crops).tobytes(), digest_size=16).hexdigest()


def chunk_path(folder: Path, chunk: int) -> Path:
    """The file of one chunk of the cache."""
    return folder / f"chunk-{chunk:05d}.safetensors"


def chunk_count(faces: int) -> int:
    """Chunks covering `faces` rows."""
    return -(-faces // CHUNK_FACES)


def _chunk_rows(chunk: int, faces: int) -> slice:
    return slice(chunk * CHUNK_FACES, min((chunk + 1) * CHUNK_FACES, faces))


def _chunk_is_current(path: Path, entry: TeacherEntry, crops: np.ndarray) -> bool:
    """Whether a chunk file exists, is whole, and embedded these crops with this teacher."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError):
        return False
    return (
        meta.get("fingerprint") == entry.fingerprint
        and meta.get("crops") == crops_digest(crops)
        and meta.get("faces") == str(len(crops))
    )


def missing_chunks(dataset: str | Path, teacher: str, views: int) -> list[int]:
    """The chunks of `dataset` the cache lacks or holds for other crops (all, at first)."""
    entry, data = check_teacher(teacher), open_dataset(dataset)
    folder = cache_dir(dataset, teacher, views)
    return [
        chunk
        for chunk in range(chunk_count(len(data)))
        if not _chunk_is_current(
            chunk_path(folder, chunk), entry, data.crops[_chunk_rows(chunk, len(data))]
        )
    ]


def embed_views(
    crops: np.ndarray, landmarks: np.ndarray, params: AugmentParams, embedder: Callable
) -> np.ndarray:
    """The teacher's embeddings `[n, K, D]` of every view of `crops` `[n, S, S, 3]` uint8."""
    imgs = torch.from_numpy(np.require(crops, requirements=["C", "W"])).permute(0, 3, 1, 2)
    imgs = imgs.float() / 255.0
    points = torch.from_numpy(np.asarray(landmarks, np.float32))
    views = params.flip.shape[1]
    out = []
    for view in range(views):
        one = AugmentParams(**{f.name: getattr(params, f.name)[:, view] for f in fields(params)})
        pixels, _ = augment(imgs, points, one)
        faces = (pixels * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out.append(embedder(faces.contiguous().numpy()))
    return np.stack(out, axis=1).astype(np.float32)


def _build_chunk(dataset: str, teacher: str, views: int, chunk: int) -> int:
    """Embed one chunk's views and write its file (in a worker process)."""
    entry, data = check_teacher(teacher), open_dataset(dataset)
    rows = _chunk_rows(chunk, len(data))
    crops = np.asarray(data.crops[rows])
    params = view_params(chunk, len(crops), views)
    embeddings = embed_views(crops, data.landmarks[rows], params, entry.embedder())
    tensors = {"embeddings": embeddings}
    tensors |= {f"params.{f.name}": getattr(params, f.name).numpy() for f in fields(params)}
    metadata = {
        "teacher": teacher,
        "fingerprint": entry.fingerprint,
        "crops": crops_digest(crops),
        "faces": str(len(crops)),
        "recipe": json.dumps(VIEW_RECIPE, sort_keys=True),
    }
    folder = cache_dir(dataset, teacher, views)
    with atomic_write(chunk_path(folder, chunk)) as f:
        f.write(safetensors_bytes(tensors, metadata=metadata))
    return chunk


def _worker_init() -> None:
    # One thread a worker: the workers share the machine's cores between them.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@dataclass
class CacheProgress:
    """How far a cache build is: chunks and faces done, and the expected seconds left."""

    chunks_done: int
    chunks_total: int
    faces_done: int
    faces_total: int
    seconds_left: float | None


def build_teacher_cache(
    dataset: str | Path,
    teacher: str = "dlib",
    views: int = 4,
    workers: int | None = None,
    on_progress: Callable[[CacheProgress], None] | None = None,
) -> Path:
    """Embed every missing chunk of `dataset` with `teacher`; returns the cache folder.

    Args:
        views: fixed views per face, view 0 the crop itself.
        workers: processes embedding in parallel (default: the CPUs this process may use).
        on_progress: called once before the first chunk and after each chunk.

    Raises:
        ValueError: unknown teacher, fewer than one view, or not a prepared dataset.
    """
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    entry, data = check_teacher(teacher), open_dataset(dataset)
    folder = cache_dir(dataset, teacher, views)
    folder.mkdir(parents=True, exist_ok=True)
    todo = missing_chunks(dataset, teacher, views)
    total = chunk_count(len(data))
    faces_left = sum(_chunk_size(chunk, len(data)) for chunk in todo)
    done, faces_done, start = total - len(todo), len(data) - faces_left, time.perf_counter()

    def report() -> None:
        if on_progress is None:
            return
        seconds, remaining = time.perf_counter() - start, len(data) - faces_done
        rate = (faces_done - (len(data) - faces_left)) / seconds if seconds > 0 else 0.0
        left = remaining / rate if rate > 0 else None
        on_progress(CacheProgress(done, total, faces_done, len(data), left))

    report()
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(todo) or 1))
    if workers == 1:
        for chunk in todo:
            _build_chunk(str(dataset), entry.name, views, chunk)
            done, faces_done = done + 1, faces_done + _chunk_size(chunk, len(data))
            report()
        return folder
    context = get_context("spawn")  # torch and dlib state are not fork-safe
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        jobs = [pool.submit(_build_chunk, str(dataset), entry.name, views, c) for c in todo]
        for job in as_completed(jobs):
            chunk = job.result()
            done, faces_done = done + 1, faces_done + _chunk_size(chunk, len(data))
            report()
    return folder


def _chunk_size(chunk: int, faces: int) -> int:
    rows = _chunk_rows(chunk, faces)
    return rows.stop - rows.start


def complete_cache(dataset: str | Path, teacher: str, views: int) -> Path | None:
    """The smallest complete cache of `dataset` with at least `views` views, or None.

    The first `views` views of a larger cache are as good fixed views as a cache of their own,
    so fewer views are tried without embedding anything again.
    """
    root = Path(dataset) / TEACHERS_DIR
    suffix = f"views-{recipe_digest()}"
    sizes = []
    for folder in root.glob(f"{teacher}-*{suffix}") if root.is_dir() else []:
        count = folder.name.removeprefix(f"{teacher}-").removesuffix(suffix)
        if count.isdigit() and int(count) >= views:
            sizes.append(int(count))
    for size in sorted(sizes):
        if not missing_chunks(dataset, teacher, size):
            return cache_dir(dataset, teacher, size)
    return None


def load_teacher_targets(
    dataset: str | Path, teacher: str, views: int, rows: np.ndarray
) -> TeacherTargets:
    """The first `views` cached views of `rows` of `dataset`.

    Raises:
        ValueError: no complete cache with that many views for this dataset (one line, naming
            the command that builds it).
    """
    folder = complete_cache(dataset, teacher, views)
    chunks = chunk_count(len(open_dataset(dataset)))
    if folder is None:
        raise ValueError(
            f"{dataset}: no complete cache of the {teacher} teacher's embeddings of {views} "
            f"views; build it with `facerep teacher-cache {dataset} --teacher {teacher} "
            f"--views {views}`"
        )
    embeddings, params = [], {}
    for chunk in range(chunks):
        with safe_open(str(chunk_path(folder, chunk)), framework="pt") as f:
            embeddings.append(f.get_tensor("embeddings")[:, :views])
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith("params."):
                    value = f.get_tensor(key)[:, :views]
                    params.setdefault(key.removeprefix("params."), []).append(value)
    index = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    return TeacherTargets(
        torch.cat(embeddings)[index],
        {name: torch.cat(parts)[index] for name, parts in params.items()},
    )
