"""Config validation: unknown keys, wrong types, out-of-range values fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from landmark_study.config import (ConfigError, RunConfig, load_chapter_params, load_run_config,
                                   notebook_params, run_config_from_dict, to_dict)


def test_defaults_round_trip():
    cfg = RunConfig()
    assert run_config_from_dict(to_dict(cfg)) == cfg


def test_unknown_key_names_file_and_key(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("method: supervised\ntrain:\n  stepz: 10\n")
    with pytest.raises(ConfigError) as e:
        load_run_config(p)
    msg = str(e.value)
    assert str(p) in msg and "stepz" in msg and "steps" in msg  # allowed keys listed
    assert "\n" not in msg


def test_wrong_type_names_key(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  steps: ten\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.steps: 'ten' has type str, expected int"):
        load_run_config(p)


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="seed"):
        run_config_from_dict({"seed": True})


def test_out_of_range_lists_allowed():
    with pytest.raises(ConfigError, match=r"label_fraction: 1.5 is out of range; allowed values: \[0.0, 1.0\]"):
        run_config_from_dict({"data": {"label_fraction": 1.5}})
    with pytest.raises(ConfigError, match=r"heatmap_stride: 3 is not allowed; allowed values: 1, 2, 4"):
        run_config_from_dict({"model": {"heatmap_stride": 3}})


def test_unknown_method_lists_known():
    with pytest.raises(ConfigError, match=r"unknown method 'superviesd'; known methods: .*supervised"):
        run_config_from_dict({"method": "superviesd"})


def test_unknown_loss_weight():
    with pytest.raises(ConfigError, match=r"loss_weights: unknown loss 'unsup'.*allowed keys: sup"):
        run_config_from_dict({"loss_weights": {"unsup": 1.0}})


def test_overrides_are_validated():
    cfg = RunConfig().with_overrides(**{"train.steps": 7})
    assert cfg.train.steps == 7
    with pytest.raises(ConfigError):
        RunConfig().with_overrides(**{"train.steps": -1})


def test_chapter_params_file(tmp_path: Path):
    d = tmp_path / "datasets"
    d.mkdir()
    (d / "x.yaml").write_text("profile: full\nseeds: [0, 1]\nsteps: 10\n")
    p = load_chapter_params("datasets", d / "x.yaml")
    assert p.seeds == (0, 1) and p.steps == 10
    (d / "y.yaml").write_text("profile: fast\n")
    with pytest.raises(ConfigError, match=r"y.yaml: profile: 'fast' is not allowed; allowed values: quick, full, paper"):
        load_chapter_params("datasets", d / "y.yaml")
    (d / "z.yaml").write_text("stepps: 10\n")
    with pytest.raises(ConfigError, match=r"z.yaml: unknown key 'stepps'"):
        load_chapter_params("datasets", d / "z.yaml")


def test_unknown_chapter():
    with pytest.raises(ConfigError, match="unknown chapter 'nope'"):
        load_chapter_params("nope", {})


def test_notebook_params_catch_injected_typo():
    import numpy as np

    ns = {"np": np, "_before_marker": 1}
    before = set(ns)
    ns.update({"profile": "quick", "steps": 5})
    assert notebook_params("datasets", ns, before).steps == 5
    ns["stepz"] = 3  # what `papermill -p stepz 3` would inject
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        notebook_params("datasets", ns, before)


def test_notebook_params_refuse_a_parameter_shadowed_by_an_earlier_name():
    def steps():  # e.g. a function imported before the parameters cell under a parameter's name
        return 0

    ns = {"steps": steps}
    before = set(ns)
    ns.update({"profile": "quick", "steps": 5})  # the parameters cell rebinds it
    with pytest.raises(ConfigError, match=r"\['steps'\] exist before the parameters cell"):
        notebook_params("datasets", ns, before)


def test_every_committed_params_file_is_valid():
    root = Path(__file__).resolve().parents[1] / "params"
    files = [p for p in root.glob("*/*.yaml") if p.parent.name != "claims"]
    assert files, "no params files found"
    for f in files:
        load_chapter_params(f.parent.name, f)
