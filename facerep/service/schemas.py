"""Response bodies as pydantic models, so /openapi.json describes every answer exactly."""

from __future__ import annotations

from pydantic import BaseModel, Field

from facerep.types import Box, Face, Match


class BoxOut(BaseModel):
    """A face box in pixels of the uploaded photo."""

    left: float
    top: float
    right: float
    bottom: float

    @classmethod
    def of(cls, box: Box) -> BoxOut:
        """From a facerep Box, rounded to 0.1 px."""
        left, top, right, bottom = box.as_list()
        return cls(left=left, top=top, right=right, bottom=bottom)


class PoseOut(BaseModel):
    """Head pose in degrees: yaw (+ nose to image right), pitch (+ down), roll (+ clockwise)."""

    yaw: float
    pitch: float
    roll: float


class DetectedFace(BaseModel):
    """Where a face is, how sure the detector was, and its 5 landmarks."""

    box: BoxOut
    score: float = Field(description="Detector confidence (HOG SVM margin; higher is surer).")
    landmarks: list[list[float]] = Field(
        description="dlib's 5 points [[x, y], ...] (eye corners, nose base) in photo pixels."
    )
    pose: PoseOut

    @classmethod
    def of(cls, face: Face) -> DetectedFace:
        """From a facerep Face."""
        return cls(**_detection(face))


class EmbeddedFace(DetectedFace):
    """A detected face with its embedding."""

    embedding: list[float] = Field(description="Unit-length embedding (length `dim`).")

    @classmethod
    def of(cls, face: Face) -> EmbeddedFace:
        """From a facerep Face whose embedding is set."""
        return cls(**_detection(face), embedding=face.embedding.tolist())


def _detection(face: Face) -> dict[str, object]:
    """DetectedFace's fields from a facerep Face, rounded for the wire."""
    yaw, pitch, roll = face.pose.as_list()
    return {
        "box": BoxOut.of(face.box),
        "score": round(face.score, 4),
        "landmarks": [[round(float(v), 1) for v in point] for point in face.landmarks],
        "pose": PoseOut(yaw=yaw, pitch=pitch, roll=roll),
    }


class OcclusionFace(DetectedFace):
    """A face with what the autoencoder could not explain in it."""

    anomaly_score: float = Field(
        description="How far the encoder's patch tokens lie from clean faces' at the same place "
        "(the mean of the highest tenth of their z-scores against the prior; the mean "
        "normalised residual where the prior has no tokens): higher is less like a clean face."
    )
    outlier_fraction: float = Field(description="Share of the aligned crop the mask covers.")
    regions: dict[str, float] = Field(
        description="Outlier share of each face region: eyes, nose, mouth (from the landmarks)."
    )
    region_scores: dict[str, float] = Field(
        description="Mean token z-score (or normalised residual) of each face region."
    )
    mask_png: str = Field(
        description="The outlier mask in the photo's pixels, a base64 grey PNG (255: outlier)."
    )


class OcclusionResponse(BaseModel):
    """Every face in the photo with its occlusion map, largest first."""

    run: str = Field(description="The autoencoder run that explained the faces.")
    faces: list[OcclusionFace]


class EmbedResponse(BaseModel):
    """Every face found in the photo, largest first (a photo without one is a 422)."""

    encoder: str
    dim: int
    faces: list[EmbeddedFace]


class VerifyResponse(BaseModel):
    """Whether the largest faces of two photos show the same person."""

    distance: float = Field(description="Cosine distance 1 - cos (0 identical, 2 opposite).")
    threshold: float = Field(description="The largest distance still called the same person.")
    same: bool = Field(description="distance <= threshold")


class MatchOut(BaseModel):
    """A gallery face near the query, nearest first."""

    id: int
    label: str
    distance: float = Field(description="Cosine distance to the query face.")
    same: bool | None = Field(description="distance <= the encoder's threshold, if it has one.")
    source: str | None = Field(description="The file name the face was enrolled from, if any.")
    box: BoxOut | None

    @classmethod
    def of(cls, match: Match) -> MatchOut:
        """From a facerep Match."""
        return cls(
            id=match.id,
            label=match.label,
            distance=match.distance,
            same=match.same,
            source=match.source,
            box=BoxOut.of(match.box) if match.box else None,
        )


class SearchResponse(BaseModel):
    """The query's largest face and its nearest gallery faces."""

    face: DetectedFace
    matches: list[MatchOut]


class AddedFace(BaseModel):
    """A face now in the gallery (committed to disk before this answer was sent)."""

    id: int = Field(description="The face's id in the gallery; never reused.")
    label: str
    gallery: str
    box: BoxOut


class RemovedFace(BaseModel):
    """A face no search will return again."""

    id: int
    gallery: str


class GalleryInfo(BaseModel):
    """What a gallery holds."""

    name: str
    faces: int
    labels: int
    encoder: str


class Health(BaseModel):
    """The server is up and its encoder is loaded."""

    status: str = "ok"
    encoder: str
    dim: int
    read_only: bool


class ErrorDetail(BaseModel):
    """What went wrong: a stable code for programs, a one-line message for people."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: ErrorDetail
