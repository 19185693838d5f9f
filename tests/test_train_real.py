"""The training loop reads real datasets through their manifests (on a fixture in CUB's format)."""

from __future__ import annotations

import warnings

import pytest

from conftest import tiny_config
from landmark_study.config import ConfigError
from landmark_study.train import load_run_data, train
from test_parsers import _cub, _image


def test_trains_on_a_real_format_fixture(tmp_path):
    _cub(tmp_path)
    for i in range(1, 5):
        _image(tmp_path / "CUB_200_2011" / "images" / f"{i:03d}.Bird" / f"img_{i}.jpg", 80, 100, value=40 * i)
    cfg = tiny_config(**{"data.name": "cub", "data.options": {
        "root": str(tmp_path), "splits": {"train": "train", "val": "train", "test": "train"}},
        "data.n_train": None, "data.n_val": None, "train.batch_size": 2, "train.steps": 2,
        "train.eval_every": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper's split counts differ from the fixture's
        data = load_run_data(cfg.data)
        out = train(cfg, progress=False)
    assert len(data.labeled) == 2 and data.labeled.image_size == (32, 32) and data.labeled.spec.name == "cub"
    assert 0.0 <= out["final"]["pck@0.1"] <= 1.0 and len(out["predictions"]["points"][0]) == 15


def test_missing_real_dataset_says_how_to_fetch(tmp_path):
    cfg = tiny_config(**{"data.name": "lsp", "data.options": {}})
    with pytest.raises(Exception, match=r"landmark_study data fetch lsp"):
        load_run_data(cfg.data)


def test_unknown_real_option():
    cfg = tiny_config(**{"data.name": "lsp", "data.options": {"protocl": "x"}})
    with pytest.raises(ConfigError, match="unknown key 'protocl'"):
        load_run_data(cfg.data)
