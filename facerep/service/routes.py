"""The HTTP endpoints: each reads its form, calls one FaceService method and shapes the answer.

- `POST /v1/embed` (multipart `image`, optional `ignore_occluded`): every face with box,
  landmarks, pose and embedding.
- `POST /v1/verify` (`a`, `b`, optional `threshold`): distance, threshold and verdict.
- `POST /v1/occlusion` (`image`): every face's occlusion map (score, regions, mask PNG).
- `POST /v1/galleries/{name}/faces` (`image`, `label`; token): enrol the largest face, 201.
- `DELETE /v1/galleries/{name}/faces/{id}` (token): remove a face.
- `POST /v1/galleries/{name}/search` (`image`, `k` 1-100): the nearest gallery faces.
- `GET /v1/galleries/{name}`: how many faces and labels a gallery holds.
- `GET /healthz`, `GET /metrics` (Prometheus text); `/openapi.json` and `/docs` from FastAPI.

Write endpoints check the bearer token before their body is read (`WriteRoute`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator, Field

from facerep.service import metrics as metrics_text
from facerep.service.errors import ServiceError
from facerep.service.face_service import FaceService, Photo
from facerep.service.galleries import GALLERY_NAME
from facerep.service.schemas import (
    AddedFace,
    BoxOut,
    DetectedFace,
    EmbeddedFace,
    EmbedResponse,
    ErrorResponse,
    GalleryInfo,
    Health,
    MatchOut,
    OcclusionFace,
    OcclusionResponse,
    RemovedFace,
    SearchResponse,
    VerifyResponse,
)
from facerep.service.settings import TOKEN_ENV
from facerep.tasks.gallery import MAX_LABEL

if TYPE_CHECKING:  # torch loads with the occlusion run, not with the service
    from facerep.tasks.occlusion import FaceOcclusion

MAX_K = 100
MAX_FACE_ID = 2**63 - 1  # SQLite's largest integer
MAX_FILENAME = 200  # characters of an upload's file name kept (in messages, as a face's source)
PHOTO_HELP = "A photo (JPEG, PNG, WebP, BMP, TIFF, PGM...); its format is read from its bytes."

# Declares the bearer scheme in the OpenAPI schema and parses the header; WriteRoute checks it
# before the body is read (a dependency would run only after).
bearer = HTTPBearer(auto_error=False, description=f"The server's write token (${TOKEN_ENV}).")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in (*statuses, 500)}


async def check_write_access(request: Request) -> None:
    """Refuse a write on a read-only server (403) or without the right bearer token (401)."""
    settings = request.app.state.settings
    if settings.read_only:
        raise ServiceError(403, "read_only", "this server is read-only (started with --read-only)")
    if settings.token is None:
        return  # --insecure-local: writes without a token, on a loopback address only
    credentials = await bearer(request)  # None without `Authorization: Bearer <something>`
    given = credentials.credentials if credentials is not None else ""
    # compare_digest takes as long for a wrong token as for a right one: no timing oracle.
    if not secrets.compare_digest(given.encode(), settings.token.encode()):
        raise ServiceError(
            401,
            "unauthorized",
            "this endpoint needs the server's token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


class WriteRoute(APIRoute):
    """A route that checks write access before its request body is read or parsed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The usual handler, behind `check_write_access`."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            await check_write_access(request)
            return await handler(request)

        return guarded


def get_service(request: Request) -> FaceService:
    """The running FaceService (started by the app's lifespan)."""
    return request.app.state.service


Service = Annotated[FaceService, Depends(get_service)]
GalleryName = Annotated[
    str, Path(pattern=GALLERY_NAME, description="1-64 letters, digits, '_' or '-'.")
]
Image = Annotated[UploadFile, File(description=PHOTO_HELP)]
LABEL_SCHEMA = {"minLength": 1, "maxLength": MAX_LABEL}

router = APIRouter()
writes = APIRouter(route_class=WriteRoute, dependencies=[Depends(bearer)])


def null_as_none(value: object) -> object:
    """A form field's `null` (how a form spells a JSON null, as the schema allows) is None."""
    return None if value == "null" else value


def filename_of(upload: UploadFile) -> str:
    """The upload's file name, printable characters only, at most MAX_FILENAME ('' if none)."""
    return "".join(c for c in (upload.filename or "") if c.isprintable())[:MAX_FILENAME]


async def read_photo(upload: UploadFile, field: str) -> Photo:
    """The upload's bytes (already within the body limit) and a name for messages."""
    data = await upload.read()
    filename = filename_of(upload)
    return Photo(data, f"{field} ({filename})" if filename else field)


@router.get("/healthz", response_model=Health, tags=["ops"])
async def healthz(service: Service) -> Health:
    """The server is up and its encoder is loaded."""
    encoder = service.encoder
    return Health(encoder=encoder.name, dim=encoder.dim, read_only=service.settings.read_only)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    tags=["ops"],
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, service: Service) -> PlainTextResponse:
    """Prometheus metrics: requests by route and status, latency, batches, gallery sizes."""
    sizes = service.galleries.sizes()  # counted as galleries change: no database query here
    text = request.app.state.metrics.render(*service.embed_counts(), sizes)
    return PlainTextResponse(text, media_type=metrics_text.CONTENT_TYPE)


@router.post("/v1/embed", response_model=EmbedResponse, responses=_errors(400, 409, 413, 422, 503))
async def embed(
    service: Service,
    image: Image,
    ignore_occluded: Annotated[
        bool,
        Form(
            description="Leave the patches the occlusion map marks out of each embedding (a "
            "ViT run's encoder and an occlusion run; else 409)."
        ),
    ] = False,
) -> EmbedResponse:
    """Every face in the photo, largest first, with box, landmarks, pose and embedding."""
    faces = await service.embed(await read_photo(image, "image"), ignore_occluded)
    encoder = service.encoder
    return EmbedResponse(
        encoder=encoder.name, dim=encoder.dim, faces=[EmbeddedFace.of(f) for f in faces]
    )


@router.post("/v1/verify", response_model=VerifyResponse, responses=_errors(400, 413, 422, 503))
async def verify(
    service: Service,
    a: Annotated[UploadFile, File(description="First photo. " + PHOTO_HELP)],
    b: Annotated[UploadFile, File(description="Second photo.")],
    threshold: Annotated[
        Annotated[float, Field(ge=0.0, le=2.0)] | None,
        BeforeValidator(null_as_none),
        Form(description="Cosine distance limit; absent, empty or `null`: the encoder's own."),
    ] = None,
) -> VerifyResponse:
    """Whether the largest faces of photos `a` and `b` are the same person."""
    verdict = await service.verify(await read_photo(a, "a"), await read_photo(b, "b"), threshold)
    return VerifyResponse.model_validate(verdict, from_attributes=True)


@router.post(
    "/v1/occlusion", response_model=OcclusionResponse, responses=_errors(400, 409, 413, 422, 503)
)
async def occlusion(service: Service, image: Image) -> OcclusionResponse:
    """Every face in the photo with its occlusion map: score, outlier share per region, mask."""
    pixels, faces = await service.occlusion(await read_photo(image, "image"))
    padding = service.occlusion_mapper.padding
    # Masks warped to a photo of up to --max-pixels and encoded as PNG: off the event loop.
    answers = await asyncio.to_thread(
        lambda: [occlusion_face(face, pixels, padding) for face in faces]
    )
    return OcclusionResponse(run=service.occlusion_mapper.run.name, faces=answers)


def occlusion_face(face: FaceOcclusion, pixels: np.ndarray, padding: float) -> OcclusionFace:
    """The wire form of one face's occlusion map, its mask drawn in the photo's pixels."""
    from facerep.tasks.occlusion_images import mask_in_photo, png_bytes

    occlusion = face.map
    mask = mask_in_photo(face.face, occlusion.mask, pixels.shape, padding)
    return OcclusionFace(
        **DetectedFace.of(face.face).model_dump(),
        anomaly_score=round(occlusion.score, 4),
        outlier_fraction=round(occlusion.outlier_fraction, 4),
        regions={k: round(v, 4) for k, v in occlusion.regions.items()},
        region_scores={k: round(v, 4) for k, v in occlusion.region_scores.items()},
        mask_png=base64.b64encode(png_bytes(mask)).decode(),
    )


@router.post(
    "/v1/galleries/{name}/search",
    response_model=SearchResponse,
    responses=_errors(400, 404, 409, 413, 422, 503),
)
async def search(
    service: Service,
    name: GalleryName,
    image: Image,
    k: Annotated[int, Form(ge=1, le=MAX_K, description="Matches to return.")] = 5,
) -> SearchResponse:
    """The `k` gallery faces nearest the photo's largest face, nearest first."""
    face, matches = await service.search(name, await read_photo(image, "image"), k)
    return SearchResponse(face=DetectedFace.of(face), matches=[MatchOut.of(m) for m in matches])


@router.get(
    "/v1/galleries/{name}", response_model=GalleryInfo, responses=_errors(404, 409, 422, 503)
)
async def gallery_info(service: Service, name: GalleryName) -> GalleryInfo:
    """How many faces and labels the gallery holds."""
    info = await service.gallery_info(name)
    return GalleryInfo(**info, encoder=service.encoder.name)


@writes.post(
    "/v1/galleries/{name}/faces",
    status_code=201,
    response_model=AddedFace,
    responses=_errors(400, 401, 403, 409, 413, 422, 503),
)
async def add_face(
    service: Service,
    name: GalleryName,
    image: Image,
    # Checked by the service (check_label: length, blank, one line); the schema only says so.
    label: Annotated[str, Form(description="Who it is.", json_schema_extra=LABEL_SCHEMA)],
) -> AddedFace:
    """Enrol the photo's largest face under `label` (the gallery is created if new)."""
    photo = await read_photo(image, "image")
    face_id, face = await service.add(name, photo, label, filename_of(image) or None)
    return AddedFace(id=face_id, label=label, gallery=name, box=BoxOut.of(face.box))


@writes.delete(
    "/v1/galleries/{name}/faces/{face_id}",
    response_model=RemovedFace,
    responses=_errors(401, 403, 404, 409, 422, 503),
)
async def remove_face(
    service: Service,
    name: GalleryName,
    face_id: Annotated[int, Path(ge=1, le=MAX_FACE_ID)],
) -> RemovedFace:
    """Remove a face: no search returns it from now on (`facerep gallery compact` erases it)."""
    await service.remove(name, face_id)
    return RemovedFace(id=face_id, gallery=name)
