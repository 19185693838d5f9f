"""The training loop: determinism, exact resume, NaN guard, checkpoint failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from landmark_study import train as train_mod
from landmark_study.runs import ResultsStore, run
from landmark_study.train import CheckpointError, NonFiniteLoss, train


def test_same_seed_same_numbers():
    a = train(tiny_config(), progress=False)
    b = train(tiny_config(), progress=False)
    assert a["final"]["pck@0.1"] == b["final"]["pck@0.1"]
    assert a["history"][-1]["loss/sup"] == b["history"][-1]["loss/sup"]
    assert a["predictions"]["points"] == b["predictions"]["points"]


def test_different_seed_differs():
    a = train(tiny_config(), progress=False)
    b = train(tiny_config(seed=3), progress=False)
    assert a["history"][-1]["loss/sup"] != b["history"][-1]["loss/sup"]


def test_interrupted_run_resumes_exactly(tmp_path):
    cfg = tiny_config()
    ref = train(cfg, progress=False)
    ckpt = tmp_path / "run.pt"
    out = train(cfg, checkpoint_path=ckpt, progress=False, stop_after=3)
    assert out == {"interrupted_at": 3} and ckpt.exists()
    resumed = train(cfg, checkpoint_path=ckpt, progress=False)
    assert resumed["final"]["pck@0.1"] == ref["final"]["pck@0.1"]
    assert resumed["history"] == [
        {k: (v if k != "ms_per_step" else resumed["history"][i][k]) for k, v in h.items()}
        for i, h in enumerate(ref["history"])
    ]
    assert resumed["predictions"]["points"] == ref["predictions"]["points"]


def test_nan_loss_stops_with_step_and_key(tmp_path, monkeypatch):
    from landmark_study.methods.supervised import Supervised

    orig = Supervised.training_step

    def poisoned(self, lb, ub, step):
        out = orig(self, lb, ub, step)
        if step == 2:
            out["sup"] = out["sup"] * float("nan")
        return out

    monkeypatch.setattr(Supervised, "training_step", poisoned)
    store = ResultsStore(tmp_path)
    with pytest.raises(NonFiniteLoss, match=r"step 2: loss 'sup' is nan \(config key loss_weights.sup"):
        run(tiny_config(), store, progress=False)
    entries = list(tmp_path.glob("*.json"))
    assert len(entries) == 1
    key = entries[0].stem
    assert store.read(key).status == "failed" and store.get(key) is None


def test_checkpoint_failure_keeps_previous(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.pt"
    cfg = tiny_config()
    train(cfg, checkpoint_path=ckpt, progress=False, stop_after=3)
    before = ckpt.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # a partial file appears ...
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is intact"):
        train(cfg, checkpoint_path=ckpt, progress=False)
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "run.pt.tmp").exists()


def test_history_logs_losses_and_pck():
    out = train(tiny_config(), progress=False)
    h = out["history"]
    assert [e["step"] for e in h] == [3, 6]
    for e in h:
        assert np.isfinite(e["loss/sup"]) and 0.0 <= e["val/pck@0.1"] <= 1.0 and e["ms_per_step"] > 0
    assert 0.0 <= out["final"]["pck@0.1"] <= 1.0
