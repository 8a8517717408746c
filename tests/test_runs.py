"""The run format inference owns: typed config round trip, and runs written before it was typed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import facerep
from facerep.models import create_model
from facerep.runs import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Preprocess,
    RunConfig,
    load_run_model,
    read_run_config,
    save_weights,
    write_run_config,
)

# config.json exactly as facerep wrote it before runs were typed (one flat model config for
# every kind, `img_size` in the preprocessing, no embedding size): such runs must keep loading.
LEGACY_MODELS = {
    "vit-test": {
        "kind": "mae", "img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2,
        "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
        "mlp_ratio": 4.0, "norm_pix_loss": True, "name": "mae_vit_test_p8_32",
    },
    "conv-ae": {
        "kind": "conv_ae", "img_size": 32, "patch_size": 8, "embed_dim": 256, "depth": 4,
        "num_heads": 12, "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16,
        "mlp_ratio": 4.0, "norm_pix_loss": True, "name": "conv_ae_64",
    },
}  # fmt: skip
LEGACY_PREPROCESS = {
    "img_size": 32,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "crop_padding": 0.25,
    "crop_template": "dlib 5-point mean face (facerep.faces.align)",
}


def write_legacy_run(folder: Path, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, img_size=32)
    folder.mkdir()
    config = {"model": LEGACY_MODELS[name], "train": {"epochs": 1}, "preprocess": LEGACY_PREPROCESS}
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    save_weights(folder / WEIGHTS_FILE, model.state_dict())
    return model.eval()


@pytest.mark.parametrize("name", ["vit-test", "conv-ae"])
def test_a_run_written_before_the_typed_format_loads_and_embeds_the_same(
    tmp_path: Path, name: str
) -> None:
    model = write_legacy_run(tmp_path / "run", name)
    config = read_run_config(tmp_path / "run")
    assert config.model == model.config
    assert config.preprocess == Preprocess(
        input_size=32, embed_dim=model.embed_dim, crop_padding=0.25
    )
    faces = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    embeddings = facerep.load_encoder(tmp_path / "run").embed(faces)
    stats = (config.preprocess.mean, config.preprocess.std)
    mean, std = (torch.tensor(v)[None, :, None, None] for v in stats)
    x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.embed(x), dim=1).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)


def test_the_typed_config_round_trips_and_rebuilds_the_model(tmp_path: Path) -> None:
    model = create_model("conv-ae", img_size=32)
    config = RunConfig(
        model.config, Preprocess(32, 256, 0.25), {"holdout_fraction": 0.25, "split_seed": 3}
    )
    write_run_config(tmp_path, config)
    assert read_run_config(tmp_path) == config
    assert config.identity_split == (0.75, 3)
    save_weights(tmp_path / WEIGHTS_FILE, model.state_dict())
    rebuilt, _ = load_run_model(tmp_path)
    assert not rebuilt.training and rebuilt.config == model.config


def test_folders_that_are_not_runs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not a facerep run directory \(no config.json\)"):
        read_run_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: damaged"):
        read_run_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"model": {"kind": "rnn"}, "preprocess": {}}))
    with pytest.raises(ValueError, match=r"not a run config .*unknown model kind 'rnn'"):
        read_run_config(tmp_path)
    write_run_config(tmp_path, RunConfig(create_model("vit-test").config, Preprocess(32, 32, 0.25)))
    with pytest.raises(ValueError, match=r"no model\.safetensors yet"):
        load_run_model(tmp_path)
