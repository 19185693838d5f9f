"""Bad input: params files, papermill parameters, dataset files -- one clear message, before compute."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from landmark_study.config import ConfigError, notebook_params, run_config_from_dict
from landmark_study.data.real.records import read_image


@pytest.mark.parametrize("text, message", [
    ("stepz: 10\n", "unknown key 'stepz'"),
    ("steps: many\n", "steps: 'many' has type str, expected int"),
    ("steps: -5\n", "steps: -5 is out of range"),
    ("label_fractions: [0.05, 2.0]\n", "label_fractions: 2.0 is out of range"),
    ("profile: fast\n", "'fast' is not allowed; allowed values: quick, full, paper"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("steps: [\n", "not valid YAML"),
])
def test_bad_params_file_one_line_before_compute(tmp_path, text, message):
    d = tmp_path / "datasets"
    d.mkdir()
    f = d / "bad.yaml"
    f.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "landmark_study", "params", "check", str(f)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and str(f) in err and message in err, err


def test_sweep_rejects_bad_params_before_training(tmp_path):
    d = tmp_path / "datasets"
    d.mkdir()
    (d / "full.yaml").write_text("seeds: [0]\nlearning_rate: 0.1\n")
    proc = subprocess.run([sys.executable, "-m", "landmark_study", "sweep", str(d / "full.yaml"),
                           "--store", str(tmp_path / "store")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown key 'learning_rate'" in proc.stderr
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())


def test_papermill_parameter_typo_is_caught():
    before = {"np"}
    with pytest.raises(ConfigError, match="unknown key 'label_fraction'.*allowed keys"):
        notebook_params("datasets", {"np": np, "label_fraction": [0.1]}, before)


@pytest.mark.parametrize("data, message", [
    ({"method": "supervized"}, "unknown method 'supervized'; known methods"),
    ({"data": {"size": 8}}, "data.size: 8 is out of range"),
    ({"train": {"optimizer": "adagrad"}}, "'adagrad' is not allowed; allowed values: adam"),
    ({"train": {"augment": {"scale": [0.5]}}}, "expected 2 items"),
])
def test_bad_run_configs(data, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(data)


def test_unknown_dataset_names_the_known_ones():
    from landmark_study.data.synthetic import load_synthetic

    with pytest.raises(ValueError, match="figures"):
        load_synthetic("figurez", 2, 0)


def test_missing_real_dataset_names_manifest_and_command(tmp_path):
    from landmark_study.data.fetch import DatasetNotFoundError, require

    with pytest.raises(DatasetNotFoundError) as e:
        require("lsp", data_root=tmp_path)
    assert "lsp.yaml" in str(e.value) and "python -m landmark_study data fetch lsp" in str(e.value)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_image_is_refused(tmp_path, ext):
    img = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    p = tmp_path / f"img{ext}"
    cv2.imwrite(str(p), img)
    assert read_image(p).shape == (40, 40, 3)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match=rf"img\{ext} is truncated"):
        read_image(p)
