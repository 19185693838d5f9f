"""The training loop: determinism, exact resume, logging (faults: tests/reliability)."""

from __future__ import annotations

import numpy as np

from conftest import tiny_config
from landmark_study.train import train


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


def test_history_logs_losses_and_pck():
    out = train(tiny_config(), progress=False)
    h = out["history"]
    assert [e["step"] for e in h] == [3, 6]
    for e in h:
        assert np.isfinite(e["loss/sup"]) and 0.0 <= e["val/pck@0.1"] <= 1.0 and e["ms_per_step"] > 0
    assert 0.0 <= out["final"]["pck@0.1"] <= 1.0
