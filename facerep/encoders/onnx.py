"""An encoder exported to ONNX (`facerep export RUN --onnx FILE`), run with onnxruntime.

Any path ending in `.onnx` works wherever an encoder is accepted. The file is a complete encoder
(`facerep.encoders.onnx_export`): its graph takes uint8 aligned crops and gives unit embeddings,
its metadata says the input size, the embedding size and the threshold. Its vectors are the
run's (within 1e-4), so it keeps the run's fingerprint: galleries made with either accept both.
No torch is needed to embed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from facerep.images import resize_faces

FORMAT = "facerep-encoder-1"
INPUT_NAME, OUTPUT_NAME = "faces", "embeddings"
META_PREFIX = "facerep."
REQUIRED_KEYS = ("format", "name", "fingerprint", "input_size", "embed_dim")


class OnnxEncoder:
    """Embeds faces with an exported facerep encoder through onnxruntime.

    Args:
        path: a `.onnx` file written by `facerep export`.
        threads: onnxruntime's intra-op threads (default: $OMP_NUM_THREADS, else its own).
        batch_size: faces per call into the session.
    """

    def __init__(self, path: str | Path, threads: int | None = None, batch_size: int = 64):
        self.path = Path(path)
        self.session = _open_session(self.path, threads)
        metadata = _facerep_metadata(self.path, self.session)
        self.name = self.path.name  # `model.onnx`: reports tell it from the run it came from
        self.source = str(self.path.resolve())
        self.fingerprint = metadata["fingerprint"]
        self.input_size = int(metadata["input_size"])
        self.dim = int(metadata["embed_dim"])
        self.whitened = json.loads(metadata.get("whitened", "false"))
        self.metadata = metadata
        if "threshold" in metadata:  # the run's calibration, carried in the file
            self.default_threshold = float(metadata["threshold"])
        self.batch_size = batch_size

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """`[N, H, W, 3]` uint8 aligned faces -> `[N, D]` float32 unit rows."""
        crops = resize_faces(faces, self.input_size)
        out = np.zeros((len(crops), self.dim), np.float32)
        for start in range(0, len(crops), self.batch_size):
            batch = np.ascontiguousarray(crops[start : start + self.batch_size])
            out[start : start + len(batch)] = self.session.run(None, {INPUT_NAME: batch})[0]
        return out


def _open_session(path: Path, threads: int | None):
    """An onnxruntime session of `path`; a one-line ValueError naming the file otherwise."""
    import onnxruntime as ort

    if not path.is_file():
        raise ValueError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime's own warnings are not the user's to read
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own classes for every kind of bad file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable ONNX model ({reason[:200]})") from None


def _facerep_metadata(path: Path, session) -> dict[str, str]:
    """The file's facerep metadata; a one-line ValueError for a foreign or damaged export."""
    props = session.get_modelmeta().custom_metadata_map
    metadata = {
        key.removeprefix(META_PREFIX): value
        for key, value in props.items()
        if key.startswith(META_PREFIX)
    }
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path}: an ONNX model, but not a facerep encoder (no {META_PREFIX}format "
            f"{FORMAT!r}); export one with `facerep export RUN --onnx FILE`"
        )
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    inputs = [i.name for i in session.get_inputs()]
    if missing or inputs != [INPUT_NAME]:
        raise ValueError(f"{path}: a damaged facerep export (missing {missing or inputs})")
    return metadata
