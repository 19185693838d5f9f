from __future__ import annotations

import numpy as np
import pytest

from landmark_study import metrics as M


# ----------------------------------------------------------------------------
# normalisers
# ----------------------------------------------------------------------------

def test_normalisers_known_values():
    bbox = np.array([[0, 0, 30, 40], [10, 10, 20, 15]], float)
    np.testing.assert_allclose(M.bbox_longest_side(bbox), [40, 10])
    np.testing.assert_allclose(M.bbox_sqrt_area(bbox), [np.sqrt(1200), np.sqrt(50)])
    np.testing.assert_allclose(M.pckh_head_size(bbox), [0.6 * 50, 0.6 * np.hypot(10, 5)])
    gt = np.array([[[0, 0], [3, 4], [9, 9]]], float)
    np.testing.assert_allclose(M.joint_distance(gt, 0, 1), [5.0])
    with pytest.raises(ValueError, match="joint index b"):
        M.joint_distance(gt, 0, 3)
    with pytest.raises(ValueError, match="bbox"):
        M.bbox_longest_side(np.zeros((2, 3)))


# ----------------------------------------------------------------------------
# PCK
# ----------------------------------------------------------------------------

def _pck_case():
    gt = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    # norm 100 -> threshold 10 px at alpha 0.1
    pred[0, 0] = [5, 0]    # correct
    pred[0, 1] = [11, 0]   # wrong
    pred[0, 2] = [0, 10]   # exactly on threshold: correct (<=)
    pred[1, 0] = [20, 0]   # wrong
    pred[1, 1] = [0, 0]    # correct
    pred[1, 2] = [0, 0]    # invisible
    vis = np.array([[1, 1, 1], [1, 1, 0]], float)
    return pred, gt, vis, np.array([100.0, 100.0])


def test_pck_hand_case():
    pred, gt, vis, norm = _pck_case()
    r = M.pck(pred, gt, vis, norm, alpha=0.1)
    np.testing.assert_allclose(r["per_joint"], [0.5, 0.5, 1.0])
    assert r["mean"] == pytest.approx(3 / 5)
    assert r["mean_joints"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(r["count"], [2, 2, 1])
    # per-sample norm matters: sample 1 twice as large -> its joint 0 becomes correct
    r2 = M.pck(pred, gt, vis, np.array([100.0, 200.0]), alpha=0.1)
    np.testing.assert_allclose(r2["per_joint"], [1.0, 0.5, 1.0])


def test_pck_never_visible_joint_is_nan_and_excluded():
    pred, gt, vis, norm = _pck_case()
    vis[:, 2] = 0
    r = M.pck(pred, gt, vis, norm)
    assert np.isnan(r["per_joint"][2])
    assert r["mean"] == pytest.approx(2 / 4)
    assert r["mean_joints"] == pytest.approx(0.5)


def test_pck_errors():
    pred, gt, vis, norm = _pck_case()
    with pytest.raises(ValueError, match="pred"):
        M.pck(pred[:, :2], gt, vis, norm)
    with pytest.raises(ValueError, match="visibility"):
        M.pck(pred, gt, vis[:, :2], norm)
    with pytest.raises(ValueError, match="norm"):
        M.pck(pred, gt, vis, np.array([100.0, 0.0]))
    with pytest.raises(ValueError, match="norm"):
        M.pck(pred, gt, vis, np.array([100.0]))


def test_pck_curve_monotone():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (20, 5, 2))
    pred = gt + rng.normal(0, 5, gt.shape)
    a, v = M.pck_curve(pred, gt, None, np.full(20, 100.0))
    assert np.all(np.diff(v) >= 0) and v[-1] == 1.0


# ----------------------------------------------------------------------------
# NME, CED, AUC
# ----------------------------------------------------------------------------

def test_nme_hand_case():
    gt = np.zeros((2, 2, 2))
    pred = np.array([[[3, 4], [0, 0]], [[6, 8], [0, 10]]], float)
    per, mean = M.nme(pred, gt, np.array([10.0, 5.0]))
    np.testing.assert_allclose(per, [(0.5 + 0) / 2, (2 + 2) / 2])
    assert mean == pytest.approx((0.25 + 2) / 2)
    vis = np.array([[1, 0], [0, 0]])
    per, mean = M.nme(pred, gt, np.array([10.0, 5.0]), vis)
    assert per[0] == pytest.approx(0.5) and np.isnan(per[1]) and mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="norm"):
        M.nme(pred, gt, np.array([-1.0, 5.0]))


def test_ced_auc_failure_known_values():
    e = np.array([0.0, 0.05, 0.2, np.nan])
    t, f = M.ced(e, max_error=0.1, num=11)
    np.testing.assert_allclose(t, np.linspace(0, 0.1, 11))
    np.testing.assert_allclose(f, [0.25] * 5 + [0.5] * 6)
    # exact area: (1 + 0.5 + 0 + 0) / 4
    assert M.auc(e, 0.1) == pytest.approx(0.375)
    assert M.failure_rate(e, 0.1) == pytest.approx(0.5)
    assert M.auc(np.zeros(5), 0.1) == 1.0
    assert M.auc(np.full(3, 0.5), 0.1) == 0.0


def test_auc_matches_trapezoid_of_ced():
    rng = np.random.default_rng(1)
    e = rng.exponential(0.04, 200)
    t, f = M.ced(e, 0.1, num=20001)
    trap = np.sum((f[1:] + f[:-1]) / 2 * np.diff(t)) / 0.1
    assert M.auc(e, 0.1) == pytest.approx(trap, abs=1e-3)


# ----------------------------------------------------------------------------
# ridge regressors
# ----------------------------------------------------------------------------

def test_fit_linear_regressor_exact_and_penalty():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    W = rng.normal(size=(4, 3))
    b = np.array([10.0, -5.0, 2.0])
    Y = X @ W + b
    reg = M.fit_linear_regressor(X, Y, lam=0.0, intercept=True)
    np.testing.assert_allclose(reg.weights, W, atol=1e-9)
    np.testing.assert_allclose(reg.predict(X), Y, atol=1e-9)
    # without intercept the bias cannot be recovered
    reg0 = M.fit_linear_regressor(X, Y, lam=0.0, intercept=False)
    assert np.abs(reg0.predict(X) - Y).max() > 0.1
    # penalty = lam * max diag of the centred Gram matrix; closed form check
    lam = 0.3
    reg = M.fit_linear_regressor(X, Y, lam=lam)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    G = Xc.T @ Xc
    assert reg.penalty == pytest.approx(lam * (np.diag(G).max() + 1e-12))
    np.testing.assert_allclose(reg.weights, np.linalg.inv(G + reg.penalty * np.eye(4)) @ Xc.T @ Yc)
    # shrinkage: norm of weights decreases with lam
    assert np.linalg.norm(reg.weights) < np.linalg.norm(W)


def test_fit_linear_regressor_1d_hand_case():
    # X = [1, 2, 3], Y = 2X, no intercept: G = 14, pen = lam*14, w = 28/(14+14*lam)
    X = np.array([[1.0], [2.0], [3.0]])
    reg = M.fit_linear_regressor(X, 2 * X, lam=1.0, intercept=False)
    assert reg.weights[0, 0] == pytest.approx(28 / 28.0, rel=1e-9)
    with pytest.raises(ValueError, match="finite"):
        M.fit_linear_regressor(np.array([[np.nan]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match="Y"):
        M.fit_linear_regressor(X, np.zeros((2, 1)))


def _affine_landmarks(n, seed, noise=0.0):
    """GT (n, 3, 2) and discovered landmarks that are an exact affine function of them."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(20, 80, (n, 3, 2))
    A = np.array([[0.8, 0.1], [-0.2, 1.1]])
    disc = np.concatenate([gt @ A.T + 5.0, (gt[:, :1] + gt[:, 1:2]) / 2], axis=1)  # (n, 4, 2)
    disc = disc + rng.normal(0, noise, disc.shape)
    return disc, gt


def test_forward_backward_nme_zero_for_affine_relation():
    disc, gt = _affine_landmarks(200, 0)
    norm = np.full(100, 30.0)
    f = M.forward_nme(disc[:100], gt[:100], disc[100:], gt[100:], norm, n_train=50, repeats=3, lam=0.0)
    b = M.backward_nme(disc[:100], gt[:100], disc[100:], gt[100:], norm, n_train=50, repeats=3, lam=0.0)
    assert f["mean"] < 1e-8 and b["mean"] < 1e-8
    assert f["per_repeat"].shape == (3,) and f["per_landmark"].shape == (3,)
    assert b["per_landmark"].shape == (4,)


def test_forward_nme_intercept_matters_and_noise_gives_error():
    disc, gt = _affine_landmarks(200, 1, noise=2.0)
    norm = np.full(100, 30.0)
    with_b = M.forward_nme(disc[:100], gt[:100], disc[100:], gt[100:], norm, n_train=80, repeats=2)
    assert 0.005 < with_b["mean"] < 0.2
    # a large constant offset in GT cannot be fitted without an intercept
    gt_off = gt + 1000.0
    a = M.forward_nme(disc[:100], gt_off[:100], disc[100:], gt_off[100:], norm, n_train=80, repeats=2)
    b = M.forward_nme(disc[:100], gt_off[:100], disc[100:], gt_off[100:], norm, n_train=80, repeats=2,
                      intercept=False)
    assert a["mean"] == pytest.approx(with_b["mean"], rel=1e-6)
    assert b["mean"] > 2 * a["mean"]


def test_forward_nme_per_image_averages_to_the_mean():
    disc, gt = _affine_landmarks(120, 3, noise=2.0)
    r = M.forward_nme(disc[:80], gt[:80], disc[80:], gt[80:], np.full(40, 30.0), n_train=60, repeats=3)
    assert r["per_image"].shape == (40,) and (r["per_image"] > 0).all()
    # every point visible: the mean over images of the per-image NME is the mean over repeats
    assert r["per_image"].mean() == pytest.approx(r["mean"], rel=1e-9)


def test_forward_nme_seeded_and_validates():
    disc, gt = _affine_landmarks(60, 2, noise=1.0)
    args = (disc[:40], gt[:40], disc[40:], gt[40:], np.full(20, 30.0))
    r1 = M.forward_nme(*args, n_train=10, repeats=4, seed=3)
    r2 = M.forward_nme(*args, n_train=10, repeats=4, seed=3)
    np.testing.assert_array_equal(r1["per_repeat"], r2["per_repeat"])
    assert r1["std"] > 0
    with pytest.raises(ValueError, match="n_train"):
        M.forward_nme(*args, n_train=41)
    with pytest.raises(ValueError, match="gt_test"):
        M.forward_nme(disc[:40], gt[:40], disc[40:], gt[40:50], np.full(20, 30.0))


def test_missing_detections_are_filled():
    disc, gt = _affine_landmarks(200, 3)
    disc = disc.copy()
    disc[5, 3] = np.nan       # training miss
    disc[150, 0] = np.nan     # test miss
    norm = np.full(100, 30.0)
    for fill in ("mean", "svt"):
        f = M.forward_nme(disc[:100], gt[:100], disc[100:], gt[100:], norm, n_train=100, repeats=1,
                          lam=1e-6, fill=fill)
        assert np.isfinite(f["mean"]) and f["mean"] < 0.05
    b = M.backward_nme(disc[:100], gt[:100], disc[100:], gt[100:], norm, n_train=100, repeats=1, lam=0.0)
    assert b["mean"] < 1e-6  # nan rows dropped per landmark
    disc[:100, 2] = np.nan     # landmark never detected in training
    b = M.backward_nme(disc[:100], gt[:100], disc[100:], gt[100:], norm, n_train=100, repeats=1, lam=0.0)
    assert np.isnan(b["per_landmark"][2]) and np.isfinite(b["mean"])


def test_svt_fill_recovers_low_rank_matrix():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(60, 2)) @ rng.normal(size=(2, 8))
    mask = rng.random(A.shape) < 0.85
    X = np.where(mask, A, np.nan)
    filled = M.svt_fill(X, tol=1e-4, max_iter=2000)
    np.testing.assert_array_equal(filled[mask], A[mask])
    err_svt = np.abs(filled[~mask] - A[~mask]).mean()
    err_mean = np.abs(np.nanmean(X, 0)[np.nonzero(~mask)[1]] - A[~mask]).mean()
    assert err_svt < 0.5 * err_mean


# ----------------------------------------------------------------------------
# OKS / AP
# ----------------------------------------------------------------------------

def test_oks_analytic_offset():
    k = 3
    sig = np.array([0.025, 0.05, 0.1])
    gt = np.zeros((1, k, 2))
    pred = gt.copy()
    pred[0, :, 0] = 2.0  # offset d = 2 px on every keypoint
    area = np.array([400.0])  # s = 20
    o = M.oks(pred, gt, np.ones((1, k)), area, sig)
    kk = 2 * sig
    expect = np.mean(np.exp(-4.0 / (2 * 400.0 * kk**2)))
    assert o[0] == pytest.approx(expect, rel=1e-9)
    # invisible keypoints are left out; none visible -> nan
    o2 = M.oks(pred, gt, np.array([[1, 0, 0]]), area, sig)
    assert o2[0] == pytest.approx(np.exp(-4.0 / (2 * 400 * kk[0] ** 2)))
    assert np.isnan(M.oks(pred, gt, np.zeros((1, k)), area, sig)[0])
    with pytest.raises(ValueError, match="sigmas"):
        M.oks(pred, gt, np.ones((1, k)), area, sig[:2])


def _ap_case(oks_values):
    """Predictions whose OKS (one keypoint, area 1) equal the given values."""
    o = np.asarray(oks_values, float)
    sig = np.array([0.5])  # k = 1, var = 1: oks = exp(-d^2 / 2)
    d = np.sqrt(-2 * np.log(o))
    gt = np.zeros((len(o), 1, 2))
    pred = gt.copy()
    pred[:, 0, 0] = d
    return pred, gt, np.ones((len(o), 1)), np.ones(len(o)) - np.spacing(1), sig


def test_oks_ap_hand_computed():
    oks_vals = [0.92, 0.62, 0.96, 0.3]  # away from the (fuzzy) float thresholds
    pred, gt, vis, area, sig = _ap_case(oks_vals)
    np.testing.assert_allclose(M.oks(pred, gt, vis, area, sig), oks_vals, rtol=1e-9)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    r = M.oks_ap(pred, scores, gt, vis, area, sig)
    # t=0.50: TP TP TP FP -> precision 1 up to recall 0.75 -> 76/101
    assert r["AP50"] == pytest.approx(76 / 101)
    # t=0.75: TP FP TP FP -> rc .25 .25 .5 .5, pr 1 .5 .667 .5 -> monotone 1 .667 .667 .5
    # recall 0..0.25 (26 values) -> 1, 0.26..0.5 (25 values) -> 2/3
    assert r["AP75"] == pytest.approx((26 + 25 * 2 / 3) / 101)
    # thresholds 0.5..0.6 (3): 76/101; 0.65..0.9 (6): AP75's value; 0.95 (1): only the 0.96 one
    # at t=0.95: FP FP TP FP -> rc 0 0 .25 .25, pr 0 0 1/3 .25 -> monotone 1/3 1/3 1/3 .25
    ap95 = 26 * (1 / 3) / 101
    expect = (3 * 76 / 101 + 6 * r["AP75"] + ap95) / 10
    assert r["per_threshold"][-1] == pytest.approx(ap95)
    assert r["AP"] == pytest.approx(expect)


def test_oks_ap_score_order_matters():
    pred, gt, vis, area, sig = _ap_case([0.6, 0.9])
    # FP first then TP at 0.75: pr monotone 0.5, 0.5; recall up to 0.5 -> 51 * 0.5
    r = M.oks_ap(pred, np.array([0.9, 0.1]), gt, vis, area, sig, thresholds=np.array([0.75]))
    assert r["AP"] == pytest.approx(25.5 / 101)
    r = M.oks_ap(pred, np.array([0.1, 0.9]), gt, vis, area, sig, thresholds=np.array([0.75]))
    assert r["AP"] == pytest.approx(51 / 101)
    assert np.isnan(r["AP50"])


def test_oks_ap_perfect_is_one_and_ignores_images_without_gt():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (6, 17, 2))
    vis = np.ones((6, 17))
    vis[5] = 0
    pred = gt.copy()
    pred[5] += 50  # would be a FP if not ignored
    r = M.oks_ap(pred, rng.random(6), gt, vis, np.full(6, 2000.0), M.COCO_SIGMAS)
    assert r["AP"] == pytest.approx(1.0) and r["AP50"] == 1.0 and r["AP75"] == 1.0


def test_sigma_tables():
    assert M.COCO_SIGMAS.shape == (17,) and M.LSP_SIGMAS.shape == (14,)
    assert len(M.LSP_KEYPOINT_NAMES) == 14
    for i, name in enumerate(M.LSP_KEYPOINT_NAMES[:12]):
        assert M.COCO_KEYPOINT_NAMES[M.LSP_FROM_COCO[i]] == name
    assert M.LSP_SIGMAS[0] == pytest.approx(0.089) and M.LSP_SIGMAS[2] == pytest.approx(0.107)


# ----------------------------------------------------------------------------
# NMI / Hungarian
# ----------------------------------------------------------------------------

def test_nmi():
    assert M.nmi([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(1.0)
    assert M.nmi([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="differ"):
        M.nmi([0, 1], [0, 1, 2])


def test_hungarian_accuracy_recovers_permutation():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (30, 3, 2))
    perm = np.array([2, 0, 3, 1])  # channel m tracks GT perm[m]; channel with value 3 is junk
    pred = np.empty((30, 4, 2))
    for m_, k_ in enumerate(perm):
        pred[:, m_] = rng.uniform(0, 100, (30, 2)) if k_ == 3 else gt[:, k_] + 1.0
    pred[0, 1] = np.nan  # channel 1 (GT 0) missing in image 0 -> a miss
    r = M.hungarian_accuracy(pred, gt, None, threshold_px=2.0)
    np.testing.assert_array_equal(r["assignment"], [1, 3, 0])
    assert r["accuracy"] == pytest.approx((90 - 1) / 90)
    np.testing.assert_allclose(r["per_joint"], [29 / 30, 1, 1])
    r = M.hungarian_accuracy(pred, gt, None, threshold_px=1.0)  # distance sqrt(2) > 1
    assert r["accuracy"] == 0.0
    # fewer channels than GT keypoints: unassigned GT counts as a miss
    r = M.hungarian_accuracy(pred[:, [0, 1]], gt, None, threshold_px=2.0)
    np.testing.assert_array_equal(r["assignment"], [1, -1, 0])
    assert r["accuracy"] == pytest.approx((30 + 29) / 90)
    assert np.isnan(r["per_joint"]).sum() == 0 and r["per_joint"][1] == 0.0
