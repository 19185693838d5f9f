"""clustering.py on small cases with known answers."""

import numpy as np
import pytest

from landmark_study import clustering as C
from landmark_study.metrics import nmi


def blobs(n_images=12, k=5, d=8, spread=0.01, seed=0):
    """One point per blob per image; blob centres far apart (distance ~ 10)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    x = np.concatenate([centres + spread * rng.normal(size=(k, d)) for _ in range(n_images)])
    truth = np.tile(np.arange(k), n_images)
    ids = np.repeat(np.arange(n_images), k)
    return x.astype(np.float32), truth, ids, centres


def same_partition(a, b):
    return nmi(a, b) == pytest.approx(1.0)


def test_kmeans_recovers_separated_blobs_exactly():
    x, truth, _, centres = blobs()
    r = C.kmeans(x, 5, seed=0, nredo=3)
    assert same_partition(r.labels, truth)
    # each centroid sits on a blob centre
    d = np.linalg.norm(r.centroids[:, None] - centres[None], axis=-1).min(1)
    assert d.max() < 0.05
    assert r.max_points_per_centroid == int(np.ceil(len(x) / 5))
    np.testing.assert_allclose(r.dist2, ((x - r.centroids[r.labels]) ** 2).sum(1), rtol=1e-4, atol=1e-5)


def test_kmeans_rejects_more_clusters_than_points():
    with pytest.raises(ValueError, match="must be in"):
        C.kmeans(np.zeros((3, 2)), 4)


def test_assign_nearest():
    cent = np.array([[0.0, 0.0], [10.0, 0.0]])
    lab, d2 = C.assign(np.array([[1.0, 0.0], [9.0, 1.0]]), cent)
    assert lab.tolist() == [0, 1]
    np.testing.assert_allclose(d2, [1.0, 2.0])


def test_median_knn_distance_on_a_line():
    x = np.arange(5, dtype=np.float32)[:, None]  # points 0..4
    # k=2: point 0 -> neighbours 1, 2 -> median 1.5; point 2 -> 1, 1 -> 1
    np.testing.assert_allclose(C.median_knn_distance(x, k=2), [1.5, 1.0, 1.0, 1.0, 1.5])


def test_remove_outliers_drops_the_far_points():
    x, _, _, _ = blobs(n_images=20, k=2)
    far = np.array([[500.0] * 8, [-500.0] * 8, [0, 900.0, 0, 0, 0, 0, 0, 0]], np.float32)
    keep = C.remove_outliers(np.concatenate([x, far]), k=5, drop_fraction=3 / 43)
    assert keep.sum() == 40 and not keep[-3:].any()


def test_hungarian_assigns_one_point_per_cluster_per_image():
    cent = np.array([[0.0], [10.0], [20.0]])
    # image 0: two points both nearest to centroid 0, one near 20; image 1: 4 points, 3 clusters
    x = np.array([[0.0], [1.0], [19.0], [0.5], [9.0], [11.0], [20.0]])
    ids = np.array([0, 0, 0, 1, 1, 1, 1])
    lab, d2 = C.hungarian_assign(x, ids, cent)
    assert lab[:3].tolist() == [0, 1, 2]  # the 1.0 point is pushed to cluster 1 (cost 81 < 1+100)
    for img in (0, 1):
        got = lab[(ids == img) & (lab >= 0)]
        assert len(got) == len(set(got.tolist()))
    assert (lab[3:] >= 0).sum() == 3 and lab[3] == 0 and lab[6] == 2
    assert np.isinf(d2[lab == -1]).all()


def test_cluster_thresholds_mean_plus_std():
    thr = C.cluster_thresholds(np.array([1.0, 3.0, 5.0, 0.0]), np.array([0, 0, 1, -1]), 3)
    np.testing.assert_allclose(thr, [2.0 + 1.0, 5.0, np.inf])


def test_keep_closest_per_image_and_cluster():
    labels = np.array([0, 0, 1, 0, 0, -1])
    d2 = np.array([2.0, 1.0, 5.0, 3.0, 3.0, 0.0])
    ids = np.array([0, 0, 0, 1, 1, 1])
    assert C.keep_closest(labels, d2, ids).tolist() == [False, True, True, True, False, False]


def test_neurips_clustering_on_blobs():
    x, truth, ids, _ = blobs(n_images=15, k=4)
    r = C.neurips_clustering(x, ids, 4, seed=0, nredo=5)
    kept = r.train_labels >= 0
    assert kept.mean() > 0.5  # mean + std threshold keeps most points
    assert same_partition(r.train_labels[kept], truth[kept])
    for img in range(15):
        lab = r.train_labels[(ids == img) & kept]
        assert len(lab) == len(set(lab.tolist()))


def test_tpami_clustering_dedupes_and_recovers_landmarks():
    x, truth, ids, _ = blobs(n_images=15, k=4, spread=0.05)
    # a near-duplicate of landmark 0 in 4 of the 15 images (a second detection on the same
    # part): it joins cluster 0 but is further from the centroid than the true point
    rng = np.random.default_rng(1)
    dup = x[truth == 0][:4] + 0.3 + 0.01 * rng.normal(size=(4, x.shape[1])).astype(np.float32)
    xa = np.concatenate([x, dup])
    ida = np.concatenate([ids, np.arange(4)])
    ta = np.concatenate([truth, np.zeros(4, int)])
    r = C.tpami_clustering(xa, ida, 4, 8, seed=0, niter=30, nredo=5)
    land = r.landmark_labels
    assert same_partition(land[land >= 0], ta[land >= 0])
    assert (land[-4:] == -1).all() and (land[:-4] >= 0).all()  # duplicates never the closest
    for img in range(15):
        for lab in (land, r.train_labels):
            got = lab[(ida == img) & (lab >= 0)]
            assert len(got) == len(set(got.tolist()))
    # the M clustering refines the K one: each train cluster lies inside one landmark cluster
    tr = r.train_labels
    both = (tr >= 0) & (land >= 0)
    for c in np.unique(tr[both]):
        assert len(np.unique(land[both & (tr == c)])) == 1


def test_assign_to_landmarks_thresholds():
    cent = np.array([[0.0], [10.0]])
    lab = C.assign_to_landmarks(np.array([[0.5], [30.0]]), np.array([0, 0]), cent, np.array([1.0, 4.0]))
    assert lab.tolist() == [0, -1]


def test_flip_permutation_recovered_from_mirrored_descriptors():
    """Synthetic descriptors: landmark j has a left-right 'handedness' part that a mirror
    swaps; the clusters of mirrored descriptors reveal the known permutation."""
    rng = np.random.default_rng(0)
    true_perm = np.array([1, 0, 2, 4, 3, 5])  # (0,1) and (3,4) are mirror pairs
    k, d, n = 6, 10, 30
    base = rng.normal(size=(k, d)) * 5
    x = np.concatenate([base + 0.05 * rng.normal(size=(k, d)) for _ in range(n)])
    # the mirrored image's descriptor at the mirrored point looks like the partner landmark
    xm = np.concatenate([base[true_perm] + 0.05 * rng.normal(size=(k, d)) for _ in range(n)])
    ids = np.repeat(np.arange(n), k)
    r = C.tpami_clustering(x, ids, k, k, seed=0, nredo=5)
    lab = r.landmark_labels
    mlab, _ = C.assign(xm, r.landmark_centroids)
    perm = C.flip_permutation(lab, mlab, k)
    # express in terms of the ground-truth landmark ids
    truth = np.tile(np.arange(k), n)
    cl_of = {int(truth[i]): int(lab[i]) for i in range(len(lab)) if lab[i] >= 0}
    for j in range(k):
        assert perm[cl_of[j]] == cl_of[int(true_perm[j])]
    assert C.flip_pairs(perm) == tuple(sorted(tuple(sorted((cl_of[a], cl_of[b]))) for a, b in ((0, 1), (3, 4))))


def test_flip_permutation_rejects_one_sided_votes():
    # cluster 0 -> 1 but 1 -> 2: not mutual, both stay fixed; 2 <-> 3 mutual
    labels = np.array([0, 1, 2, 3])
    mirrored = np.array([1, 2, 3, 2])
    assert C.flip_permutation(labels, mirrored, 4).tolist() == [0, 1, 3, 2]
    with pytest.raises(ValueError, match="involution"):
        C.flip_pairs(np.array([1, 2, 0]))


def test_kmeans_plus_plus_picks_distinct_rows_one_per_separated_blob():
    from landmark_study.clustering import kmeans_plus_plus

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], np.float32)
    x = (centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 2))).astype(np.float32)
    c = kmeans_plus_plus(x, 4, seed=3)
    assert all(any(np.array_equal(ci, xi) for xi in x) for ci in c)  # rows of x
    nearest = np.argmin(((c[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert sorted(nearest) == [0, 1, 2, 3]  # far blobs are picked with probability ~1
    assert np.array_equal(c, kmeans_plus_plus(x, 4, seed=3))  # deterministic


def test_nearest_landmark_respects_radius_and_visibility():
    pts = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]])
    gt = np.array([[[0.5, 0.0], [10.0, 1.0]]] * 3)
    vis = np.array([[1, 1], [1, 0], [1, 1]])
    got = C.nearest_landmark(pts, gt, vis, radius=2.0)
    # point 1 is 1 px from landmark 1, but that landmark is not visible: nothing within 2 px
    np.testing.assert_array_equal(got, [0, -1, -1])
    np.testing.assert_array_equal(C.nearest_landmark(pts, gt, vis, radius=np.array([1.0, 20.0, 0.1])), [0, 0, -1])
    with pytest.raises(ValueError, match="gt must be"):
        C.nearest_landmark(pts, gt[:2], vis[:2], 1.0)


def test_cluster_identity_counts_unmatched_points_against_purity():
    labels = np.array([0, 0, 0, 0, 1, 1, -1, 2])
    gt_ids = np.array([3, 3, 5, -1, -1, -1, 3, 4])
    dom, pur = C.cluster_identity(labels, gt_ids, 4)
    np.testing.assert_array_equal(dom, [3, -1, 4, -1])
    np.testing.assert_allclose(pur, [0.5, 0.0, 1.0, 0.0])


def test_flip_permutation_accuracy_known_case_and_identity_floor():
    gt_perm = np.array([1, 0, 2, 4, 3])  # 0<->1, 3<->4, 2 is its own mirror (a nose tip)
    dominant = np.array([0, 1, 2, 3, 4, -1])
    right = np.array([1, 0, 2, 4, 3, 5])
    assert C.flip_permutation_accuracy(right, dominant, gt_perm) == 1.0
    # doing nothing is right only for the self-symmetric landmark (1 of the 5 clusters with a landmark)
    assert C.flip_permutation_accuracy(np.arange(6), dominant, gt_perm) == pytest.approx(0.2)
    half = np.array([1, 0, 2, 3, 4, 5])  # the 3<->4 pair missed
    assert C.flip_permutation_accuracy(half, dominant, gt_perm) == pytest.approx(0.6)
    assert np.isnan(C.flip_permutation_accuracy(np.arange(2), np.array([-1, -1]), gt_perm))
