"""mimic (MR-MAE): the student moves to the teacher, resumes exactly, and refuses bad setups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import facerep
from facerep.data.store import open_dataset
from facerep.encoders.dlib import DlibEncoder
from facerep.train.checkpoint import SUMMARY_FILE, load_checkpoint
from facerep.train.config import TrainConfig
from facerep.train.loop import pretrain, resume_config

STUDENT = {"img_size": 32, "embed_dim": 128}  # resnet-tiny at the sample's size, dlib's width


def config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(datasets=(str(data),), out=str(out), model="resnet-tiny",
                model_overrides=STUDENT, objective="mimic", teacher="dlib", teacher_views=2,
                epochs=2, batch_size=16, warmup_epochs=0.5, lr=2e-3, checkpoint_every=3,
                threads=1, whiten_components=0)  # fmt: skip
    return TrainConfig(**{**base, **changes})


def teacher_agreement(run: Path, data: Path) -> float:
    """Correlation of the student's pairwise similarities with dlib's, over 40 faces."""
    crops = np.asarray(open_dataset(data).crops[:40])
    ours, theirs = facerep.load_encoder(run).embed(crops), DlibEncoder().embed(crops)
    pairs = ~np.eye(40, dtype=bool)
    return float(np.corrcoef((ours @ ours.T)[pairs], (theirs @ theirs.T)[pairs])[0, 1])


def test_the_student_learns_the_teachers_geometry(lfw_teacher: Path, tmp_path: Path) -> None:
    pretrain(config(lfw_teacher, tmp_path / "start", epochs=12), stop_after=1)
    result = pretrain(
        config(lfw_teacher, tmp_path / "run", epochs=12, mimic_loss="cosine+relation",
               whiten_components=16)
    )
    epochs = result.epoch_losses
    assert np.isfinite(result.losses).all() and epochs[-1] < 0.7 * epochs[0], epochs
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert summary["last_teacher_cosine"] > 0.5 and result.collapse is None
    before, after = (teacher_agreement(tmp_path / r, lfw_teacher) for r in ("start", "run"))
    # 92 faces, 60 steps at 32 px: the pairwise agreement goes from about 0.08 to 0.22.
    assert after > before + 0.1, (before, after)
    # The 128-D embedding is the one compared with the teacher: nothing else to drop, and no
    # whitening to distort the teacher's geometry.
    encoder = facerep.load_encoder(tmp_path / "run")
    assert encoder.dim == 128 and not encoder.whitened
    assert "teacher's own space" in summary["whitening"]["skipped"]


def test_a_student_that_only_finds_the_teachers_mean_direction_is_reported_collapsed(
    lfw_teacher: Path, tmp_path: Path
) -> None:
    # dlib's unit embeddings share a large common direction: on 92 faces the cosine alone
    # reaches it (0.93) with every face at one point, and the run says so. (On the 15,000-face
    # corpus it does not collapse, and distils best: bench/results/distillation.md.)
    result = pretrain(config(lfw_teacher, tmp_path / "run", epochs=12, mimic_loss="cosine"))
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert summary["last_teacher_cosine"] > 0.9
    assert result.collapse is not None and "--mimic-loss cosine+relation" in result.collapse


def test_centred_targets_teach_what_tells_faces_apart_where_the_raw_cosine_collapses(
    lfw_teacher: Path, tmp_path: Path
) -> None:
    # The 92 faces above, 150 steps: the raw cosine collapses there too (agreement about 0.15),
    # cosine+relation reaches about 0.29; centred, the cosine alone has nothing to match but
    # the differences between faces, and reaches about 0.48.
    pretrain(config(lfw_teacher, tmp_path / "start", epochs=30), stop_after=1)
    result = pretrain(
        config(lfw_teacher, tmp_path / "run", epochs=30, teacher_centred=True, whiten_components=8)
    )
    assert result.collapse is None
    # A centred copy of the teacher's space is not the teacher's own: it ships whitened.
    assert result.whitening["components"] == 8
    before, after = (teacher_agreement(tmp_path / r, lfw_teacher) for r in ("start", "run"))
    assert after > before + 0.3, (before, after)


def test_an_autoencoder_also_reconstructs_and_resumes_exactly(
    lfw_teacher: Path, tmp_path: Path
) -> None:
    vit = dict(model="vit-test", model_overrides={}, masking="random", mimic_loss="cosine+relation",
               teacher_jitter=1.0)  # nudged views are drawn per step too: resumed exactly
    whole = pretrain(config(lfw_teacher, tmp_path / "whole", **vit, whiten_components=8))
    assert whole.figure is not None and whole.figure.name == "reconstructions.png"
    # Its pooled tokens are not the teacher's space (a head maps them there): whitened.
    assert whole.whitening["components"] == 8
    state = load_checkpoint(tmp_path / "whole").objective_state
    assert any(key.startswith("head.") for key in state)  # 32-D tokens -> dlib's 128-D
    summary = json.loads((tmp_path / "whole" / SUMMARY_FILE).read_text())
    assert {"last_reconstruction", "last_relation", "last_teacher_cosine"} <= set(summary)
    pretrain(config(lfw_teacher, tmp_path / "broken", **vit), stop_after=4)
    rest = pretrain(resume_config(tmp_path / "broken"), resume=True)
    np.testing.assert_allclose(rest.losses, whole.losses, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"teacher": ""}, r"objective mimic needs a teacher: pass --teacher \(dlib\)"),
        ({"teacher": "arcface"}, r"unknown teacher 'arcface'; choose one of: dlib"),
        ({"mimic_loss": "l1"}, r"mimic_loss must be one of 'cosine', 'relation'"),
        ({"objective": "instance"}, r"--teacher is for objectives that distil \(mimic\), not inst"),
        ({"teacher": "", "teacher_centred": True}, r"--teacher-centred centres a teacher's"),
        ({"teacher": "", "teacher_jitter": 1.0}, r"--teacher-jitter nudges a teacher's cac"),
        ({"teacher_views": 5}, r"no complete cache .* 5 views; build it with `facerep teacher-c"),
    ],
)
def test_bad_setups_are_one_line_errors(
    lfw_teacher: Path, tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pretrain(config(lfw_teacher, tmp_path / "run", **changes))
