"""Self-training on generic keypoints (Mallis, thesis ch. 4): helpers, chain configs, a tiny chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landmark_study.config import ConfigError, RunConfig
from landmark_study.keypoints import heatmap_points, padded_box, synthetic_corners
from landmark_study.methods.self_training import (canonical, cpd, magicpoint_config, match_to_template,
                                                  noisy_gt_points, pack_points, previous_config, tracking_precision,
                                                  unpack_points)


def _sim(points, angle_deg, s, t):
    a = np.deg2rad(angle_deg)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return points @ (s * R).T + t


def test_pack_unpack_round_trip():
    pts = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((0, 2)), np.array([[5.0, 6.0]])]
    kp, vis = pack_points(pts, 4)
    assert kp.shape == (3, 4, 2) and vis.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    back = unpack_points(kp, vis)
    for a, b in zip(pts, back):
        np.testing.assert_allclose(a.reshape(-1, 2), b)
    kp2, vis2 = pack_points(pts, 1)  # truncates to the first k
    assert vis2.sum() == 2


@pytest.mark.parametrize("transform", ["rigid", "affine"])
def test_cpd_recovers_a_similarity_with_outliers_and_missing_points(transform):
    rng = np.random.default_rng(0)
    Y = rng.uniform(0, 40, (10, 2))
    X = _sim(Y, 20.0, 1.2, np.array([5.0, -3.0]))
    X = np.concatenate([X[1:], rng.uniform(0, 60, (2, 2))])  # one missing, two outliers
    aligned, A, t = cpd(X, Y, transform=transform, w=0.2)
    truth = _sim(Y, 20.0, 1.2, np.array([5.0, -3.0]))
    assert np.abs(aligned - truth).max() < 0.5
    np.testing.assert_allclose(aligned, Y @ A.T + t, atol=1e-9)


def test_cpd_identity_and_empty():
    Y = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [7.0, 7.0]])
    aligned, A, t = cpd(Y.copy(), Y)
    np.testing.assert_allclose(aligned, Y, atol=1e-6)
    aligned, A, t = cpd(np.zeros((0, 2)), Y)
    np.testing.assert_allclose(aligned, Y)
    with pytest.raises(ValueError):
        cpd(Y, Y, transform="projective")


def test_match_to_template_assigns_and_fills():
    rng = np.random.default_rng(1)
    tpl = rng.uniform(5, 55, (6, 2))
    img = _sim(tpl, -10.0, 0.9, np.array([2.0, 1.0]))
    order = np.array([3, 0, 5, 1, 2])  # landmark 4 missing, detections shuffled
    lm, matched = match_to_template(img[order], tpl, radius=2.0)
    assert matched.tolist() == [True, True, True, True, False, True]
    np.testing.assert_allclose(lm[matched], img[matched], atol=1e-5)
    assert np.linalg.norm(lm[4] - img[4]) < 0.5  # filled from the aligned template


def test_noisy_gt_points_mixture():
    rng = np.random.default_rng(0)
    gt = rng.uniform(5, 59, (50, 20, 2))
    vis = np.ones((50, 20))
    vis[:, :4] = 0
    real = noisy_gt_points(gt, vis, 1.0, 0.0, (64, 64), np.random.default_rng(0))
    for g, v, p in zip(gt, vis, real):  # all visible landmarks, exactly
        assert len(p) == 16
        np.testing.assert_allclose(np.sort(p, axis=0), np.sort(g[v > 0].astype(np.float32), axis=0), atol=1e-5)
    half = noisy_gt_points(gt, vis, 0.5, 0.0, (64, 64), np.random.default_rng(0))
    hits = [int((np.linalg.norm(p[:, None] - g[None, v > 0], axis=-1) < 1e-4).any(1).sum())
            for g, v, p in zip(gt, vis, half)]
    assert all(len(p) == 16 for p in half) and min(hits) >= 8 and np.mean(hits) < 8.5
    allp = np.concatenate(half)
    assert allp.min() >= 0 and allp.max() <= 63


def test_tracking_precision_exact_and_permuted():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 60, (30, 5, 2))
    vis = np.ones((30, 5))
    pred = gt[:, [2, 0, 4]].copy()  # 3 discovered landmarks tracking GT 2, 0, 4 exactly
    assert tracking_precision(pred, gt, vis, 1.0) == pytest.approx(1.0)
    pred[:15, 0] += 10.0  # landmark 0 is off by 10 px on half of the images
    assert tracking_precision(pred, gt, vis, 1.0) == pytest.approx((0.5 + 1 + 1) / 3)


def test_synthetic_corners_deterministic_and_inside():
    a = synthetic_corners(6, seed=3, size=32)
    b = synthetic_corners(4, seed=3, size=32)
    np.testing.assert_array_equal(a.images[:4], b.images)
    np.testing.assert_array_equal(a.keypoints[:4], b.keypoints)
    assert a.images.shape == (6, 32, 32, 3) and a.visibility.sum() > 6
    v = a.visibility > 0
    assert (a.keypoints[v] >= 1).all() and (a.keypoints[v] <= 30).all()
    assert (a.keypoints[~v] == 0).all()


def test_synthetic_corners_are_corners():
    """GFTT (a corner detector) fires near the labelled corners far more often than chance."""
    from landmark_study.keypoints import detect, precision_recall

    ds = synthetic_corners(20, seed=0, size=64)
    dets = [detect(ds.images[i], "gftt", max_points=20) for i in range(len(ds))]
    pr = precision_recall(dets, ds.keypoints, ds.visibility, 2.0)
    assert pr["recall"] > 0.4


def test_heatmap_points_maps_to_image_pixels_and_filters_box():
    hm = torch.zeros(1, 1, 16, 16)
    hm[0, 0, 3, 5] = 0.9  # heatmap px (5, 3)
    hm[0, 0, 12, 12] = 0.5
    (p, s), = heatmap_points(hm, (32, 32), threshold=0.1, radius=1)
    np.testing.assert_allclose(p, [[10.5, 6.5], [24.5, 24.5]])  # (x + 0.5) * 2 - 0.5
    np.testing.assert_allclose(s, [0.9, 0.5])
    (p, s), = heatmap_points(hm, (32, 32), threshold=0.1, radius=1, bbox=np.array([[0, 0, 20, 20]]))
    assert p.shape == (1, 2)
    (p, s), = heatmap_points(hm, (32, 32), threshold=0.6, radius=1)
    assert len(p) == 1


def test_padded_box():
    b = padded_box(np.array([10.0, 10.0, 30.0, 20.0]), 0.5, (32, 32))
    np.testing.assert_allclose(b, [0.0, 5.0, 31.0, 25.0])


def _cfg(**opts):
    return RunConfig().with_overrides(**{
        "method": "self_training", "data.name": "faces", "data.size": 32, "data.n_train": 24, "data.n_val": 8,
        "model.name": "hourglass", "model.width": 8, "model.options": {"norm": "gn"}, "train.steps": 4,
        "train.batch_size": 4, "train.eval_every": 4, "train.checkpoint_every": 4, "train.eval_size": 8,
        "method_options": {"threshold": 0.0, **opts}})


def test_options_are_validated():
    with pytest.raises(ConfigError):
        _cfg(init="superpoint")
    with pytest.raises(ConfigError):
        _cfg(stage="clusters")
    with pytest.raises(ConfigError):
        _cfg(round=0)


def test_chain_configs():
    c3 = canonical(_cfg(round=3, distill_from=3, num_landmarks=7))
    assert "num_landmarks" not in c3.method_options  # landmark options do not key detector rounds
    assert "distill_from" not in c3.method_options  # round 3 trains on round 2: no distillation yet
    c4 = canonical(_cfg(round=4, distill_from=3))
    assert c4.method_options["distill_from"] == 3
    p = previous_config(c4)
    assert p.method_options["round"] == 3 and p == c3.with_overrides(method_options={**c3.method_options})
    r1 = previous_config(previous_config(previous_config(c4)))
    assert r1.options().round == 1 and previous_config(r1) is None
    lm = canonical(_cfg(stage="landmarks", round=1, detector_rounds=4, detector_steps=7, distill_from=3))
    prev = previous_config(lm)
    assert prev == c4.with_overrides(**{"train.steps": 7, "train.eval_every": 7, "train.checkpoint_every": 7})
    assert previous_config(canonical(_cfg(stage="landmarks", round=2))).method_options["stage"] == "landmarks"
    mp = magicpoint_config(_cfg(init="magicpoint", magicpoint_steps=9))
    assert mp.method == "magicpoint" and mp.train.steps == 9 and mp.seed == 0


def test_detector_training_step_reduces_the_loss():
    from landmark_study.methods import Batch, get_method
    from landmark_study.methods.self_training import pseudo_spec

    cfg = _cfg().with_overrides(**{"train.augment": {"rotation": 0.0, "scale": [1.0, 1.0], "translation": 0.0,
                                                     "flip": 0.0}, "method_options": {"color_jitter": 0.0}})
    m = get_method("self_training")(cfg, pseudo_spec(3), (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert m.module(torch.zeros(1, 3, 32, 32))["heatmaps"].shape == (1, 1, 16, 16)  # one channel
    torch.manual_seed(0)
    b = Batch(images=torch.rand(4, 3, 32, 32), keypoints=torch.tensor([[[8.0, 8.0], [20.0, 12.0], [0.0, 0.0]]] * 4),
              visibility=torch.tensor([[1.0, 1.0, 0.0]] * 4))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    losses = []
    for step in range(10):
        loss = m.training_step(b, None, step)["det"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_single_channel_target_is_the_max_of_gaussians():
    from landmark_study.methods import get_method
    from landmark_study.methods.self_training import pseudo_spec

    m = get_method("self_training")(_cfg(), pseudo_spec(2), (32, 32), torch.device("cpu"), torch.Generator())
    kp = torch.tensor([[[9.0, 9.0], [21.0, 21.0]]])  # heatmap px (4.25, 4.25) and (10.25, 10.25)
    t, w = m._target(kp, torch.tensor([[1.0, 0.0]]), single=True)
    assert t.shape == (1, 1, 16, 16) and w.tolist() == [[1.0]]
    single, _ = m._target(kp[:, :1], torch.ones(1, 1), single=False)
    torch.testing.assert_close(t, single)  # the invisible point adds nothing
    assert float(t[0, 0, 4, 4]) > 0.9


def test_tiny_chain_uses_no_training_labels(tmp_path):
    """Rounds train through the store; pseudo-labels are cached and are not the ground truth."""
    from landmark_study.runs import ResultsStore, checkpoint_dir, run, run_key
    from landmark_study.methods.self_training import SelfTraining
    from landmark_study.train import load_run_data

    store = ResultsStore(tmp_path / "store")
    c2 = canonical(_cfg(round=2, init="noisy_gt", real_fraction=0.0))
    res = run(c2, store)
    c1 = previous_config(c2)
    assert store.get(run_key(c1)) is not None  # round 1 was trained and stored on the way
    assert (checkpoint_dir() / f"{run_key(c1)}.pseudo.npz").exists()
    f1 = store.get(run_key(c1)).final
    assert f1["pseudo_points"] > 5  # as many points as visible landmarks, all random
    for k in ("precision", "recall", "points_per_image", "pseudo_precision", "pseudo_recall"):
        assert k in res.final
    data = SelfTraining.prepare_data(c1, load_run_data(c1.data), torch.device("cpu"))
    gt = load_run_data(c1.data).labeled
    assert data.labeled.spec.name == "pseudo" and data.unlabeled is None
    assert not np.allclose(data.labeled.keypoints[:, :20], gt.keypoints)
    lm = canonical(_cfg(stage="landmarks", round=1, init="noisy_gt", real_fraction=1.0, noise_px=0.0,
                        detector_rounds=1, detector_steps=4, num_landmarks=4, min_matched=0.0, match_radius=8.0,
                        reg_images=10))
    out = run(lm, store).final
    for k in ("forward_nme", "backward_nme", "detected_fraction", "pseudo_images"):
        assert k in out
