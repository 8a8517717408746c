"""The service's operations as plain async Python, one method per endpoint; routes only adapt HTTP.

Photos are decoded and their faces found by `detect_workers` worker processes (or threads, see
`service.workers`); crops are embedded through the micro-batcher, unless the workers embedded
them already (dlib); gallery writes go through a single writer thread, one at a time (Gallery
serialises writes itself too), while searches run on asyncio's default pool side by side.
Nothing heavy runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facerep.encoders.base import Encoder
from facerep.encoders.calibration import encoder_threshold
from facerep.encoders.registry import resolve_encoder
from facerep.faces.find import NoFaceError
from facerep.images import load_image
from facerep.service.batcher import BatcherClosed, EmbedBatcher
from facerep.service.errors import ServiceError
from facerep.service.galleries import GalleryRegistry
from facerep.service.settings import ServiceSettings
from facerep.service.workers import FaceWorkers, PhotoJob
from facerep.tasks.gallery import LABEL_RULE, is_valid_label
from facerep.types import Face, Match, Verdict

if TYPE_CHECKING:  # torch loads with the occlusion run, not with the service
    from facerep.tasks.occlusion import FaceOcclusion, OcclusionMapper


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    """An uploaded photo: its bytes and how messages name it (`image (portrait.jpg)`)."""

    data: bytes
    name: str


class FaceService:
    """Embed, verify, enrol, remove and search, for one encoder and one gallery directory."""

    def __init__(self, settings: ServiceSettings, encoder: Encoder):
        self.settings = settings
        self.encoder = encoder
        self.galleries = GalleryRegistry(Path(settings.gallery_dir), encoder, settings.read_only)
        self.batcher = EmbedBatcher(
            encoder.embed, settings.batch_size, settings.batch_wait_ms / 1000
        )
        self.workers = FaceWorkers(settings.detect_workers, settings.detect_processes, encoder)
        # Encoder passes and faces in the workers (dlib), counted with the batcher's in /metrics.
        self.worker_passes = self.worker_crops = 0
        self._write_pool = ThreadPoolExecutor(1, "facerep-gallery-write")
        self.occlusion_mapper: OcclusionMapper | None = None

    @classmethod
    async def start(cls, settings: ServiceSettings) -> FaceService:
        """Load the encoder, warm it and the face detector up, and start the batcher."""
        encoder = await asyncio.to_thread(resolve_encoder, settings.encoder)
        service = cls(settings, encoder)
        service.occlusion_mapper = await asyncio.to_thread(
            occlusion_mapper, settings.occlusion, encoder
        )
        if not settings.read_only:
            Path(settings.gallery_dir).mkdir(parents=True, exist_ok=True)
        service.batcher.start()
        try:
            await service._warm_up()
        except BaseException:
            await service.close()
            raise
        return service

    async def _warm_up(self) -> None:
        """Load the detector, landmark and encoder weights now, not on the first request.

        dlib's models are built once per thread (`facerep.faces.dlib_models`) or process, so
        they are loaded where they serve: in each face worker, and in the batcher's thread.
        """
        await self.workers.start()
        if not self.workers.embeds:  # else the batcher never embeds: nothing to load there
            size = self.encoder.input_size
            await self.batcher.warm_up(np.zeros((1, size, size, 3), np.uint8))

    async def close(self) -> None:
        """Finish the work under way, then close every gallery."""
        await self.batcher.stop()
        # Off the event loop: closing a gallery may write a large index.
        await asyncio.to_thread(self._close_pools_and_galleries)

    def _close_pools_and_galleries(self) -> None:
        self.workers.close()
        self._write_pool.shutdown(wait=True)
        self.galleries.close()

    # ---- faces -----------------------------------------------------------------------------

    async def find_faces(self, photo: Photo, max_faces: int | None = None) -> list[Face]:
        """The photo's faces (the largest `max_faces`, or all), aligned for the encoder, largest
        first; embedded already when the workers embed.

        Raises:
            NoFaceError: the photo has none. ImageError: the bytes are not a usable image.
        """
        size = self.encoder.input_size
        job = PhotoJob(photo.data, photo.name, self.settings.max_pixels, size, max_faces)
        faces = await self.workers.find(job)
        if self.workers.embeds:
            self.worker_passes += 1
            self.worker_crops += len(faces)
        return faces

    def embed_counts(self) -> tuple[int, int]:
        """Encoder passes so far and the faces they embedded (the batcher's and the workers')."""
        return (
            self.batcher.batches + self.worker_passes,
            self.batcher.crops + self.worker_crops,
        )

    async def embed_crops(self, faces: list[Face]) -> None:
        """Embed the faces that have no embedding yet (a worker may have embedded them),
        through one encoder pass shared with other requests."""
        faces = [face for face in faces if face.embedding is None]
        if not faces:
            return
        try:
            vectors = await self.batcher.embed(np.stack([face.crop for face in faces]))
        except BatcherClosed as e:
            raise ServiceError(503, "unavailable", str(e)) from None
        for face, vector in zip(faces, vectors, strict=True):
            face.embedding = vector

    async def embed(self, photo: Photo, ignore_occluded: bool = False) -> list[Face]:
        """Every face in the photo with its embedding, largest first; NoFaceError if none.

        With `ignore_occluded`, the patches the occlusion map marks are left out of each
        embedding (a ViT run's encoder and an occlusion run, else 409).
        """
        if ignore_occluded:
            return await self._embed_ignoring_occluders(photo)
        faces = await self.find_faces(photo)
        await self.embed_crops(faces)
        return faces

    async def _embed_ignoring_occluders(self, photo: Photo) -> list[Face]:
        mapper = self._mapper()
        if not hasattr(self.encoder, "embed_visible"):
            raise ServiceError(
                409,
                "occlusion_unavailable",
                f"this server's encoder ({self.encoder.name}) cannot leave patches out: "
                "ignore_occluded needs a ViT run as --encoder",
            )
        limit = self.settings.max_pixels
        pixels = await asyncio.to_thread(load_image, photo.data, max_pixels=limit)
        try:
            faces = await asyncio.to_thread(mapper.embed_photo, self.encoder, pixels, photo.name)
        except ValueError as e:  # a conv-AE run's encoder cannot leave patches out
            raise ServiceError(409, "occlusion_unavailable", str(e)) from None
        if not faces:
            raise NoFaceError.in_image(photo.name, pixels)
        return faces

    def _mapper(self) -> OcclusionMapper:
        """The occlusion run's mapper, or 409 when the server has none."""
        if self.occlusion_mapper is None:
            raise ServiceError(
                409,
                "occlusion_unavailable",
                "this server has no autoencoder run with an occlusion prior: start it with "
                "--occlusion RUN (or --encoder RUN)",
            )
        return self.occlusion_mapper

    async def largest_face(self, photo: Photo) -> Face:
        """The photo's largest face, embedded; NoFaceError when there is none."""
        faces = await self.find_faces(photo, max_faces=1)
        await self.embed_crops(faces)
        return faces[0]

    async def verify(self, a: Photo, b: Photo, threshold: float | None = None) -> Verdict:
        """Whether the largest faces of two photos are one person (embedded in one shared pass,
        or by the face workers)."""
        try:
            limit = encoder_threshold(self.encoder, threshold)
        except ValueError as e:
            raise ServiceError(422, "no_threshold", f"{e}") from None
        found = await asyncio.gather(
            self.find_faces(a, max_faces=1), self.find_faces(b, max_faces=1), return_exceptions=True
        )
        for result in found:  # a's problem is reported before b's, whichever finished first
            if isinstance(result, BaseException):
                raise result
        pair = [found[0][0], found[1][0]]
        await self.embed_crops(pair)
        return Verdict.between(pair[0].embedding, pair[1].embedding, limit)

    async def occlusion(self, photo: Photo) -> tuple[np.ndarray, list[FaceOcclusion]]:
        """The photo's pixels and each face's occlusion map, largest first (409 without a run
        to explain with); NoFaceError when it has no face."""
        mapper = self._mapper()
        limit = self.settings.max_pixels
        pixels = await asyncio.to_thread(load_image, photo.data, max_pixels=limit)
        faces = await asyncio.to_thread(mapper.explain_photo, pixels, photo.name)
        return pixels, faces

    # ---- galleries -------------------------------------------------------------------------

    async def add(
        self, gallery: str, photo: Photo, label: str, source: str | None
    ) -> tuple[int, Face]:
        """Enrol the photo's largest face under `label`: `(face id, face)`; creates the gallery.

        The 2xx answer comes after the gallery's transaction committed, so it survives kill -9.
        """
        label = check_label(label)
        face = await self.largest_face(photo)
        loop = asyncio.get_running_loop()
        face_id = await loop.run_in_executor(
            self._write_pool, self.galleries.add, gallery, face.embedding, label, source, face.box
        )
        return face_id, face

    async def remove(self, gallery: str, face_id: int) -> None:
        """Remove one face for good from searches (`facerep gallery compact` erases its bytes)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_pool, self._remove_face, gallery, face_id)

    def _remove_face(self, gallery: str, face_id: int) -> None:
        if not self.galleries.remove(gallery, face_id):
            raise ServiceError(404, "face_not_found", f"no face {face_id} in gallery {gallery!r}")

    async def search(self, gallery: str, photo: Photo, k: int) -> tuple[Face, list[Match]]:
        """The `k` faces of the gallery nearest the photo's largest face, nearest first."""
        opened = await asyncio.to_thread(self.galleries.get, gallery)  # 404 before any work
        face = await self.largest_face(photo)
        matches = await asyncio.to_thread(opened.search_embedding, face.embedding, k)
        return face, matches

    async def gallery_info(self, gallery: str) -> dict[str, object]:
        """How many faces and labels the gallery holds."""
        opened = await asyncio.to_thread(self.galleries.get, gallery)
        faces, labels = await asyncio.to_thread(lambda: (len(opened), len(opened.labels())))
        return {"name": gallery, "faces": faces, "labels": labels}


def check_label(label: str) -> str:
    """`label` if it can name someone in a gallery, checked before any work on the photo."""
    if not is_valid_label(label):
        raise ServiceError(422, "invalid_request", f"label: {LABEL_RULE}")
    return label


def occlusion_mapper(run: Path | None, encoder: Encoder) -> OcclusionMapper | None:
    """The mapper of `run` (its prior required), else of the encoder's run when it has a
    decoder and a prior, else None."""
    if run is None and getattr(encoder, "run", None) is None:
        return None  # dlib, pixels, an .onnx file: no autoencoder, and no torch to load
    from facerep.tasks.occlusion import OcclusionMapper

    if run is not None:
        return OcclusionMapper(run, prior=True)
    own = encoder.run
    try:
        return OcclusionMapper(own, prior=True)
    except ValueError as e:  # no decoder, no prior or a stale one: the endpoint says so
        logger.warning("POST /v1/occlusion is off: %s", e)
        return None
