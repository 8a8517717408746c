"""Training configuration: defaults, then a file, then flags; bad values refused in one line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from facerep.train.config import TrainConfig, load_config


def test_flags_override_the_file_which_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('model = "vit-small"\nepochs = 7\nbatch_size = 32\n')
    config = load_config(path, epochs=9, seed=None)
    assert (config.model, config.epochs, config.batch_size) == ("vit-small", 9, 32)
    assert config.seed == TrainConfig().seed
    assert config.base_lr_scaled == pytest.approx(config.blr * 32 / 256)


def test_json_round_trip() -> None:
    config = TrainConfig(datasets=("a", "b"), model_overrides={"decoder_depth": 2})
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('epochs = "10"', "epochs must be int"),
        ("epochs = true", "epochs must be int"),
        ('masking = "checkerboard"', "masking must be one of 'random', 'face-regions', 'noise'"),
        ('precision = "fp16"', "precision must be one of 'auto', 'fp32', 'bf16'"),
        ('datasets = "abc"', "datasets must be a list of str, got 'abc'"),
        ("datasets = [1]", "datasets must be a list of str"),
        ("betas = [0.9]", "betas must be a list of 2 values"),
        ('model_overrides = "depth=2"', "model_overrides must be a table"),
        ("checkpoint_every = 0", "checkpoint_every must be at least 1"),
        ("keep_checkpoints = 0", "keep_checkpoints must be at least 1"),
        ("mask_ratio = 1.0", "mask_ratio must be in"),
        ("holdout_fraction = 0.0", r"holdout_fraction must be in \(0, 1\), got 0.0"),
        ("hflip = 1.5", r"hflip must be in \[0, 1\], got 1.5"),
        ("objective = 'jigsaw'",
         "unknown objective 'jigsaw'; choose one of: instance, mae\\+id, mimic, recon"),
        ("learning_rate = 0.1", "unknown training options"),
        ("epochs = [", "not valid TOML"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message) as error:
        load_config(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"masking": "checkerboard", "precision": "fp16"}, "masking must be one of"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"datasets": "abc"}, "datasets must be a list of str"),
        ({"betas": (0.9, "x")}, "betas must be a list of 2 values"),
        ({"epochs": None}, "epochs must be int"),
    ],
)
def test_bad_values_in_code_are_one_line_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        TrainConfig(**changes)
    assert "\n" not in str(error.value)


def test_a_warmup_longer_than_the_run_becomes_a_share_of_it() -> None:
    short = TrainConfig(epochs=1)  # the default 2-epoch warmup: refused before, now clipped
    assert short.warmup_epochs_used == pytest.approx(0.1)
    assert "longer than the 1-epoch run" in short.warmup_note
    assert TrainConfig(epochs=2, warmup_epochs=2).warmup_note is None  # equal is allowed
    assert TrainConfig().warmup_epochs_used == 2.0


def test_load_config_without_a_file_and_with_mistaken_flags(tmp_path: Path) -> None:
    assert load_config() == TrainConfig()
    assert load_config(epochs=3, lr=None).epochs == 3
    with pytest.raises(ValueError, match=r"unknown training options \['learning_rate'\]"):
        load_config(learning_rate=0.1)
    path = tmp_path / "run.toml"
    path.write_text('epochs = "10"\n')
    with pytest.raises(ValueError, match="epochs must be int"):
        load_config(path, epochs=3)  # the file's mistake is reported, not masked by the flag


def test_a_file_extends_another_and_its_own_keys_win(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        'model = "vit-small"\nepochs = 7\n'
        "[model_overrides]\ndecoder_depth = 2\nnorm_pix_loss = true\n"
    )
    (tmp_path / "recipes").mkdir()
    path = tmp_path / "recipes" / "longer.toml"  # `extend` is relative to the file, not the cwd
    path.write_text(
        'extend = "../base.toml"\nepochs = 9\n[model_overrides]\nnorm_pix_loss = false\n'
    )
    config = load_config(path, batch_size=16)
    assert (config.model, config.epochs, config.batch_size) == ("vit-small", 9, 16)
    assert config.model_overrides == {"decoder_depth": 2, "norm_pix_loss": False}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.toml": 'extend = "b.toml"', "b.toml": 'extend = "a.toml"'}, "leads back"),
        (
            {
                "a.toml": 'extend = "b.toml"',
                "b.toml": 'extend = "c.json"',
                "c.json": '{"extend": "b.toml"}',
            },
            r"a.toml: extend = 'b.toml': .*b.toml: extend = 'c.json': .*c.json: .*leads back",
        ),
        ({"a.toml": 'extend = "a.toml"'}, "leads back"),
        ({"a.toml": "extend = 3"}, "extend must be the path of a config file, got 3"),
        ({"a.toml": 'extend = ""'}, "extend must be the path of a config file, got ''"),
        (
            {"a.toml": 'extend = "gone.toml"'},
            r"a.toml: extend = 'gone.toml': .*gone.toml: cannot read",
        ),
        ({"a.toml": 'extend = "b.toml"', "b.toml": "epochs = ["}, r"b.toml: not valid TOML"),
        ({"a.toml": 'extend = "b.json"', "b.json": "[1, 2]"}, r"b.json: a config must be a table"),
        ({"a.toml": 'extend = "b.toml"', "b.toml": 'epochs = "9"'}, r"a.toml: epochs must be int"),
    ],
)
def test_bad_extends_are_one_line_errors(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    with pytest.raises(ValueError, match=message) as error:
        load_config(tmp_path / "a.toml")
    assert "\n" not in str(error.value)


def test_extend_is_relative_to_a_linked_file_s_target(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.toml").write_text("epochs = 7\n")
    (tmp_path / "recipes" / "longer.toml").write_text('extend = "base.toml"\nbatch_size = 8\n')
    (tmp_path / "mine.toml").symlink_to(tmp_path / "recipes" / "longer.toml")
    config = load_config(tmp_path / "mine.toml")
    assert (config.epochs, config.batch_size) == (7, 8)


def test_the_bench_recipes_load_and_each_variant_differs_from_its_base_by_its_own_keys() -> None:
    recipes = Path(__file__).parents[2] / "bench" / "recipes"
    variants = 0
    for path in recipes.glob("*.toml"):
        written = tomllib.loads(path.read_text())
        config = load_config(path).to_dict()
        if "extend" not in written:
            continue
        variants += 1
        base = load_config(recipes / written["extend"]).to_dict()
        changed = {key for key in config if config[key] != base[key]}
        assert changed == set(written) - {"extend"}, path.name
    assert variants >= 7
