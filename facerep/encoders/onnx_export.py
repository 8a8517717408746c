"""Export a run's encoder to one ONNX file that is a complete encoder on its own.

The graph is the encoder a run ships (`RunEncoder`): input normalisation, the network, the L2
normalisation, and the whitening when the run has one, from uint8 aligned crops `[N, S, S, 3]`
to unit embeddings `[N, D]`, with a dynamic batch. The file's metadata holds what a user needs
besides (`facerep.encoders.onnx.METADATA_KEYS`): input size and layout, mean and std, embedding
size, crop template and padding, the fingerprint of its vectors, and the calibrated threshold
when the run has one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from facerep.encoders.calibration import load_calibration
from facerep.encoders.onnx import FORMAT, INPUT_NAME, META_PREFIX, OUTPUT_NAME
from facerep.encoders.run import RunEncoder
from facerep.files import atomic_write


class ShippedEncoder(nn.Module):
    """uint8 `[N, S, S, 3]` crops -> the run encoder's unit embeddings `[N, D]`, as one graph."""

    def __init__(self, encoder: RunEncoder):
        super().__init__()
        self.model = encoder.model.cpu().eval()
        self.pool = encoder.pool
        preprocess = encoder.config.preprocess
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, 3, 1, 1))
        whitening = encoder.whitening
        self.whiten = whitening is not None
        if whitening is not None:
            self.register_buffer("centre", torch.tensor(whitening.mean, dtype=torch.float32))
            self.register_buffer(
                "projection", torch.tensor(whitening.projection, dtype=torch.float32)
            )

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """The same steps as `RunEncoder.embed` on crops at the input size."""
        x = faces.permute(0, 3, 1, 2).float() / 255.0
        features = F.normalize(self.model.embed((x - self.mean) / self.std, pool=self.pool), dim=1)
        if self.whiten:
            features = F.normalize((features - self.centre) @ self.projection, dim=1)
        return features


def export_onnx(run: str | Path, path: str | Path, overwrite: bool = False) -> dict[str, str]:
    """Write RUN's shipped encoder to `path` (`.onnx`); returns the metadata stored with it.

    Raises:
        ValueError: not a run, a stale whitening, a name without `.onnx`, or `path` exists
            and `overwrite` is off.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: an exported encoder's file name must end in .onnx")
    if path.exists() and not overwrite:
        raise ValueError(f"{path}: already exists (pass --overwrite to replace it)")
    encoder = RunEncoder(run, device="cpu")
    size = encoder.input_size
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            ShippedEncoder(encoder).eval(),
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"faces": {0: torch.export.Dim("batch")}},
            dynamo=True,
            verbose=False,
        )
    metadata = _metadata(encoder)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {META_PREFIX + k: v for k, v in metadata.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return metadata


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notes (torchvision ops it skips, deprecations): not the user's."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _metadata(encoder: RunEncoder) -> dict[str, str]:
    """What the file must say besides its graph to be a complete encoder."""
    preprocess = encoder.config.preprocess
    size = encoder.input_size
    metadata = {
        "format": FORMAT,
        "name": encoder.name,
        "fingerprint": encoder.fingerprint,
        "input": f"uint8 [N, {size}, {size}, 3] RGB aligned crops",
        "input_size": str(size),
        "embed_dim": str(encoder.dim),
        "mean": json.dumps(list(preprocess.mean)),
        "std": json.dumps(list(preprocess.std)),
        "crop_template": preprocess.crop_template,
        "crop_padding": str(preprocess.crop_padding),
        "whitened": json.dumps(encoder.whitened),
    }
    calibration = load_calibration(encoder)
    if calibration is not None:
        metadata["threshold"] = repr(calibration.threshold)
        metadata["threshold_far"] = repr(calibration.target_far)
    return metadata
