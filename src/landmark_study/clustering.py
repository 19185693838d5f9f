"""Correspondence by clustering (Mallis et al., NeurIPS 2020 and TPAMI).

Pure numpy functions on descriptor arrays; faiss does the K-means and the
nearest-neighbour searches on the CPU (or the GPU when ``faiss`` has one).

* :func:`kmeans` -- faiss K-means with an *explicit* ``max_points_per_centroid``.
  faiss silently trains on a random subsample of ``256 * k`` points unless told
  otherwise; here the default is ``ceil(n / k)``, i.e. every point is used, and
  a caller that wants faiss's subsampling passes 256.
* :func:`remove_outliers` -- score each descriptor by the median distance to its
  ``k`` nearest neighbours and drop the highest ``drop_fraction`` (the papers: 100
  neighbours, 40% dropped, before the first clustering).
* :func:`neurips_clustering` -- K-means to ``M``, then per image a Hungarian
  assignment points <-> centroids (at most one point per cluster and image), then
  a per-cluster threshold: a point is kept if its squared distance is at most the
  mean + std of its cluster (computed over *all* assigned points, not one chunk
  as the authors' code does).
* :func:`tpami_clustering` -- the "modified K-means": cluster to ``K``, keep per
  image and cluster only the point closest to the centroid, re-cluster the kept
  points to ``M >> K`` and dedupe again.
* :func:`flip_permutation` -- flip correspondence from the co-occurrence of the
  cluster of a point and the cluster of the descriptor of the mirrored image at
  the mirrored position.

Labels are ``int64`` arrays with ``-1`` for "dropped".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "KMeansResult", "ClusterResult", "kmeans", "kmeans_plus_plus", "assign", "median_knn_distance", "remove_outliers",
    "hungarian_assign", "cluster_thresholds", "keep_closest", "neurips_clustering", "tpami_clustering",
    "assign_to_landmarks", "cooccurrence", "flip_permutation", "flip_pairs",
]


def _f32(x: np.ndarray, name: str = "x") -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError(f"{name} must be (N, d), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _ids(image_ids: np.ndarray, n: int) -> np.ndarray:
    ids = np.asarray(image_ids, dtype=np.int64).ravel()
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},), got {ids.shape}")
    return ids


@dataclass(frozen=True)
class KMeansResult:
    centroids: np.ndarray  # (k, d) float32
    labels: np.ndarray  # (N,) int64, nearest centroid
    dist2: np.ndarray  # (N,) float32 squared distance to it
    max_points_per_centroid: int  # the value faiss was given


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``k`` rows of ``x``, each drawn with
    probability proportional to the squared distance to the nearest one already chosen."""
    a = _f32(x)
    rng = np.random.default_rng(seed)
    n = len(a)
    # ||a - c||^2 = ||a||^2 - 2 a.c + ||c||^2: one matrix-vector product per pick, no (N, d)
    # temporaries (the direct form allocated 2 GB per pick at 1M x 256 descriptors)
    sq = np.einsum("ij,ij->i", a, a, dtype=np.float64)

    def dist2_to(j: int) -> np.ndarray:
        return np.maximum(sq - 2.0 * (a @ a[j]).astype(np.float64) + sq[j], 0.0)

    idx = [int(rng.integers(n))]
    d2 = dist2_to(idx[0])
    d2[idx[0]] = 0.0
    for _ in range(1, int(k)):
        tot = d2.sum()
        j = int(rng.choice(n, p=d2 / tot)) if tot > 0 else int(rng.integers(n))
        idx.append(j)
        d2 = np.minimum(d2, dist2_to(j))
        d2[j] = 0.0
    return a[idx].copy()


def kmeans(x: np.ndarray, k: int, *, niter: int = 25, seed: int = 0, nredo: int = 1,
           max_points_per_centroid: int | None = None, init: str = "kmeans++",
           gpu: bool = False) -> KMeansResult:
    """Lloyd K-means of ``x`` (N, d) into ``k`` clusters with faiss.

    ``init='kmeans++'`` (default) seeds faiss with :func:`kmeans_plus_plus` (one run per
    ``nredo``, seeds ``seed + r``; the lowest objective wins); ``'random'`` is faiss's own
    random sampling of ``k`` training points, which often merges well-separated groups.

    ``max_points_per_centroid`` caps the training sample at ``k * value`` points
    (faiss's default is 256, a silent subsample of large sets); ``None`` sets it
    to ``ceil(N / k)`` so that every point is used. Labels and distances are for
    *all* points (nearest trained centroid).
    """
    import faiss

    a = _f32(x)
    n, d = a.shape
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in 1..{n} (the number of points)")
    mppc = int(math.ceil(n / k)) if max_points_per_centroid is None else int(max_points_per_centroid)
    if mppc < 1:
        raise ValueError(f"max_points_per_centroid must be >= 1, got {max_points_per_centroid!r}")
    if init not in ("kmeans++", "random"):
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")
    use_gpu = bool(gpu) and faiss.get_num_gpus() > 0
    best, best_obj = None, np.inf
    for r in range(int(nredo) if init == "kmeans++" else 1):
        km = faiss.Kmeans(d, k, niter=int(niter), nredo=1 if init == "kmeans++" else int(nredo),
                          seed=(int(seed) + r) % (2**31 - 1), max_points_per_centroid=mppc,
                          min_points_per_centroid=1, verbose=False, gpu=use_gpu)
        if init == "kmeans++":
            sample = a
            if n > k * mppc:  # the points faiss will train on
                sample = a[np.random.default_rng(seed + r).choice(n, k * mppc, replace=False)]
            km.train(a, init_centroids=kmeans_plus_plus(sample, k, seed + r))
        else:
            km.train(a)
        obj = km.iteration_stats[-1]["obj"] if km.iteration_stats else 0.0
        if best is None or obj < best_obj:
            best, best_obj = km, obj
    cent = np.ascontiguousarray(best.centroids, dtype=np.float32)
    labels, dist2 = assign(a, cent)
    return KMeansResult(cent, labels, dist2, mppc)


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row of ``x``: ``(labels (N,) int64, squared distances (N,))``."""
    import faiss

    a, c = _f32(x), _f32(centroids, "centroids")
    if a.shape[1] != c.shape[1]:
        raise ValueError(f"x has {a.shape[1]} dims but centroids {c.shape[1]}")
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c)
    d2, idx = index.search(a, 1)
    return idx[:, 0].astype(np.int64), np.maximum(d2[:, 0], 0).astype(np.float32)


def median_knn_distance(x: np.ndarray, k: int = 100) -> np.ndarray:
    """Median Euclidean distance of each point to its ``k`` nearest *other* points (N,)."""
    import faiss

    a = _f32(x)
    n = len(a)
    if n < 2:
        raise ValueError("need at least 2 points")
    k = int(min(k, n - 1))
    index = faiss.IndexFlatL2(a.shape[1])
    index.add(a)
    d2, idx = index.search(a, k + 1)
    # drop each point itself (the exact self-match; duplicates keep distance 0)
    self_hit = idx == np.arange(n)[:, None]
    first = np.where(self_hit.any(1), self_hit.argmax(1), k)
    keep = np.ones_like(d2, dtype=bool)
    keep[np.arange(n), first] = False
    d = np.sqrt(np.maximum(d2, 0)).reshape(n, k + 1)
    d = d[keep].reshape(n, k)
    return np.median(d, axis=1)


def remove_outliers(x: np.ndarray, k: int = 100, drop_fraction: float = 0.4) -> np.ndarray:
    """Boolean mask (N,) keeping all but the ``drop_fraction`` of points with the largest
    median distance to their ``k`` nearest neighbours (ties broken by index)."""
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction!r}")
    score = median_knn_distance(x, k)
    n = len(score)
    n_drop = int(math.floor(drop_fraction * n))
    keep = np.ones(n, bool)
    if n_drop:
        order = np.lexsort((np.arange(n), -score))
        keep[order[:n_drop]] = False
    return keep


def hungarian_assign(x: np.ndarray, image_ids: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, a one-to-one assignment of its points to centroids minimising the sum
    of squared distances (:func:`scipy.optimize.linear_sum_assignment`).

    Each cluster receives at most one point per image; when an image has more
    points than clusters the surplus points get label -1. Returns
    ``(labels (N,) int64, squared distance to the assigned centroid (N,), inf if -1)``.
    """
    a, c = _f32(x), _f32(centroids, "centroids")
    ids = _ids(image_ids, len(a))
    labels = np.full(len(a), -1, np.int64)
    dist2 = np.full(len(a), np.inf, np.float32)
    c2 = (c ** 2).sum(1)
    for img in np.unique(ids):
        rows = np.flatnonzero(ids == img)
        cost = (a[rows] ** 2).sum(1)[:, None] + c2[None, :] - 2.0 * a[rows] @ c.T
        cost = np.maximum(cost, 0)
        r, col = linear_sum_assignment(cost)
        labels[rows[r]] = col
        dist2[rows[r]] = cost[r, col]
    return labels, dist2


def cluster_thresholds(dist2: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per cluster ``mean + std`` of the squared distances of its points (inf for an empty cluster)."""
    labels = np.asarray(labels, np.int64)
    d = np.asarray(dist2, np.float64)
    thr = np.full(int(n_clusters), np.inf)
    ok = labels >= 0
    for c in np.unique(labels[ok]):
        v = d[labels == c]
        thr[c] = v.mean() + v.std()
    return thr


def keep_closest(labels: np.ndarray, dist2: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Mask keeping, per (image, cluster), only the point closest to its centroid
    (ties: the first). Points with label -1 are not kept."""
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    ids = _ids(image_ids, n)
    d = np.asarray(dist2, np.float64)
    order = np.lexsort((np.arange(n), d, labels, ids))  # by image, cluster, distance, index
    keep = np.zeros(n, bool)
    prev = (None, None)
    for i in order:
        key = (ids[i], labels[i])
        if labels[i] >= 0 and key != prev:
            keep[i] = True
        prev = key
    return keep


@dataclass(frozen=True)
class ClusterResult:
    """Output of a clustering step.

    ``landmark_*``: the ``L`` clusters that become discovered landmarks (stage-1
    evaluation, stage-2 channels): TPAMI ``L = K`` (first pass), NeurIPS ``L = M``.
    ``train_*``: the ``M`` clusters whose labels define positive pairs in the next round.
    Labels are -1 for dropped points; thresholds are squared distances (mean + std).
    """

    landmark_labels: np.ndarray
    landmark_centroids: np.ndarray
    landmark_thresholds: np.ndarray
    train_labels: np.ndarray
    train_centroids: np.ndarray
    kept_by_outlier_filter: np.ndarray


def neurips_clustering(x: np.ndarray, image_ids: np.ndarray, m: int, *, seed: int = 0, niter: int = 25,
                       max_points_per_centroid: int | None = None, outlier_mask: np.ndarray | None = None,
                       nredo: int = 1) -> ClusterResult:
    """UL (NeurIPS 2020): K-means to ``m``, Hungarian per image, per-cluster threshold.

    ``outlier_mask`` (from :func:`remove_outliers`) leaves points out; ``nredo``
    restarts of K-means keep the best objective (faiss's random initialisation can
    merge two separated blobs)."""
    a = _f32(x)
    ids = _ids(image_ids, len(a))
    keep = np.ones(len(a), bool) if outlier_mask is None else np.asarray(outlier_mask, bool)
    km = kmeans(a[keep], m, niter=niter, seed=seed, nredo=nredo, max_points_per_centroid=max_points_per_centroid)
    lab_k, d2_k = hungarian_assign(a[keep], ids[keep], km.centroids)
    thr = cluster_thresholds(d2_k, lab_k, m)
    ok = (lab_k >= 0) & (d2_k <= thr[np.maximum(lab_k, 0)])
    labels = np.full(len(a), -1, np.int64)
    labels[np.flatnonzero(keep)[ok]] = lab_k[ok]
    return ClusterResult(labels, km.centroids, thr, labels.copy(), km.centroids, keep)


def tpami_clustering(x: np.ndarray, image_ids: np.ndarray, k: int, m: int, *, seed: int = 0, niter: int = 25,
                     max_points_per_centroid: int | None = None, outlier_mask: np.ndarray | None = None,
                     nredo: int = 1) -> ClusterResult:
    """K2L (TPAMI) modified K-means: K-means to ``k``, keep the closest point per image and
    cluster, K-means of the kept points to ``m``, keep the closest point per image and cluster."""
    a = _f32(x)
    ids = _ids(image_ids, len(a))
    keep = np.ones(len(a), bool) if outlier_mask is None else np.asarray(outlier_mask, bool)
    pos = np.flatnonzero(keep)
    km1 = kmeans(a[pos], k, niter=niter, seed=seed, nredo=nredo, max_points_per_centroid=max_points_per_centroid)
    first = keep_closest(km1.labels, km1.dist2, ids[pos])
    land = np.full(len(a), -1, np.int64)
    land[pos[first]] = km1.labels[first]
    thr = cluster_thresholds(km1.dist2[first], km1.labels[first], k)
    kept = pos[first]
    m_eff = min(int(m), len(kept))
    km2 = kmeans(a[kept], m_eff, niter=niter, seed=seed + 1, nredo=nredo,
                 max_points_per_centroid=max_points_per_centroid)
    second = keep_closest(km2.labels, km2.dist2, ids[kept])
    train = np.full(len(a), -1, np.int64)
    train[kept[second]] = km2.labels[second]
    land[kept[~second]] = -1  # dropped by the second dedupe: out of both label sets
    return ClusterResult(land, km1.centroids, thr, train, km2.centroids, keep)


def assign_to_landmarks(x: np.ndarray, image_ids: np.ndarray, centroids: np.ndarray,
                        thresholds: np.ndarray | None = None) -> np.ndarray:
    """Labels of new points (e.g. test images) for known landmark clusters: Hungarian per
    image, then -1 where the squared distance exceeds the cluster's threshold."""
    labels, d2 = hungarian_assign(x, image_ids, centroids)
    if thresholds is not None:
        thr = np.asarray(thresholds, np.float64)
        bad = (labels >= 0) & (d2 > thr[np.maximum(labels, 0)])
        labels[bad] = -1
    return labels


def cooccurrence(labels: np.ndarray, mirrored_labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """``C[a, b]`` = number of points in cluster ``a`` whose mirrored descriptor is in cluster ``b``."""
    la = np.asarray(labels, np.int64).ravel()
    lb = np.asarray(mirrored_labels, np.int64).ravel()
    if la.shape != lb.shape:
        raise ValueError(f"labels and mirrored_labels differ in size: {la.size} vs {lb.size}")
    ok = (la >= 0) & (lb >= 0)
    c = np.zeros((int(n_clusters), int(n_clusters)), np.int64)
    np.add.at(c, (la[ok], lb[ok]), 1)
    return c


def flip_permutation(labels: np.ndarray, mirrored_labels: np.ndarray, n_clusters: int,
                     symmetric: bool = True) -> np.ndarray:
    """Flip correspondence: ``perm[a] = argmax_b C[a, b]`` of :func:`cooccurrence`.

    With ``symmetric`` (default) a pair is accepted only when both directions agree
    (``perm[perm[a]] == a``), every other cluster maps to itself, so the result is
    an involution usable as a keypoint flip permutation. Clusters never seen map
    to themselves.
    """
    c = cooccurrence(labels, mirrored_labels, n_clusters)
    perm = np.where(c.sum(1) > 0, c.argmax(1), np.arange(n_clusters))
    if symmetric:
        ok = perm[perm] == np.arange(n_clusters)
        perm = np.where(ok, perm, np.arange(n_clusters))
    return perm.astype(np.int64)


def nearest_landmark(points: np.ndarray, gt: np.ndarray, visible: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Index of the nearest visible ground-truth landmark of each point, -1 when none lies
    within ``radius`` (px; a scalar or one value per point). ``points`` (P, 2), ``gt``
    (P, K, 2) and ``visible`` (P, K) are the ground truth of each point's own image."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    g = np.asarray(gt, np.float64)
    if g.ndim != 3 or g.shape[0] != len(pts) or g.shape[2] != 2:
        raise ValueError(f"gt must be (P, K, 2) with P = {len(pts)} points, got shape {g.shape}")
    d = np.linalg.norm(g - pts[:, None, :], axis=-1)
    d = np.where(np.asarray(visible, bool), d, np.inf)
    if d.shape[1] == 0:
        return np.full(len(pts), -1, np.int64)
    idx = d.argmin(1)
    r = np.broadcast_to(np.asarray(radius, np.float64), (len(pts),))
    return np.where(d[np.arange(len(pts)), idx] <= r, idx, -1).astype(np.int64)


def cluster_identity(labels: np.ndarray, gt_ids: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The ground-truth landmark each cluster stands for, and how purely.

    ``labels`` are cluster labels (-1 = none) and ``gt_ids`` the ground-truth landmark of
    each point (-1 = near none, see :func:`nearest_landmark`). Returns ``dominant`` (the
    most frequent ground-truth landmark among a cluster's points, -1 if none of them is
    near one) and ``purity`` (the share of *all* the cluster's points that carry it; 0 for
    empty clusters)."""
    la = np.asarray(labels, np.int64).ravel()
    gi = np.asarray(gt_ids, np.int64).ravel()
    if la.shape != gi.shape:
        raise ValueError(f"labels and gt_ids differ in size: {la.size} vs {gi.size}")
    dominant = np.full(int(n_clusters), -1, np.int64)
    purity = np.zeros(int(n_clusters))
    for c in range(int(n_clusters)):
        member = la == c
        g = gi[member & (gi >= 0)]
        if len(g):
            counts = np.bincount(g)
            dominant[c] = int(counts.argmax())
            purity[c] = counts.max() / member.sum()
    return dominant, purity


def flip_permutation_accuracy(perm: np.ndarray, dominant: np.ndarray, gt_perm: np.ndarray) -> float:
    """Share of clusters ``a`` whose flip partner ``perm[a]`` stands for the mirror of
    ``a``'s landmark: ``dominant[perm[a]] == gt_perm[dominant[a]]``, over the clusters
    where both stand for a landmark (nan if none). ``perm = arange`` scores the share of
    clusters whose landmark is its own mirror (e.g. the nose tip): the floor to beat."""
    perm = np.asarray(perm, np.int64)
    dom = np.asarray(dominant, np.int64)
    gp = np.asarray(gt_perm, np.int64)
    if perm.shape != dom.shape:
        raise ValueError(f"perm and dominant differ in size: {perm.size} vs {dom.size}")
    ok = (dom >= 0) & (dom[perm] >= 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(dom[perm][ok] == gp[dom[ok]]))


def flip_pairs(perm: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The pairs ``(a, b)``, ``a < b``, of an involution ``perm`` (fixed points left out)."""
    perm = np.asarray(perm, np.int64)
    if not np.array_equal(perm[perm], np.arange(len(perm))):
        raise ValueError("perm is not an involution (perm[perm] != identity)")
    return tuple((int(a), int(b)) for a, b in enumerate(perm) if a < b)
