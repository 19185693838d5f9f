"""Generic keypoint detectors, ANMS and heatmap NMS (Mallis et al., chapters 4-5).

Mallis et al. bootstrap landmark discovery with *generic* keypoints (SuperPoint in
the papers): a noisy mixture of object landmarks, background corners and
non-corresponding points on the object. This module provides classical stand-ins
(OpenCV SIFT, ORB and Shi-Tomasi "good features to track"), the adaptive
non-maximal suppression of Brown et al. (2005) that spreads a fixed budget of points
over the image, the thresholding + max-pool NMS that turns a learned detector's
heatmap into points (Mallis Eq. 4.1, after DeTone et al.), and the precision/recall
of detections against ground-truth landmarks (Mallis Fig. 4.3: a detection is a true
positive within ``d`` px of a ground-truth landmark).

Coordinates follow the package convention (pixel centres at integers). OpenCV's
raw keypoint positions were checked against it with a flip test (detect on ``I`` and
on ``I[:, ::-1]``; a centre-convention position satisfies ``x + x' = W - 1``):

* GFTT returns integer pixel indices: already centre-convention.
* ORB reports ``i * s`` for pixel ``i`` of pyramid level ``l`` (``s = scaleFactor**l``),
  but its pyramid is built with half-pixel-centre resizes, so the true position is
  ``(i + 0.5) * W / W_l - 0.5`` with ``W_l = round(W / s)``; :func:`detect` applies
  this per axis (without it points at level ``l`` sit up to ``0.5 (s - 1)`` px off).
* SIFT (OpenCV's default ``enable_precise_upscale=False``) is biased by +0.25 px on
  both axes: its first octave is a half-pixel-centre 2x upsample, which puts original
  pixel ``x`` at ``2x + 0.5``, but positions are read back as ``x_up / 2``;
  :func:`detect` subtracts 0.25. (``enable_precise_upscale=True`` removes the bias
  too and localises Gaussian blobs equally well, but on its exact ``x -> 2x`` grid a
  pixel-symmetric blob centred on an odd pixel lands between two samples of the
  half-resolution octave and is lost to the tie; drawn shapes hit this often.)

Outputs are sorted deterministically (score, then y, then x) before any selection,
so results do not depend on the order in which OpenCV's threads emit keypoints;
OpenCV's global thread count is left alone.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from landmark_study.data.sample import ArrayDataset

__all__ = [
    "METHODS",
    "DETECTOR_DEFAULTS",
    "anms",
    "anms_radii",
    "detect",
    "detect_dataset",
    "nms_heatmap",
    "precision_recall",
    "synthetic_corners",
    "padded_box",
    "heatmap_points",
]

METHODS = ("sift", "orb", "gftt")

#: Detector parameters used unless overridden through ``detect(..., detector_kw=...)``.
#: ORB's border (``edgeThreshold``/``patchSize``) is far smaller than OpenCV's 31 px
#: default so that small (64-128 px) images keep points near their edges.
DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "sift": {"nOctaveLayers": 3, "contrastThreshold": 0.04, "edgeThreshold": 10.0, "sigma": 1.6},
    "orb": {"scaleFactor": 1.2, "nlevels": 8, "edgeThreshold": 8, "firstLevel": 0,
            "scoreType": cv2.ORB_HARRIS_SCORE, "patchSize": 15, "fastThreshold": 20},
    "gftt": {"qualityLevel": 0.01, "minDistance": 1.0, "blockSize": 3, "gradientSize": 3,
             "useHarrisDetector": False, "k": 0.04},
}


# ----------------------------------------------------------------------------
# input checks


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown keypoint detector {method!r}; known: {', '.join(METHODS)}")
    return method


def _check_points_scores(points: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (P, 2), got shape {pts.shape}")
    if sc.shape != (len(pts),):
        raise ValueError(f"scores must be ({len(pts)},) to match points, got shape {sc.shape}")
    if not (np.isfinite(pts).all() and np.isfinite(sc).all()):
        raise ValueError("points and scores must be finite")
    return pts, sc


def _to_gray(image: Any) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise ValueError(f"image must be (H, W, 3) uint8 RGB (or (H, W) uint8), got {img.shape} {img.dtype}")
    if img.ndim == 2:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def _check_bbox(bbox: Any) -> np.ndarray:
    b = np.asarray(bbox, dtype=np.float64)
    if b.shape != (4,) or not np.isfinite(b).all() or b[2] < b[0] or b[3] < b[1]:
        raise ValueError(f"bbox must be finite (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, got {bbox!r}")
    return b


# ----------------------------------------------------------------------------
# ANMS


def anms_radii(points: Any, scores: Any, robustness: float = 0.9, chunk: int = 1024) -> np.ndarray:
    """Suppression radii of adaptive non-maximal suppression (Brown et al., 2005).

    ``r_i = min_j ||x_i - x_j||`` over the points ``j`` with ``s_i < robustness * s_j``
    (points clearly stronger than ``i``); ``inf`` where no such point exists (always
    the case for the strongest point). Scores must be non-negative, so that
    ``robustness`` in ``(0, 1]`` means "stronger by a margin". Computed in row chunks
    of ``chunk`` points (memory ``chunk * P``). Returns ``(P,)`` float64.
    """
    pts, sc = _check_points_scores(points, scores)
    if not 0.0 < robustness <= 1.0:
        raise ValueError(f"robustness must be in (0, 1], got {robustness}")
    if (sc < 0).any():
        raise ValueError(f"ANMS needs non-negative scores, got min {sc.min()}")
    p = len(pts)
    r2 = np.full(p, np.inf)
    strong = robustness * sc
    for i0 in range(0, p, chunk):
        i1 = min(i0 + chunk, p)
        d2 = ((pts[i0:i1, None, :] - pts[None, :, :]) ** 2).sum(-1)
        d2[~(sc[i0:i1, None] < strong[None, :])] = np.inf
        r2[i0:i1] = d2.min(axis=1)
    return np.sqrt(r2)


def anms(points: Any, scores: Any, k: int, robustness: float = 0.9) -> np.ndarray:
    """Adaptive non-maximal suppression: indices of the ``k`` points with the largest radii.

    Radii as in :func:`anms_radii`. Returns ``(min(k, P),)`` int64 indices into
    ``points``, ordered by decreasing radius (ties: higher score first, then lower
    index), so the strongest point always comes first. Spreads the kept points over
    the image instead of letting a cluster of strong responses take the whole budget.
    Points whose scores are within a factor ``robustness`` of each other (equal scores
    included, even at ``robustness=1``) never suppress one another, so a group of
    near-equal maxima all get large radii (Brown et al.'s definition, kept as is).
    """
    if int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    radii = anms_radii(points, scores, robustness)
    sc = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(radii)), -sc, -radii))
    return order[: int(k)].astype(np.int64)


_anms = anms  # reachable inside detect(), whose ``anms`` flag shadows the function


# ----------------------------------------------------------------------------
# classical detectors


def _detector_params(method: str, detector_kw: dict[str, Any] | None) -> dict[str, Any]:
    params = dict(DETECTOR_DEFAULTS[method])
    for key, val in (detector_kw or {}).items():
        if key not in params:
            raise ValueError(
                f"unknown {method} parameter {key!r}; known: {', '.join(sorted(params))}"
            )
        params[key] = val
    return params


def _greedy_nms(xy: np.ndarray, radius: float, chebyshev: bool) -> np.ndarray:
    """Greedy NMS over points already sorted by decreasing score: indices kept.

    A point is dropped when it lies within ``radius`` (inclusive; Chebyshev or
    Euclidean distance) of an earlier kept point.
    """
    alive = np.ones(len(xy), bool)
    kept = []
    for i in range(len(xy)):
        if not alive[i]:
            continue
        kept.append(i)
        diff = np.abs(xy - xy[i])
        dist = diff.max(axis=1) if chebyshev else np.hypot(diff[:, 0], diff[:, 1])
        alive &= dist > radius
    return np.array(kept, dtype=np.int64)


def _run_detector(gray: np.ndarray, method: str, n: int, params: dict[str, Any],
                  mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw candidates (points in the package convention, scores) from OpenCV."""
    h, w = gray.shape
    if method == "gftt":
        corners, quality = cv2.goodFeaturesToTrackWithQuality(
            gray, n, params["qualityLevel"], params["minDistance"], mask,
            blockSize=params["blockSize"], gradientSize=params["gradientSize"],
            useHarrisDetector=params["useHarrisDetector"], k=params["k"],
        )
        if corners is None or len(corners) == 0:
            return np.zeros((0, 2)), np.zeros(0)
        return corners.reshape(-1, 2).astype(np.float64), quality.reshape(-1).astype(np.float64)
    if method == "sift":
        det = cv2.SIFT_create(n, params["nOctaveLayers"], params["contrastThreshold"],
                              params["edgeThreshold"], params["sigma"])
        kps = det.detect(gray, mask)
        pts = np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2) - 0.25  # see module doc
        return pts, np.array([k.response for k in kps], dtype=np.float64)
    det = cv2.ORB_create(nfeatures=n, **params)
    kps = det.detect(gray, mask)
    raw = np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2)
    level = np.array([k.octave for k in kps], dtype=np.float64)
    scale = np.float32(params["scaleFactor"]) ** (level - params["firstLevel"])
    # ORB's pyramid level l has size round(W / s) x round(H / s) (half-pixel-centre resizes)
    # but reports pixel i as i * s; map back with the align_corners=False relation.
    wl = np.round(w / scale)
    hl = np.round(h / scale)
    x = (raw[:, 0] / scale + 0.5) * w / np.maximum(wl, 1) - 0.5
    y = (raw[:, 1] / scale + 0.5) * h / np.maximum(hl, 1) - 0.5
    return np.stack([x, y], axis=1).reshape(-1, 2), np.array([k.response for k in kps], dtype=np.float64)


def detect(
    image: Any,
    method: str,
    *,
    max_points: int | None = 30,
    anms: bool = True,
    anms_candidates: int = 500,
    robustness: float = 0.9,
    min_distance: float = 1.0,
    bbox: Sequence[float] | np.ndarray | None = None,
    detector_kw: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect generic keypoints in one image.

    ``image`` is ``(H, W, 3)`` uint8 RGB (``(H, W)`` uint8 grey also accepted);
    ``method`` one of :data:`METHODS` (``'sift'``: difference-of-Gaussian blobs,
    score = DoG contrast; ``'orb'``: multi-scale FAST corners, score = Harris response;
    ``'gftt'``: Shi-Tomasi corners, score = smaller eigenvalue of the structure tensor).
    Parameters default to :data:`DETECTOR_DEFAULTS[method]`; override any of them with
    ``detector_kw`` (an unknown key is an error).

    Up to ``max(anms_candidates, max_points)`` candidates are detected; points with
    non-positive score are dropped; a point within ``min_distance`` px (Euclidean,
    inclusive) of a stronger one is dropped (greedy; this merges SIFT's repeats of a
    point per orientation and ORB's repeats of a corner across pyramid levels, which
    ANMS alone keeps when their scores are within ``robustness`` of each other;
    ``min_distance=0`` merges only exact repeats); with ``bbox=(x0, y0, x1, y1)`` points
    outside the box (inclusive) are dropped. Then ``max_points`` are kept: by
    :func:`anms` (``anms=True``, ``robustness`` as there) or the highest scores
    (``anms=False``); ``max_points=None`` keeps all candidates.

    Returns ``(points (P, 2) float32 (x, y) px, pixel centres at integers;
    scores (P,) float32)``, ordered by decreasing ANMS radius (``anms=True``) or
    decreasing score. Deterministic.
    """
    _check_method(method)
    gray = _to_gray(image)
    if max_points is not None and (int(max_points) != max_points or max_points < 0):
        raise ValueError(f"max_points must be a non-negative integer or None, got {max_points!r}")
    if int(anms_candidates) != anms_candidates or anms_candidates < 1:
        raise ValueError(f"anms_candidates must be a positive integer, got {anms_candidates!r}")
    if not (np.isfinite(min_distance) and min_distance >= 0):
        raise ValueError(f"min_distance must be a non-negative number, got {min_distance!r}")
    params = _detector_params(method, detector_kw)
    n = int(max(anms_candidates, max_points or 0))
    h, w = gray.shape
    mask = None
    box = None
    if bbox is not None:
        box = _check_bbox(bbox)
        # restrict the detector's search (so the candidate budget is spent inside the box);
        # the exact inclusive test follows on the refined positions
        mask = np.zeros((h, w), np.uint8)
        xa, ya = max(int(np.floor(box[0])) - 1, 0), max(int(np.floor(box[1])) - 1, 0)
        xb, yb = min(int(np.ceil(box[2])) + 1, w - 1), min(int(np.ceil(box[3])) + 1, h - 1)
        if xa <= xb and ya <= yb:
            mask[ya: yb + 1, xa: xb + 1] = 255
    pts, sc = _run_detector(gray, method, n, params, mask)

    keep = sc > 0
    if box is not None:
        keep &= (pts[:, 0] >= box[0]) & (pts[:, 0] <= box[2]) & (pts[:, 1] >= box[1]) & (pts[:, 1] <= box[3])
    pts, sc = pts[keep], sc[keep]
    # deterministic order: score desc, then y, then x
    order = np.lexsort((pts[:, 0], pts[:, 1], -sc))
    pts, sc = pts[order], sc[order]
    if len(pts):
        # one point per location: SIFT repeats a point per orientation, ORB finds a
        # corner at several pyramid levels; keep the strongest within min_distance
        keep = _greedy_nms(pts, float(min_distance), chebyshev=False)
        pts, sc = pts[keep], sc[keep]
    if max_points is not None and len(pts) > max_points:
        sel = _anms(pts, sc, int(max_points), robustness) if anms else np.arange(int(max_points))
        pts, sc = pts[sel], sc[sel]
    return pts.astype(np.float32).reshape(-1, 2), sc.astype(np.float32)


def _progress_default(progress: bool | None) -> bool:
    return (not os.environ.get("CI")) if progress is None else bool(progress)


def detect_dataset(
    ds: ArrayDataset,
    method: str,
    *,
    use_bbox: bool = False,
    progress: bool | None = None,
    **kw: Any,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run :func:`detect` on every image of ``ds``; returns one ``(points, scores)`` per image.

    ``use_bbox=True`` passes each sample's ``ds.bbox[i]`` as the ``bbox`` filter.
    ``kw`` goes to :func:`detect` (``max_points``, ``anms``, ``detector_kw``, ...).
    ``progress=None`` shows a tqdm bar unless the environment variable ``CI`` is set.
    """
    from tqdm import tqdm

    _check_method(method)
    if "bbox" in kw:
        raise ValueError("detect_dataset takes use_bbox=True (per-sample boxes), not bbox=")
    out = []
    for i in tqdm(range(len(ds)), disable=not _progress_default(progress), desc=f"{method} keypoints"):
        out.append(detect(ds.images[i], method, bbox=ds.bbox[i] if use_bbox else None, **kw))
    return out


# ----------------------------------------------------------------------------
# heatmap NMS (learned detectors)




def nms_heatmap(
    heatmap: Any, threshold: float = 0.0, radius: int = 1, max_points: int | None = None
) -> tuple[np.ndarray, np.ndarray] | list[tuple[np.ndarray, np.ndarray]]:
    """Points of a detector heatmap by thresholding + max-pool NMS (Mallis Eq. 4.1).

    A pixel is kept when its value is ``> threshold`` and is the maximum of its
    ``(2 radius + 1)^2`` window; equal-valued maxima within ``radius`` (Chebyshev) of
    each other are resolved greedily (first in row-major order wins), so no two kept
    points are within ``radius`` of each other along both axes. ``max_points`` keeps
    the highest scores.

    ``heatmap``: ``(h, w)``, ``(B, h, w)`` or ``(B, 1, h, w)``, numpy or torch.
    Returns ``(points (P, 2) float32 (x, y), scores (P,) float32)`` in *heatmap* pixels
    (use :func:`landmark_study.heatmaps.heatmap_to_image` for image pixels), sorted by
    decreasing score; a list of such pairs for batched input.
    """
    t = heatmap if isinstance(heatmap, torch.Tensor) else torch.from_numpy(np.asarray(heatmap))
    t = t.detach().to("cpu", torch.float32)
    single = t.ndim == 2
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif not (t.ndim == 4 and t.shape[1] == 1):
        raise ValueError(f"heatmap must be (h, w), (B, h, w) or (B, 1, h, w), got {tuple(t.shape)}")
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    if max_points is not None and (int(max_points) != max_points or max_points < 0):
        raise ValueError(f"max_points must be a non-negative integer or None, got {max_points!r}")
    r = int(radius)
    pooled = F.max_pool2d(t, 2 * r + 1, stride=1, padding=r) if r > 0 else t
    cand = (t == pooled) & (t > threshold)
    out = []
    for b in range(t.shape[0]):
        iy, ix = np.nonzero(cand[b, 0].numpy())  # row-major order
        sc = t[b, 0].numpy()[iy, ix].astype(np.float64)
        xy = np.stack([ix, iy], axis=1).astype(np.float64)
        order = np.argsort(-sc, kind="stable")
        xy, sc = xy[order], sc[order]
        if r > 0 and len(xy):
            keep = _greedy_nms(xy, r, chebyshev=True)
            xy, sc = xy[keep], sc[keep]
        if max_points is not None:
            xy, sc = xy[: int(max_points)], sc[: int(max_points)]
        out.append((xy.astype(np.float32).reshape(-1, 2), sc.astype(np.float32)))
    return out[0] if single else out


# ----------------------------------------------------------------------------
# evaluation


def precision_recall(
    detections: Sequence[Any], gt: Any, visibility: Any, radius_px: float
) -> dict[str, Any]:
    """Precision and recall of unlabelled detections against ground-truth landmarks.

    ``detections``: one ``(P_n, 2)`` array per image (a ``(points, scores)`` pair as
    returned by :func:`detect` is accepted too); ``gt`` ``(N, K, 2)``; ``visibility``
    ``(N, K)`` (``> 0`` = visible) or ``None`` for all visible. A detection is correct
    when it lies within ``radius_px`` (inclusive) of some visible landmark of its image
    (Mallis et al. Fig. 4.3, ``d = 8`` px at 256 px); a visible landmark is recalled
    when some detection of its image lies within ``radius_px``. Pooled over the whole
    set: ``precision`` = correct detections / all detections, ``recall`` = recalled
    landmarks / visible landmarks, ``per_landmark_recall`` (K,) the recall of each
    landmark over the images where it is visible. Undefined ratios (no detections, a
    landmark never visible) are NaN. Also returns ``n_detections`` and ``n_visible``.
    """
    g = np.asarray(gt, dtype=np.float64)
    if g.ndim != 3 or g.shape[-1] != 2:
        raise ValueError(f"gt must be (N, K, 2), got shape {g.shape}")
    n, k, _ = g.shape
    if len(detections) != n:
        raise ValueError(f"detections has {len(detections)} entries but gt has {n} images")
    vis = np.ones((n, k), bool) if visibility is None else np.asarray(visibility) > 0
    if vis.shape != (n, k):
        raise ValueError(f"visibility must be ({n}, {k}), got shape {vis.shape}")
    if not (np.isfinite(radius_px) and radius_px >= 0):
        raise ValueError(f"radius_px must be a non-negative number, got {radius_px!r}")
    n_det = n_correct = 0
    recalled = np.zeros((n, k), bool)
    for i, d in enumerate(detections):
        if isinstance(d, tuple) and len(d) == 2 and np.ndim(d[0]) == 2:
            d = d[0]
        p = np.asarray(d, dtype=np.float64)
        if p.size == 0:
            p = p.reshape(0, 2)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"detections[{i}] must be (P, 2), got shape {p.shape}")
        n_det += len(p)
        if len(p) == 0 or not vis[i].any():
            continue
        dist = np.linalg.norm(p[:, None, :] - g[i][None, vis[i], :], axis=-1)  # (P, K_vis)
        within = dist <= radius_px
        n_correct += int(within.any(axis=1).sum())
        recalled[i, vis[i]] = within.any(axis=0)
    n_vis = int(vis.sum())
    per_vis = vis.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_landmark = np.where(per_vis > 0, recalled.sum(axis=0) / np.maximum(per_vis, 1), np.nan)
    return {
        "precision": n_correct / n_det if n_det else float("nan"),
        "recall": int(recalled.sum()) / n_vis if n_vis else float("nan"),
        "per_landmark_recall": per_landmark.astype(np.float64),
        "n_detections": int(n_det),
        "n_visible": n_vis,
    }


# ----------------------------------------------------------------------------
# a learned generic detector: MagicPoint-style synthetic corner shapes
# (DeTone et al. 2018, SuperPoint's first stage; Mallis et al. bootstrap from SuperPoint)

CORNER_SPEC_POINTS = 48  # padded keypoint slots per synthetic-corners image


def _corner_spec(k: int):
    from landmark_study.data.sample import DatasetSpec

    return DatasetSpec(name="corners", keypoint_names=tuple(f"c{i}" for i in range(k)), normaliser="bbox")


def _grey(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _contrasting_colour(rng: np.random.Generator, ref: float, min_contrast: float = 45.0) -> np.ndarray:
    for _ in range(100):
        c = rng.uniform(0, 255, 3)
        if abs(_grey(c) - ref) >= min_contrast:
            return c
    return np.full(3, 255.0 if ref < 128 else 0.0)


def _one_corner_image(rng: np.random.Generator, size: int, k_max: int):
    """One image of random shapes and its visible corners (x, y) in the package convention."""
    from landmark_study.data.synthetic.figures import add_pixel_noise, colour_noise_background

    ss = 4 * size  # draw at 4x with anti-aliasing, then shrink (INTER_AREA)
    img = colour_noise_background(rng, ss).astype(np.uint8)
    owner = np.full((ss, ss), -1, np.int32)  # which shape covers each pixel
    corners: list[tuple[float, float, int]] = []  # (x_big, y_big, shape id)
    n_shapes = int(rng.integers(2, 6))
    for sid in range(n_shapes):
        kind = rng.choice(["polygon", "polygon", "star", "checker", "lines", "ellipse"])
        ref = float(img.mean())
        colour = _contrasting_colour(rng, ref)
        col = tuple(float(v) for v in colour)
        cx, cy = rng.uniform(0.15, 0.85, 2) * ss
        r = rng.uniform(0.12, 0.3) * ss
        mask = np.zeros((ss, ss), np.uint8)
        pts: list[tuple[float, float]] = []
        if kind == "polygon":
            nv = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, nv))
            # keep vertices apart in angle so every vertex is a visible corner
            ang = np.linspace(0, 2 * np.pi, nv, endpoint=False) + rng.uniform(0, 2 * np.pi) + rng.uniform(-0.25, 0.25, nv)
            rad = r * rng.uniform(0.6, 1.0, nv)
            v = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
            cv2.fillPoly(mask, [np.round(v).astype(np.int32)], 1, lineType=cv2.LINE_8)
            pts = [tuple(p) for p in v]
        elif kind == "star":
            nv = int(rng.integers(3, 6))
            ang = np.linspace(0, 2 * np.pi, nv, endpoint=False) + rng.uniform(0, 2 * np.pi)
            v = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
            th = max(2, int(0.02 * ss))
            for p in v:
                cv2.line(mask, (int(cx), int(cy)), (int(p[0]), int(p[1])), 1, th)
            pts = [(cx, cy)] + [tuple(p) for p in v]
        elif kind == "checker":
            n = int(rng.integers(2, 4))
            cell = r / n
            theta = rng.uniform(0, np.pi / 2)
            rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
            o = np.array([cx, cy]) - rot @ np.array([n * cell, n * cell]) / 2
            for i in range(n):
                for j in range(n):
                    if (i + j) % 2 == 0:
                        q = np.array([[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1]], float) * cell
                        q = (rot @ q.T).T + o
                        cv2.fillPoly(mask, [np.round(q).astype(np.int32)], 1)
            grid = np.array([[i, j] for i in range(n + 1) for j in range(n + 1)], float) * cell
            pts = [tuple(p) for p in (rot @ grid.T).T + o]
        elif kind == "lines":
            th = max(2, int(0.02 * ss))
            for _ in range(int(rng.integers(1, 3))):
                a = np.array([cx, cy]) + rng.uniform(-r, r, 2)
                b = np.array([cx, cy]) + rng.uniform(-r, r, 2)
                if np.hypot(*(a - b)) < 0.3 * r:
                    continue
                cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, th)
                pts += [tuple(a), tuple(b)]
        else:  # ellipse: occludes, has no corners
            cv2.ellipse(mask, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.4, 1.0))),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        on = mask > 0
        img[on] = np.array(col, np.uint8)
        owner[on] = sid
        # earlier corners now covered by this shape are occluded
        corners = [c for c in corners if owner[int(np.clip(c[1], 0, ss - 1)), int(np.clip(c[0], 0, ss - 1))] == c[2]
                   or not (0 <= c[0] < ss and 0 <= c[1] < ss)]
        corners += [(float(x), float(y), sid) for x, y in pts]
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.0, 0.6)
    if sigma > 0.05:
        small = cv2.GaussianBlur(small, (0, 0), sigma)
    small = add_pixel_noise(rng, small, float(rng.uniform(1.0, 4.0)))
    # big-image pixel centre (x_b) -> small: (x_b + 0.5) / 4 - 0.5
    xy = np.array([[(x + 0.5) / 4 - 0.5, (y + 0.5) / 4 - 0.5] for x, y, _ in corners]).reshape(-1, 2)
    inside = (xy[:, 0] >= 1) & (xy[:, 0] <= size - 2) & (xy[:, 1] >= 1) & (xy[:, 1] <= size - 2)
    xy = xy[inside]
    if len(xy):  # merge coincident corners (shared checker vertices, star centre)
        keep = _greedy_nms(xy, 1.0, chebyshev=False)
        xy = xy[keep]
    return small, xy[:k_max]


def synthetic_corners(n: int, seed: int, size: int = 64, k_max: int = CORNER_SPEC_POINTS) -> ArrayDataset:
    """Images of random shapes with their corners labelled (MagicPoint's training data).

    Each image: a low-frequency colour-noise background and 2-5 shapes drawn over each
    other in colours that contrast with the image (>= 45 grey levels): filled polygons
    (3-6 vertices), stars (thick line segments from a centre), checkerboards, line
    segments and ellipses (no corners; they only occlude). Labels are the polygon
    vertices, star centres and tips, checkerboard grid corners and segment end points
    that stay visible (not covered by a later shape) and lie at least 1 px inside the
    frame; coincident corners (within 1 px) are merged. Drawn at 4x with
    anti-aliasing, shrunk, blurred and noised. Returns an :class:`ArrayDataset` with
    ``k_max`` padded keypoint slots (visibility 0 for unused slots); sample ``i``
    comes from ``np.random.default_rng([seed, i])``.
    """
    if n < 1 or size < 16:
        raise ValueError(f"synthetic_corners needs n >= 1 and size >= 16, got n={n}, size={size}")
    images = np.zeros((n, size, size, 3), np.uint8)
    kp = np.zeros((n, k_max, 2), np.float32)
    vis = np.zeros((n, k_max), np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img, xy = _one_corner_image(rng, size, k_max)
        images[i] = img
        kp[i, : len(xy)] = xy
        vis[i, : len(xy)] = 1.0
    bbox = np.tile(np.array([0, 0, size - 1, size - 1], np.float32), (n, 1))
    return ArrayDataset(spec=_corner_spec(k_max), images=images, keypoints=kp, visibility=vis, bbox=bbox)


def padded_box(bbox: Any, padding: float, size: tuple[int, int] | None = None) -> np.ndarray:
    """``(x0, y0, x1, y1)`` grown by ``padding`` times its width/height on each side
    (a face-detector-like box around a tight landmark box), clipped to the image."""
    b = np.asarray(bbox, dtype=np.float64).copy()
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    b[..., 0] -= padding * w
    b[..., 2] += padding * w
    b[..., 1] -= padding * h
    b[..., 3] += padding * h
    if size is not None:
        hh, ww = size
        b[..., [0, 2]] = np.clip(b[..., [0, 2]], 0, ww - 1)
        b[..., [1, 3]] = np.clip(b[..., [1, 3]], 0, hh - 1)
    return b


def heatmap_points(heatmap: Any, image_size: tuple[int, int], threshold: float = 0.0, radius: int = 1,
                   max_points: int | None = None, bbox: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`nms_heatmap` of a batch of single-channel heatmaps ``(B, 1, h, w)``, in *image*
    pixels, optionally keeping only points inside each image's ``bbox`` ``(B, 4)``
    (inclusive) before the ``max_points`` cap. Returns one ``(points, scores)`` per image."""
    from landmark_study.heatmaps import heatmap_to_image

    t = heatmap if isinstance(heatmap, torch.Tensor) else torch.from_numpy(np.asarray(heatmap))
    if t.ndim == 3:
        t = t[:, None]
    hw = tuple(int(s) for s in t.shape[-2:])
    out = []
    for b, (pts, sc) in enumerate(nms_heatmap(t, threshold, radius, None)):
        p = heatmap_to_image(pts.astype(np.float32), image_size, hw) if len(pts) else pts
        p = np.asarray(p, dtype=np.float32).reshape(-1, 2)
        if bbox is not None:
            bx = np.asarray(bbox, dtype=np.float64)[b]
            keep = (p[:, 0] >= bx[0]) & (p[:, 0] <= bx[2]) & (p[:, 1] >= bx[1]) & (p[:, 1] <= bx[3])
            p, sc = p[keep], sc[keep]
        if max_points is not None:
            p, sc = p[: int(max_points)], sc[: int(max_points)]
        out.append((p, sc))
    return out
