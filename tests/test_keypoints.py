from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from landmark_study.data.sample import ArrayDataset, DatasetSpec
from landmark_study.keypoints import (
    METHODS,
    anms,
    anms_radii,
    detect,
    detect_dataset,
    nms_heatmap,
    precision_recall,
)


def _square(size: int = 64, lo: int = 20, hi: int = 44) -> np.ndarray:
    """White square on black covering pixels lo..hi-1 (geometric corners at lo-0.5, hi-0.5)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[lo:hi, lo:hi] = 255
    return img


def _texture(seed: int, h: int = 80, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = cv2.resize(rng.random((h // 4, w // 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    g = np.clip(g * 255, 0, 255).astype(np.uint8)
    for _ in range(6):
        x, y = rng.integers(5, w - 20), rng.integers(5, h - 20)
        g[y: y + rng.integers(5, 15), x: x + rng.integers(5, 15)] = rng.integers(0, 255)
    return np.repeat(g[..., None], 3, axis=-1)


# ----------------------------------------------------------------------------
# ANMS


def test_anms_radii_known_values():
    pts = np.array([[0, 0], [1, 0], [3, 0], [7, 0]], float)
    # robustness 1: each point is suppressed by its nearest strictly stronger neighbour
    r = anms_radii(pts, [4, 3, 2, 1], robustness=1.0)
    np.testing.assert_allclose(r, [np.inf, 1, 2, 4])
    # robustness 0.9: 9.5 is not < 0.9 * 10, so point 1 is not suppressed by point 0
    r = anms_radii(pts, [10, 9.5, 5, 1], robustness=0.9)
    np.testing.assert_allclose(r, [np.inf, np.inf, 2, 4])
    # hence ANMS prefers the isolated weak point 3 over the stronger point 2
    np.testing.assert_array_equal(anms(pts, [10, 9.5, 5, 1], 3, robustness=0.9), [0, 1, 3])


def test_anms_radii_match_brute_force_and_chunking():
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 50, (40, 2))
    sc = rng.uniform(0, 1, 40)
    ref = np.full(40, np.inf)
    for i in range(40):
        for j in range(40):
            if sc[i] < 0.9 * sc[j]:
                ref[i] = min(ref[i], np.hypot(*(pts[i] - pts[j])))
    np.testing.assert_allclose(anms_radii(pts, sc), ref)
    np.testing.assert_allclose(anms_radii(pts, sc, chunk=7), ref)


def test_anms_keeps_strongest_first():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        pts, sc = rng.uniform(0, 100, (60, 2)), rng.uniform(0, 1, 60)
        keep = anms(pts, sc, 10)
        assert keep[0] == np.argmax(sc)
        assert len(keep) == len(set(keep.tolist())) == 10


def test_anms_spreads_points():
    rng = np.random.default_rng(0)
    cluster = np.array([10.0, 10.0]) + rng.uniform(-2, 2, (10, 2))
    spread = np.array([[60, 10], [10, 60], [60, 60], [35, 35], [90, 90]], float)
    pts = np.concatenate([cluster, spread])
    sc = np.concatenate([0.8 ** np.arange(10), np.linspace(0.1, 0.05, 5)])
    k = 5

    def min_gap(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        return d[np.triu_indices(len(p), 1)].min()

    keep = anms(pts, sc, k)
    topk = np.argsort(-sc)[:k]
    assert set(topk) <= set(range(10))  # the score budget all goes to the cluster
    assert 0 in keep
    assert min_gap(pts[keep]) > 20 > 4 > min_gap(pts[topk])


def test_anms_edge_cases_and_errors():
    pts, sc = np.array([[0.0, 0.0], [5.0, 0.0]]), np.array([1.0, 2.0])
    np.testing.assert_array_equal(anms(pts, sc, 10), [1, 0])
    assert anms(pts, sc, 0).shape == (0,)
    assert anms(np.zeros((0, 2)), np.zeros(0), 3).shape == (0,)
    with pytest.raises(ValueError, match="non-negative"):
        anms(pts, [-1.0, 2.0], 1)
    with pytest.raises(ValueError, match="robustness"):
        anms(pts, sc, 1, robustness=1.5)
    with pytest.raises(ValueError, match=r"scores must be \(2,\)"):
        anms(pts, [1.0], 1)


# ----------------------------------------------------------------------------
# detectors


def test_unknown_method_and_bad_inputs():
    img = _square()
    with pytest.raises(ValueError, match="known: sift, orb, gftt"):
        detect(img, "superpoint")
    with pytest.raises(ValueError, match="uint8"):
        detect(img.astype(np.float32), "gftt")
    with pytest.raises(ValueError, match="unknown gftt parameter 'nfeatures'"):
        detect(img, "gftt", detector_kw={"nfeatures": 3})
    with pytest.raises(ValueError, match="bbox"):
        detect(img, "gftt", bbox=(10, 10, 5, 20))


def test_gftt_finds_square_corners():
    pts, sc = detect(_square(), "gftt", max_points=4)
    assert pts.shape == (4, 2) and pts.dtype == np.float32 and sc.dtype == np.float32
    corners = np.array([[19.5, 19.5], [43.5, 19.5], [19.5, 43.5], [43.5, 43.5]])
    d = np.linalg.norm(corners[:, None] - pts[None], axis=-1)
    assert (d.min(axis=1) <= 1.0).all()  # GFTT marks the corner pixel itself (0.71 px away)


def test_orb_finds_square_corners():
    # FAST's segment test fires on pixels just inside a corner, at several pyramid
    # levels; each corner pixel (x0, y0) has a detection within 1.5 px (the geometric
    # corner x0 - 0.5 is ~1.6 px away from the nearest one).
    pts, _ = detect(_square(), "orb", max_points=None)
    corner_pixels = np.array([[20, 20], [43, 20], [20, 43], [43, 43]], float)
    d = np.linalg.norm(corner_pixels[:, None] - pts[None], axis=-1)
    assert (d.min(axis=1) <= 1.5).all()
    assert len(pts) > 4  # several scales


def test_sift_finds_disc_centre():
    img = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(img, (33, 29), 6, (255, 255, 255), -1)  # symmetric about pixel (33, 29)
    pts, sc = detect(img, "sift", max_points=5)
    assert len(pts) >= 1
    assert np.linalg.norm(pts[np.argmax(sc)] - [33, 29]) < 0.1


@pytest.mark.parametrize("method", METHODS)
def test_flip_equivariance_checks_pixel_centre_convention(method):
    """With pixel centres at integers a horizontal flip maps x to W - 1 - x."""
    img = _texture(0)
    w = img.shape[1]
    a, _ = detect(img, method, max_points=None)
    b, _ = detect(img[:, ::-1].copy(), method, max_points=None)
    a_m = a.copy()
    a_m[:, 0] = w - 1 - a_m[:, 0]
    d = np.linalg.norm(a_m[:, None] - b[None], axis=-1)
    nearest = d.min(axis=1)
    matched = nearest < 1.0
    assert matched.mean() > 0.8
    if method == "sift":  # sub-pixel refinement differs slightly after flipping
        assert np.median(nearest[matched]) < 0.02
    else:  # GFTT and ORB (after the pyramid correction) map exactly
        assert np.median(nearest[matched]) < 1e-3
        assert matched.mean() > 0.95


def test_bbox_filter_drops_outside_points():
    img = _square()
    all_pts, _ = detect(img, "gftt", max_points=10)
    assert len(all_pts) == 4
    box = (10.0, 10.0, 30.0, 30.0)
    for method in METHODS:
        pts, _ = detect(img, method, max_points=30, bbox=box)
        inside = (pts[:, 0] >= 10) & (pts[:, 0] <= 30) & (pts[:, 1] >= 10) & (pts[:, 1] <= 30)
        assert inside.all(), method
    pts, _ = detect(img, "gftt", max_points=10, bbox=box)
    np.testing.assert_array_equal(pts, [[20, 20]])
    # the box is inclusive and exact: the corner pixel (20, 20) is in at x1 = 20, out at 19.9
    np.testing.assert_array_equal(detect(img, "gftt", bbox=(10, 10, 20, 30))[0], [[20, 20]])
    assert detect(img, "gftt", bbox=(10, 10, 19.9, 30))[0].shape == (0, 2)


def test_max_points_min_distance_and_determinism():
    img = _texture(1)
    for method in METHODS:
        p1, s1 = detect(img, method, max_points=20)
        p2, s2 = detect(img, method, max_points=20)
        assert p1.shape == (20, 2)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)
        # without ANMS: the 20 highest scores, in decreasing order
        q, t = detect(img, method, max_points=20, anms=False)
        allp, alls = detect(img, method, max_points=None)
        assert np.all(np.diff(t) <= 0)
        np.testing.assert_allclose(t, alls[:20])
        assert s1[0] == alls[0]  # ANMS keeps the strongest point
        # no two candidates closer than min_distance
        for md in (1.0, 3.0):
            p, _ = detect(img, method, max_points=None, min_distance=md)
            d = np.linalg.norm(p[:, None] - p[None], axis=-1)
            assert d[np.triu_indices(len(p), 1)].min() > md


@pytest.mark.parametrize("method", METHODS)
def test_anms_spreads_detections_beyond_a_strong_cluster(method):
    """A high-contrast checkerboard (many strong points) plus four faint squares elsewhere."""
    rng = np.random.default_rng(0)
    img = np.zeros((96, 96, 3), np.uint8)
    for i in range(6):
        for j in range(6):
            if (i + j) % 2:
                img[4 + 4 * i: 8 + 4 * i, 4 + 4 * j: 8 + 4 * j] = rng.integers(180, 256)
    for x, y in [(60, 10), (20, 60), (70, 70), (50, 40)]:
        img[y: y + 8, x: x + 8] = 70
    outside = lambda p: int(((p[:, 0] > 30) | (p[:, 1] > 30)).sum())  # noqa: E731
    top, _ = detect(img, method, max_points=8, anms=False)
    spread, _ = detect(img, method, max_points=8, anms=True)
    assert outside(top) == 0
    assert outside(spread) >= 3


def test_detect_dataset_matches_detect():
    spec = DatasetSpec(name="toy", keypoint_names=("a",))
    images = np.stack([_square(), _texture(2, 64, 64), _texture(3, 64, 64)])
    bbox = np.array([[10, 10, 30, 30], [0, 0, 63, 63], [20, 20, 50, 40]], np.float32)
    ds = ArrayDataset(spec, images, np.zeros((3, 1, 2), np.float32), np.ones((3, 1), np.float32), bbox)
    out = detect_dataset(ds, "gftt", max_points=8, use_bbox=True, progress=False)
    assert len(out) == 3
    for i, (p, s) in enumerate(out):
        ref_p, ref_s = detect(images[i], "gftt", max_points=8, bbox=bbox[i])
        np.testing.assert_array_equal(p, ref_p)
        np.testing.assert_array_equal(s, ref_s)
    with pytest.raises(ValueError, match="known"):
        detect_dataset(ds, "harris")


# ----------------------------------------------------------------------------
# heatmap NMS


def _two_gaussians(h=48, w=64, peaks=((10, 12, 1.0), (40, 30, 0.6)), sigma=2.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return sum(a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y, a in peaks).astype(np.float32)


def test_nms_heatmap_two_peaks_threshold_radius():
    hm = _two_gaussians()
    pts, sc = nms_heatmap(hm, threshold=0.1, radius=3)
    np.testing.assert_array_equal(pts, [[10, 12], [40, 30]])
    np.testing.assert_allclose(sc, [1.0, 0.6], atol=1e-6)
    pts, _ = nms_heatmap(hm, threshold=0.7, radius=3)
    np.testing.assert_array_equal(pts, [[10, 12]])
    assert len(nms_heatmap(hm, threshold=1.0, radius=3)[0]) == 0  # strict: H > t (Eq. 4.1)
    # two close peaks: separated with a small radius, merged with a large one
    close = _two_gaussians(peaks=((20, 20, 1.0), (25, 20, 0.9)), sigma=1.0)
    assert len(nms_heatmap(close, threshold=0.1, radius=2)[0]) == 2
    np.testing.assert_array_equal(nms_heatmap(close, threshold=0.1, radius=5)[0], [[20, 20]])
    assert len(nms_heatmap(close, threshold=0.1, radius=2, max_points=1)[0]) == 1


def test_nms_heatmap_batched_and_ties():
    hm = torch.from_numpy(np.stack([_two_gaussians(), np.zeros((48, 64), np.float32)]))[:, None]
    out = nms_heatmap(hm, threshold=0.1, radius=3)
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_array_equal(out[0][0], [[10, 12], [40, 30]])
    assert out[1][0].shape == (0, 2) and out[1][1].shape == (0,)
    plateau = np.zeros((10, 10), np.float32)
    plateau[4, 4:6] = 1.0  # two equal neighbours: the first in row-major order wins
    np.testing.assert_array_equal(nms_heatmap(plateau, 0.5, 1)[0], [[4, 4]])
    assert len(nms_heatmap(plateau, 0.5, 0)[0]) == 2
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        nms_heatmap(np.zeros((2, 3, 8, 8)), 0.1, 1)


# ----------------------------------------------------------------------------
# precision / recall


def test_precision_recall_hand_made():
    gt = np.array([[[10, 10], [20, 10], [30, 10]]] * 2, float)
    vis = np.array([[1, 1, 0], [1, 1, 1]], float)
    dets = [
        np.array([[11, 10], [30, 10], [50, 50]]),  # hit lm0; lm2 is invisible -> miss; far -> miss
        (np.array([[20, 12], [21, 10]]), np.array([1.0, 0.5])),  # both hit lm1 (2 px: inclusive)
    ]
    r = precision_recall(dets, gt, vis, radius_px=2.0)
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(2 / 5)
    np.testing.assert_allclose(r["per_landmark_recall"], [0.5, 0.5, 0.0])
    assert r["n_detections"] == 5 and r["n_visible"] == 5
    r = precision_recall(dets, gt, vis, radius_px=1.5)  # (20, 12) no longer counts
    assert r["precision"] == pytest.approx(2 / 5)
    # no detections at all, a never-visible landmark
    r = precision_recall([np.zeros((0, 2)), np.zeros((0, 2))], gt, np.array([[1, 1, 0], [1, 0, 0]]), 2.0)
    assert np.isnan(r["precision"]) and r["recall"] == 0.0
    assert np.isnan(r["per_landmark_recall"][2])
    with pytest.raises(ValueError, match="2 images"):
        precision_recall(dets[:1], gt, vis, 2.0)
