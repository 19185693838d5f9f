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


def test_detector_bias_starts_at_the_keypoint_prior():
    """sigmoid(bias) = points / heatmap pixels; a fresh stage-1 net starts there, not at 0.5."""
    from landmark_study.methods.clustering_correspondence import detector_prior_logit

    b = detector_prior_logit(20, (32, 32))
    assert 1 / (1 + np.exp(-b)) == pytest.approx(20 / 1024, rel=1e-6)
    cfg = tiny(round=0, init_points=10)
    m = CC(cfg, None, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert float(m.module.head.detector.bias.detach()) == pytest.approx(detector_prior_logit(10, m.heatmap_size))


def test_relative_detection_threshold_is_scale_invariant():
    from landmark_study.methods.clustering_correspondence import detect_points

    g = torch.Generator().manual_seed(0)
    d = torch.rand(2, 1, 16, 16, generator=g) * 0.1
    d[0, 0, 3, 4], d[0, 0, 10, 12], d[1, 0, 8, 8] = 1.0, 0.5, 0.8
    a = detect_points(d, 0.4, True, 1, 30)
    b = detect_points(d * 0.25, 0.4, True, 1, 30)  # a weaker detector, same shape
    for (pa, sa), (pb, sb) in zip(a, b):
        assert np.array_equal(pa, pb) and np.allclose(sb, 0.25 * sa)
    assert sorted(map(tuple, a[0][0].tolist())) == [(4.0, 3.0), (12.0, 10.0)] and len(a[1][0]) == 1
    assert len(detect_points(d * 0.25, 0.4, False, 1, 30)[0][0]) == 0  # absolute: nothing left


def test_round_pairs_mix_same_image_and_other_images():
    m0 = CC(tiny(round=0), None, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert m0._pairing(8, torch.device("cpu")).tolist() == list(range(8))  # warm-up: equivariance pairs
    m1 = CC(tiny(same_image_pairs=0.0), None, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    p = m1._pairing(64, torch.device("cpu"))
    assert (p != torch.arange(64)).all() and ((p >= 0) & (p < 64)).all()
    m2 = CC(tiny(same_image_pairs=0.5), None, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    same = float(np.mean([(m2._pairing(64, torch.device("cpu")) == torch.arange(64)).float().mean()
                          for _ in range(20)]))
    assert 0.4 < same < 0.6


def test_random_pixel_negatives_are_far_from_their_keypoint():
    m = CC(tiny(), None, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    desc = torch.nn.functional.normalize(torch.randn(3, 8, 16, 16), dim=1)
    kp = torch.rand(3, 5, 2) * 31
    vis = torch.ones(3, 5, dtype=torch.bool)
    vis[2] = False  # an image without keypoints gives no pairs
    fa, fb = m._random_negatives(desc, kp, vis, 200, min_d=0.0)
    assert fa.shape == fb.shape == (400, 8)  # every pair of the two images with keypoints
    far = torch.zeros(3, 5, 2)  # all keypoints at (0, 0): only pixels >= min_d away qualify
    fa, _ = m._random_negatives(desc, far, vis, 200, min_d=44.0)  # > the 32x32 diagonal
    assert len(fa) == 0
    fa, _ = m._random_negatives(desc, far, vis, 2000, min_d=22.0)
    # P(|u| >= 22) for u uniform on [0, 31]^2 is 1 - pi 22^2 / 4 / 31^2 = 0.604
    assert 0.55 < len(fa) / 4000 < 0.66
    raw_a, raw_b = m._random_negatives(desc, kp, vis, 50, min_d=8.0)
    assert raw_a.shape[1] == 8 and torch.allclose(raw_a.norm(dim=1), torch.ones(len(raw_a)), atol=1e-5)


def test_nn_accuracy_known_cases():
    from landmark_study.metrics import knn_accuracy as nn_accuracy

    x = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    assert nn_accuracy(x, np.array([0, 0, 1, 1])) == 1.0
    assert nn_accuracy(x, np.array([0, 1, 0, 1])) == 0.0
    assert np.isnan(nn_accuracy(x[:1], np.array([0])))


def test_descriptor_embeddings_score_identity_descriptors_perfectly():
    from landmark_study.data.synthetic import get_dataset
    from landmark_study.methods.clustering_correspondence import descriptor_embeddings

    ds = get_dataset("faces", "val", n=12, seed=0, size=64)
    vis = ds.visibility > 0
    ids, pts, k = np.nonzero(vis)[0], ds.keypoints[vis], np.nonzero(vis)[1]
    # landmarks that coincide (self-occlusion at large yaw) resolve to the lower index, as in the method
    from landmark_study import clustering as CL
    from landmark_study.methods.clustering_correspondence import sqrt_wh

    k = CL.nearest_landmark(pts, ds.keypoints[ids], vis[ids], 0.1 * sqrt_wh(ds)[ids])
    assert (k >= 0).all()
    desc = np.eye(ds.spec.num_keypoints, dtype=np.float32)[k] + 0.01 * np.arange(len(k))[:, None] / len(k)
    det = {"ids": ids, "points": pts.astype(np.float32), "desc": desc}
    out = descriptor_embeddings(det, ds, n=10_000, seed=0)  # every detection
    # each detection sits on its landmark and carries its one-hot: only a landmark seen once has
    # no neighbour of its own kind
    counts = np.bincount(k)
    assert out["nn_acc_ours"] == pytest.approx(np.mean(counts[k] >= 2))
    assert 0.0 <= out["nn_acc_sift"] <= 1.0
    assert len(out["tsne_ours"]) == len(out["tsne_labels"]) == len(k)
    assert np.shape(out["tsne_sift"]) == (len(out["tsne_labels"]), 2)
