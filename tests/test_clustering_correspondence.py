"""Stage 1 / stage 2 of Mallis et al.: option checks, round plumbing, pseudo-labels, a tiny chain."""

import numpy as np
import pytest
import torch

from landmark_study.config import ConfigError, RunConfig
from landmark_study.methods.clustering_correspondence import (ClusteringCorrespondence as CC, _label_arrays,
                                                              initial_keypoints)
from landmark_study.runs import ResultsStore, run, run_key


def tiny(**opts):
    o = {"round": 1, "warmup_steps": 4, "num_landmarks": 5, "num_clusters": 10, "cluster_images": 30,
         "n_regress": 20, "outlier_knn": 10, "init_points": 10}
    o.update(opts)
    return RunConfig().with_overrides(**{
        "method": "clustering_correspondence", "data.name": "faces", "data.size": 32, "data.n_train": 30,
        "data.n_val": 12, "model.width": 8, "train.steps": 3, "train.batch_size": 4, "train.eval_every": 3,
        "train.checkpoint_every": 100, "train.eval_size": 12, "train.augment.flip": 0.0, "method_options": o})


def test_options_are_validated():
    with pytest.raises(ConfigError, match="variant"):
        tiny(variant="kmeans")
    with pytest.raises(ConfigError, match="init"):
        tiny(init="superpoint")


def test_warmup_is_shared_by_arms_that_differ_in_round_options():
    a = CC.round_config(tiny(negatives="different_cluster", num_clusters=20), 0)
    b = CC.round_config(tiny(correspondence="equivariance"), 0)
    assert run_key(a) == run_key(b)
    assert a.train.steps == 4 and a.method_options["round"] == 0
    assert run_key(CC.round_config(tiny(num_clusters=20), 1)) != run_key(CC.round_config(tiny(), 1))


def test_gt_mix_real_fraction():
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("faces", "train", n=60, seed=0, size=64)
    o = tiny(init="gt_mix", real_fraction=1.0, init_points=5).options()
    kp, vis = initial_keypoints(ds, o, seed=0)
    d = np.linalg.norm(kp[:, :, None] - ds.keypoints[:, None], axis=-1).min(-1)
    assert vis.all() and (d <= 3.0 * 64 / 256 * np.sqrt(2) + 1e-4).all()  # each point near a landmark
    o0 = tiny(init="gt_mix", real_fraction=0.0, init_points=5).options()
    kp0, _ = initial_keypoints(ds, o0, seed=0)
    d0 = np.linalg.norm(kp0[:, :, None] - ds.keypoints[:, None], axis=-1).min(-1)
    assert (d0 > 1.0).mean() > 0.5  # uniform points rarely land on a landmark


def test_label_arrays_place_points_in_their_cluster_slot():
    det = {"points": np.array([[1, 2], [3, 4], [5, 6]], np.float32), "ids": np.array([0, 0, 1]), "n_images": 2}
    kp, vis = _label_arrays(det, np.array([2, -1, 0]), 3)
    assert vis.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert kp[0, 2].tolist() == [1, 2] and kp[1, 0].tolist() == [5, 6]


def test_descriptor_loss_separates_points_and_detector_learns(monkeypatch):
    """A few steps of warm-up on fixed GT points lower the summed loss (equivariance pairs)."""
    from landmark_study.data.synthetic import get_dataset
    from landmark_study.methods.base import Batch

    cfg = tiny(round=0, init="gt_mix", real_fraction=1.0, init_points=5)
    ds = get_dataset("faces", "train", n=8, seed=0, size=32)
    o = cfg.options()
    kp, vis = initial_keypoints(ds, o, seed=0)
    m = CC(cfg, ds.spec, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    b = Batch(images=torch.from_numpy(ds.images).permute(0, 3, 1, 2).float() / 255,
              keypoints=torch.from_numpy(kp), visibility=torch.from_numpy(vis))
    w = m.loss_weights()
    totals = []
    for step in range(12):
        m.generator.manual_seed(0)  # the same augmentation each step: a fixed objective
        losses = m.training_step(b, None, step)
        total = sum(w[k] * v for k, v in losses.items())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total.detach()))
        assert m.diagnostics["positives"] > 0 and m.diagnostics["negatives"] > 0
    assert totals[-1] < totals[0]


def test_tiny_chain_runs_rounds_and_stage2(tmp_path):
    from landmark_study.chapters.clustering import ClusteringParams, arms, grid

    p = ClusteringParams(size=32, n_train=40, n_val=12, batch_size=4, warmup_steps=3, round_steps=3,
                         rounds=1, stage2_steps=3, num_landmarks=5, num_clusters=10, m_small=5, m_large=20,
                         noise_fractions=(0.2,), cluster_images=40, n_regress=20)
    a = arms(p)
    store = ResultsStore(tmp_path / "store")
    r1 = run(a["tpami"][0], store)
    assert np.isfinite(r1.final["fnme"]) and r1.final["ppe"] <= 5
    assert r1.history[-1]["loss/descriptor"] >= 0
    r2 = run(a["stage2"][0], store)
    assert r2.final["ppe"] == 5 and np.isfinite(r2.final["fnme_noflip"])
    assert r2.final["flip_gain"] == pytest.approx(r2.final["fnme_noflip"] - r2.final["fnme_flip"])
    # the warm-up and round 1 were stored as their own runs
    g = grid(p)
    keys = {run_key(c) for c in g}
    assert r1.key in keys and r2.key in keys
    assert sum(1 for c in g if c.method_options.get("round") == 0) == 2  # orb warm-up + one noise warm-up
