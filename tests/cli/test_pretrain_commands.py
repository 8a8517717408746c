"""`facerep pretrain` and `facerep list-models` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_app import facerep


def test_pretrain_resume_and_refusal(lfw_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["pretrain", str(lfw_dataset), "--out", str(run), "--model", "vit-test",
            "--epochs", "2", "--batch-size", "16", "--checkpoint-every", "4"]
    first = facerep(*args, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["steps"] == 10 and len(summary["epoch_losses"]) == 2

    again = facerep(*args)
    assert again.returncode == 2 and "already holds a run" in again.stderr

    clash = facerep("pretrain", "--resume", str(run), "--batch-size", "8")
    assert clash.returncode == 2 and "drop --batch-size" in clash.stderr

    more = facerep("pretrain", "--resume", str(run), "--epochs", "3", "--json")
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["steps"] == 15
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["model"]["name"] == "mae_vit_test_p8_32"


def test_pretrain_human_output_names_the_figures(lfw_dataset: Path, tmp_path: Path) -> None:
    result = facerep("pretrain", str(lfw_dataset), "--out", str(tmp_path / "r"), "--model",
                     "vit-test", "--epochs", "2", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    assert "reconstructions.png" in result.stdout and "loss_curve.png" in result.stdout
    assert "whitening: " in result.stdout and "whitening.safetensors" in result.stdout
    # The TensorBoard hint names a program that exists, not one the PATH may lack.
    [hint] = [line for line in result.stdout.splitlines() if line.startswith("TensorBoard: ")]
    program = hint.split()[1]
    assert Path(program).is_file() and Path(program).name == "tensorboard", hint


def test_pretrain_usage_errors(lfw_dataset: Path, tmp_path: Path) -> None:
    unknown = facerep("pretrain", str(lfw_dataset), "--out", str(tmp_path / "r"), "--model",
                      "vit-huge")
    assert unknown.returncode == 2 and "unknown model 'vit-huge'" in unknown.stderr
    missing = facerep("pretrain", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert missing.returncode == 2 and "not a prepared dataset" in missing.stderr
    assert "Traceback" not in unknown.stderr + missing.stderr


def test_list_models_shows_aliases() -> None:
    result = facerep("list-models", "mae_vit_tiny*")
    assert result.returncode == 0
    assert "mae_vit_tiny_p8_64  (alias: vit-tiny)" in result.stdout


def test_objectives_are_listed_and_an_unknown_one_is_a_one_line_error(
    lfw_dataset: Path, tmp_path: Path
) -> None:
    listed = facerep("list-objectives")
    assert listed.returncode == 0 and "reconstruction  (default): " in listed.stdout
    assert "instance: " in listed.stdout and "mae+id: " in listed.stdout
    unknown = facerep("pretrain", str(lfw_dataset), "--out", str(tmp_path / "r"), "--objective",
                      "jigsaw")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    known = "instance, mae+id, mimic, reconstruction"
    assert f"unknown objective 'jigsaw'; choose one of: {known}" in unknown.stderr
    clash = facerep("pretrain", "--resume", str(tmp_path / "r"), "--objective", "reconstruction")
    assert clash.returncode == 2 and "drop --objective" in clash.stderr


def test_a_one_epoch_run_with_the_default_warmup_just_works(
    lfw_dataset: Path, tmp_path: Path
) -> None:
    # The default warmup (2 epochs) is longer than the run: it becomes 10% of it, with a note.
    result = facerep("pretrain", str(lfw_dataset), "--out", str(tmp_path / "r"), "--model",
                     "vit-test", "--epochs", "1", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    assert "note: warmup of 2 epochs is longer than the 1-epoch run" in result.stderr


def test_every_training_option_has_a_flag_with_its_bounds(
    lfw_dataset: Path, tmp_path: Path
) -> None:
    # The flags come from TrainConfig: a field's bounds hold on the command line too.
    args = ["pretrain", str(lfw_dataset), "--out", str(tmp_path / "r"), "--model", "vit-test"]
    ratio = facerep(*args, "--mask-ratio", "0.99", "--epochs", "1", "--batch-size", "16")
    assert ratio.returncode == 0, ratio.stderr  # below 1 is allowed (was refused above 0.95)
    for flag, value, message in [("--mask-ratio", "1", "mask_ratio must be in [0, 1), got 1.0"),
                                 ("--hflip", "2", "hflip must be in [0, 1], got 2.0"),
                                 ("--epochs", "0", "epochs must be at least 1, got 0")]:
        refused = facerep(*args, flag, value, "--out", str(tmp_path / "x"))
        assert refused.returncode == 2 and message in refused.stderr, (flag, refused.stderr)
    import typer

    from facerep.cli.app import app
    from facerep.train.config import TrainConfig

    command = typer.main.get_command(app).commands["pretrain"]
    flags = {name for param in command.params for name in param.opts}
    for name in TrainConfig.__dataclass_fields__:
        if name not in ("datasets", "model_overrides", "betas"):  # an argument, file-only
            assert f"--{name.replace('_', '-')}" in flags, name


def test_pretrain_never_writes_into_a_dataset_or_over_foreign_files(
    lfw_dataset: Path, tmp_path: Path
) -> None:
    inside = facerep("pretrain", str(lfw_dataset), "--out", str(lfw_dataset / "run"))
    assert inside.returncode == 2 and "is inside the input" in inside.stderr
    assert not (lfw_dataset / "run").exists()
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"the": "user\'s own"}')
    refused = facerep("pretrain", str(lfw_dataset), "--out", str(foreign), "--overwrite")
    assert refused.returncode == 2 and "not written by facerep pretrain" in refused.stderr
    assert (foreign / "config.json").read_text() == '{"the": "user\'s own"}'
    assert refused.stderr.count("\n") == 1


def test_teacher_cache_builds_once_and_names_bad_input(lfw_teacher: Path, tmp_path: Path) -> None:
    again = facerep("teacher-cache", str(lfw_teacher), "--views", "1", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert "teacher cache complete in" in again.stdout and "dlib-2views" in again.stdout
    for args, reason in [
        ((str(tmp_path / "absent"),), "not a prepared dataset"),
        ((str(lfw_teacher), "--teacher", "arcface"), "unknown teacher 'arcface'"),
    ]:
        bad = facerep("teacher-cache", *args)
        assert bad.returncode == 2 and reason in bad.stderr and "Traceback" not in bad.stderr
