"""Evaluation metrics for keypoints and landmarks (pure numpy).

Everything here takes arrays and returns numbers or arrays; no torch, no
config. Points are ``(x, y)`` pixels with the last axis of size 2 (see
:mod:`landmark_study`).

Contents
--------
* PCK / PCKh (:func:`pck`, :func:`pck_curve`) and the normalisers they divide by
  (:func:`bbox_longest_side`, :func:`bbox_sqrt_area`, :func:`joint_distance`,
  :func:`pckh_head_size`).
* NME (:func:`nme`), cumulative error distribution (:func:`ced`), its normalised
  area (:func:`auc`) and :func:`failure_rate`.
* The ridge regressors used to evaluate unsupervised landmarks
  (Mallis et al.; Thewlis et al.): :func:`fit_linear_regressor`,
  :func:`forward_nme`, :func:`backward_nme`, and :func:`svt_fill` for missing
  detections.
* COCO object keypoint similarity and AP for one person per image
  (:func:`oks`, :func:`oks_ap`, :data:`COCO_SIGMAS`, :data:`LSP_SIGMAS`).
* Clustering / correspondence scores: :func:`nmi`, :func:`hungarian_accuracy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "LSP_KEYPOINT_NAMES",
    "LSP_SIGMAS",
    "LSP_FROM_COCO",
    "LinearRegressor",
    "auc",
    "backward_nme",
    "bbox_longest_side",
    "bbox_sqrt_area",
    "ced",
    "failure_rate",
    "fit_linear_regressor",
    "forward_nme",
    "hungarian_accuracy",
    "joint_distance",
    "nme",
    "nmi",
    "oks",
    "oks_ap",
    "pck",
    "pck_curve",
    "pckh_head_size",
    "svt_fill",
]


# ----------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------

def _points(name: str, arr: Any, n: int | None = None, k: int | None = None) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, K, 2), got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} samples, expected {n} (shape {a.shape})")
    if k is not None and a.shape[1] != k:
        raise ValueError(f"{name} has {a.shape[1]} points, expected {k} (shape {a.shape})")
    return a


def _per_sample(name: str, arr: Any, n: int) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def _positive(name: str, a: np.ndarray) -> np.ndarray:
    bad = ~(np.isfinite(a) & (a > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and > 0; entry {i} is {a[i]!r} ({int(bad.sum())} bad entries)")
    return a


def _visibility(name: str, arr: Any, n: int, k: int) -> np.ndarray:
    if arr is None:
        return np.ones((n, k), dtype=bool)
    v = np.asarray(arr)
    if v.shape != (n, k):
        raise ValueError(f"{name} must have shape ({n}, {k}), got {v.shape}")
    return v > 0


def _boxes(name: str, arr: Any) -> np.ndarray:
    b = np.asarray(arr, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1), got {b.shape}")
    return b


# ----------------------------------------------------------------------------
# normalisers
# ----------------------------------------------------------------------------

def bbox_longest_side(bbox: np.ndarray) -> np.ndarray:
    """Longest side ``max(x1 - x0, y1 - y0)`` of each ``(x0, y0, x1, y1)`` box, shape (N,).

    The PCK normaliser of CUB / Moskvyak et al. (PCK@0.1 of the box's longest side).
    """
    b = _boxes("bbox", bbox)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def bbox_sqrt_area(bbox: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of each ``(x0, y0, x1, y1)`` box, shape (N,) (large-pose faces, PennAction)."""
    b = _boxes("bbox", bbox)
    return np.sqrt(np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 0.0, None))


def joint_distance(gt: np.ndarray, a: int, b: int) -> np.ndarray:
    """Distance between GT joints ``a`` and ``b`` per sample, shape (N,).

    Torso (e.g. LSP right shoulder to left hip), inter-ocular (outer eye corners
    or eye centres) or shoulder distance, depending on which joints are named.
    """
    g = _points("gt", gt)
    k = g.shape[1]
    for name, j in (("a", a), ("b", b)):
        if not (isinstance(j, (int, np.integer)) and 0 <= j < k):
            raise ValueError(f"joint index {name}={j!r} outside 0..{k - 1}")
    return np.linalg.norm(g[:, a] - g[:, b], axis=-1)


def pckh_head_size(head_boxes: np.ndarray) -> np.ndarray:
    """PCKh normaliser: ``0.6 * diagonal`` of each ``(x0, y0, x1, y1)`` head box, shape (N,).

    This is the MPII convention (head segment length ~ 0.6 x head-box diagonal).
    """
    b = _boxes("head_boxes", head_boxes)
    return 0.6 * np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


# ----------------------------------------------------------------------------
# PCK, NME, CED
# ----------------------------------------------------------------------------

def pck(pred: np.ndarray, gt: np.ndarray, visibility: np.ndarray | None, norm: np.ndarray,
        alpha: float = 0.1) -> dict[str, Any]:
    """Percentage of correct keypoints: ``||pred - gt|| <= alpha * norm``.

    Parameters
    ----------
    pred, gt : (N, K, 2) points.
    visibility : (N, K), > 0 where the GT joint is labelled/visible (None = all).
        Invisible joints are excluded from every average.
    norm : (N,) positive per-sample length (see the normaliser helpers).
    alpha : threshold as a fraction of ``norm``.

    Returns
    -------
    dict with ``per_joint`` (K,) fraction correct per joint (nan for a joint
    never visible), ``mean`` (fraction over all visible joint instances, nan if
    none), ``mean_joints`` (mean of the finite ``per_joint`` entries),
    ``correct`` (N, K) bool and ``count`` (K,) visible instances per joint.
    Values are fractions in [0, 1], not percentages. A nan prediction counts
    as wrong.
    """
    g = _points("gt", gt)
    n, k, _ = g.shape
    p = _points("pred", pred, n, k)
    vis = _visibility("visibility", visibility, n, k)
    nrm = _positive("norm", _per_sample("norm", norm, n))
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    dist = np.linalg.norm(p - g, axis=-1)
    with np.errstate(invalid="ignore"):
        correct = (dist <= alpha * nrm[:, None]) & vis
    count = vis.sum(axis=0)
    hits = correct.sum(axis=0)
    per_joint = np.full(k, np.nan)
    np.divide(hits, count, out=per_joint, where=count > 0)
    total = int(count.sum())
    mean = float(hits.sum() / total) if total > 0 else float("nan")
    mean_joints = float(np.nanmean(per_joint)) if np.isfinite(per_joint).any() else float("nan")
    return {"per_joint": per_joint, "mean": mean, "mean_joints": mean_joints,
            "correct": correct, "count": count}


def pck_curve(pred: np.ndarray, gt: np.ndarray, visibility: np.ndarray | None, norm: np.ndarray,
              alphas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PCK ``mean`` (over visible instances) as a function of ``alpha``.

    Returns ``(alphas, pck_values)``; ``alphas`` defaults to ``linspace(0.01, 0.5, 50)``.
    """
    a = np.linspace(0.01, 0.5, 50) if alphas is None else np.asarray(alphas, dtype=np.float64)
    vals = np.array([pck(pred, gt, visibility, norm, float(al))["mean"] for al in a])
    return a, vals


def nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray,
        visibility: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Normalised mean error.

    ``per_sample[i] = mean over visible k of ||pred[i,k] - gt[i,k]|| / norm[i]``;
    a sample without visible points gets nan and is left out of ``mean``
    (``mean`` is nan when no sample has a visible point).

    Returns ``(per_sample (N,), mean)``.
    """
    g = _points("gt", gt)
    n, k, _ = g.shape
    p = _points("pred", pred, n, k)
    vis = _visibility("visibility", visibility, n, k)
    nrm = _positive("norm", _per_sample("norm", norm, n))
    dist = np.linalg.norm(p - g, axis=-1) / nrm[:, None]
    cnt = vis.sum(axis=1)
    per_sample = np.full(n, np.nan)
    np.divide(np.where(vis, dist, 0.0).sum(axis=1), cnt, out=per_sample, where=cnt > 0)
    ok = np.isfinite(per_sample)
    mean = float(per_sample[ok].mean()) if ok.any() else float("nan")
    return per_sample, mean


def _errors(errors: Any) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"errors must be a non-empty 1-d array, got shape {e.shape}")
    if (e[~np.isnan(e)] < 0).any():
        raise ValueError("errors must be >= 0")
    # nan = failed prediction: treat as an infinite error.
    return np.where(np.isnan(e), np.inf, e)


def ced(errors: np.ndarray, max_error: float = 0.1, num: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: fraction of samples with ``error <= t``.

    ``thresholds = linspace(0, max_error, num)``; nan errors count as failures
    (never below a threshold). Returns ``(thresholds, fraction)``.
    """
    if not (np.isfinite(max_error) and max_error > 0):
        raise ValueError(f"max_error must be > 0, got {max_error!r}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    e = np.sort(_errors(errors))
    t = np.linspace(0.0, max_error, int(num))
    frac = np.searchsorted(e, t, side="right") / e.size
    return t, frac


def auc(errors: np.ndarray, max_error: float = 0.1) -> float:
    """Area under the CED curve on ``[0, max_error]`` divided by ``max_error`` (in [0, 1]).

    Computed exactly (no grid): the CED is a step function, so the area equals
    ``mean_i (max_error - min(e_i, max_error)) / max_error``. The trapezoid rule
    on :func:`ced` converges to this value as ``num`` grows. nan errors count
    as failures (contribute 0).
    """
    if not (np.isfinite(max_error) and max_error > 0):
        raise ValueError(f"max_error must be > 0, got {max_error!r}")
    e = _errors(errors)
    return float(np.mean((max_error - np.minimum(e, max_error)) / max_error))


def failure_rate(errors: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of samples whose error is strictly greater than ``threshold`` (nan counts as failure)."""
    e = _errors(errors)
    return float(np.mean(e > threshold))


# ----------------------------------------------------------------------------
# ridge regressors for unsupervised landmarks (Mallis et al., Thewlis et al.)
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LinearRegressor:
    """``Y ~ (X - x_mean) @ weights + y_mean`` (the means are zero without intercept)."""

    weights: np.ndarray  # (D, E)
    x_mean: np.ndarray  # (D,)
    y_mean: np.ndarray  # (E,)
    penalty: float  # the ridge penalty actually added to the diagonal

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Apply to ``x`` of shape (M, D); returns (M, E)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.weights.shape[0]:
            raise ValueError(f"x must have shape (M, {self.weights.shape[0]}), got {x.shape}")
        return (x - self.x_mean) @ self.weights + self.y_mean


def fit_linear_regressor(X: np.ndarray, Y: np.ndarray, lam: float = 0.01,
                         intercept: bool = True) -> LinearRegressor:
    """Closed-form ridge regression from ``X`` (N, D) to ``Y`` (N, E).

    Exact reading used here (from the authors' ``train_regressor``, option
    ``type2``, of both Mallis et al. repositories):

    * ``intercept=True``: ``Xc = X - mean(X)``, ``Yc = Y - mean(Y)`` (column
      means over the N training rows); ``G = Xc^T Xc``;
      ``W = (G + lam * (max(diag(G)) + 1e-12) * I)^-1 Xc^T Yc``; prediction
      ``(x - mean(X)) W + mean(Y)``. This is ridge with an *unpenalised*
      intercept. (The code writes ``C.max()``, the largest entry of the Gram
      matrix, which for a Gram matrix equals its largest diagonal entry. Its
      extra scaling of coordinates by ``1/size - 0.5`` cancels out after the
      centring and is therefore omitted.)
    * ``intercept=False``: the same without centring, i.e. no bias at all, as
      the papers' text describes ("a simple regressor with no bias").
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (N, D), got {X.shape}")
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must have shape ({X.shape[0]}, E), got {Y.shape}")
    if X.shape[0] < 1:
        raise ValueError("X must have at least one row")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("X and Y must be finite (fill missing detections first, e.g. svt_fill)")
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    if intercept:
        xm, ym = X.mean(axis=0), Y.mean(axis=0)
    else:
        xm, ym = np.zeros(X.shape[1]), np.zeros(Y.shape[1])
    Xc, Yc = X - xm, Y - ym
    G = Xc.T @ Xc
    pen = float(lam * (np.max(np.diag(G)) + 1e-12))
    A = G + pen * np.eye(G.shape[0])
    try:
        W = np.linalg.solve(A, Xc.T @ Yc)
    except np.linalg.LinAlgError:  # lam == 0 with rank-deficient X
        W = np.linalg.lstsq(A, Xc.T @ Yc, rcond=None)[0]
    return LinearRegressor(weights=W, x_mean=xm, y_mean=ym, penalty=pen)


def svt_fill(X: np.ndarray, tau: float | None = None, delta: float | None = None,
             tol: float = 1e-2, max_iter: int = 500, scale: float | None = None) -> np.ndarray:
    """Fill the nan entries of ``X`` (N, D) by singular value thresholding.

    The SVT algorithm of Cai, Candes & Shen (2010): ``Y <- Y + delta * P(A - Z)``
    with ``Z = shrink_tau(Y)`` (singular values reduced by ``tau``) and ``P``
    the mask of observed entries, until the relative error on the observed
    entries is below ``tol``. Defaults follow the common ones:
    ``tau = 5 * sqrt(N * D)``, ``delta = 1.2 * N * D / n_observed``.

    SVT is not scale invariant; like the authors (who divide coordinates by
    the image size) the matrix is divided by ``scale`` first (default: the
    largest observed absolute value). Observed entries are returned unchanged.
    """
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"X must have shape (N, D), got {A.shape}")
    mask = np.isfinite(A)
    if mask.all():
        return A.copy()
    if not mask.any():
        raise ValueError("X has no observed (finite) entry")
    s = float(np.max(np.abs(A[mask]))) if scale is None else float(scale)
    if not s > 0:
        s = 1.0
    a = np.where(mask, A / s, 0.0)
    m, d = a.shape
    tau = 5.0 * np.sqrt(m * d) if tau is None else float(tau)
    delta = 1.2 * m * d / mask.sum() if delta is None else float(delta)
    norm_obs = np.linalg.norm(a[mask]) or 1.0
    Y = np.zeros_like(a)
    Z = Y
    for _ in range(int(max_iter)):
        U, S, Vt = np.linalg.svd(Y, full_matrices=False)
        S = np.maximum(S - tau, 0.0)
        Z = (U * S) @ Vt
        resid = np.where(mask, a - Z, 0.0)
        Y = Y + delta * resid
        if np.linalg.norm(resid) / norm_obs < tol:
            break
    return np.where(mask, A, Z * s)


def _fill_train(D: np.ndarray, fill: str) -> tuple[np.ndarray, np.ndarray]:
    """Fill nan columns of training matrix D (N, F); return (filled, column means)."""
    fin = np.isfinite(D)
    cnt = fin.sum(axis=0)
    col = np.zeros(D.shape[1])
    np.divide(np.where(fin, D, 0.0).sum(axis=0), cnt, out=col, where=cnt > 0)
    if np.isfinite(D).all():
        return D, col
    if fill == "mean":
        return np.where(np.isfinite(D), D, col), col
    if fill == "svt":
        return svt_fill(D), col
    raise ValueError(f"fill must be 'mean' or 'svt', got {fill!r}")


def _check_regression_inputs(disc_train, gt_train, disc_test, gt_test, norm_test):
    dtr = _points("disc_train", disc_train)
    n, l, _ = dtr.shape
    gtr = _points("gt_train", gt_train, n)
    dte = _points("disc_test", disc_test, None, l)
    m = dte.shape[0]
    gte = _points("gt_test", gt_test, m, gtr.shape[1])
    nrm = _positive("norm_test", _per_sample("norm_test", norm_test, m))
    for name, a in (("gt_train", gtr), ("gt_test", gte)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite (all GT points annotated)")
    return dtr, gtr, dte, gte, nrm


def _summary(per_repeat: list[float], per_landmark: np.ndarray) -> dict[str, Any]:
    pr = np.asarray(per_repeat, dtype=np.float64)
    return {"mean": float(np.mean(pr)), "std": float(np.std(pr)), "per_repeat": pr,
            "per_landmark": per_landmark}


def forward_nme(disc_train: np.ndarray, gt_train: np.ndarray, disc_test: np.ndarray,
                gt_test: np.ndarray, norm_test: np.ndarray, n_train: int = 300, repeats: int = 10,
                lam: float = 0.01, intercept: bool = True, seed: int | np.random.Generator = 0,
                fill: str = "mean", visibility_test: np.ndarray | None = None) -> dict[str, Any]:
    """Forward NME: regress GT landmarks from discovered ones, measure NME on test.

    For each of ``repeats`` draws, ``n_train`` training images are sampled
    without replacement (``numpy.random.default_rng(seed)``), a ridge
    regressor (:func:`fit_linear_regressor`) maps the flattened discovered
    landmarks (L*2) to the flattened GT (K*2), and the test NME
    (mean over GT points of ``||pred - gt|| / norm_test``) is averaged over
    test images. (The authors' code draws ``n_train + 1`` images; here it is
    exactly ``n_train``.)

    Missing detections (nan): training entries are filled before sampling,
    with the training column mean (``fill='mean'``, default) or by
    :func:`svt_fill` (``fill='svt'``; the authors use SVT matrix completion);
    missing test entries get the training column mean. A landmark never
    detected in training is filled with 0, i.e. a constant column.

    Returns dict ``mean``, ``std`` (over repeats), ``per_repeat`` (repeats,),
    ``per_landmark`` (K,) mean normalised error of each GT point over repeats,
    ``per_image`` (N_test,) each test image's NME averaged over repeats (CED curves).
    """
    dtr, gtr, dte, gte, nrm = _check_regression_inputs(disc_train, gt_train, disc_test, gt_test, norm_test)
    n, k = dtr.shape[0], gtr.shape[1]
    if not (1 <= n_train <= n):
        raise ValueError(f"n_train={n_train} must be in 1..{n} (the number of training images)")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    vis = _visibility("visibility_test", visibility_test, dte.shape[0], k)
    rng = np.random.default_rng(seed)
    Xtr, col = _fill_train(dtr.reshape(n, -1), fill)
    Xte = dte.reshape(dte.shape[0], -1)
    Xte = np.where(np.isfinite(Xte), Xte, col)
    Ytr = gtr.reshape(n, -1)
    per_repeat, per_lm, per_img = [], [], []
    for _ in range(int(repeats)):
        idx = rng.choice(n, size=int(n_train), replace=False)
        reg = fit_linear_regressor(Xtr[idx], Ytr[idx], lam=lam, intercept=intercept)
        pred = reg.predict(Xte).reshape(gte.shape)
        per_sample, mean = nme(pred, gte, nrm, vis)
        per_repeat.append(mean)
        per_img.append(per_sample)
        d = np.linalg.norm(pred - gte, axis=-1) / nrm[:, None]
        with np.errstate(invalid="ignore"):
            per_lm.append(np.where(vis, d, 0).sum(0) / vis.sum(0))
    out = _summary(per_repeat, np.mean(per_lm, axis=0))
    out["per_image"] = np.mean(per_img, axis=0)  # for CED curves
    return out


def backward_nme(disc_train: np.ndarray, gt_train: np.ndarray, disc_test: np.ndarray,
                 gt_test: np.ndarray, norm_test: np.ndarray, n_train: int = 300, repeats: int = 10,
                 lam: float = 0.01, intercept: bool = True,
                 seed: int | np.random.Generator = 0) -> dict[str, Any]:
    """Backward NME: regress each discovered landmark from the GT landmarks.

    As in the authors' code, every discovered landmark ``l`` gets its own
    regressor, GT (K*2) -> landmark ``l`` (2), trained on ``min(n_train, n_l)``
    training images drawn at random among the ``n_l`` images where ``l`` was
    detected (not nan), and tested on the test images where ``l`` was
    detected. Errors are ``||pred - disc|| / norm_test`` (the normaliser of
    the *GT* test shape, e.g. its inter-ocular distance). A repeat's score is
    the mean over landmarks of their mean test error; landmarks with fewer
    than 2 training detections or no test detection are nan in
    ``per_landmark`` and left out. Without missing detections this equals one
    joint regression (ridge decouples over outputs).

    Returns dict ``mean``, ``std``, ``per_repeat`` (repeats,), ``per_landmark`` (L,).
    """
    dtr, gtr, dte, gte, nrm = _check_regression_inputs(disc_train, gt_train, disc_test, gt_test, norm_test)
    n, l = dtr.shape[:2]
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    Xtr = gtr.reshape(n, -1)
    Xte = gte.reshape(gte.shape[0], -1)
    ok_tr = np.isfinite(dtr).all(-1)
    ok_te = np.isfinite(dte).all(-1)
    per_repeat, per_lm_all = [], []
    for _ in range(int(repeats)):
        errs = np.full(l, np.nan)
        for j in range(l):
            rows = np.flatnonzero(ok_tr[:, j])
            trows = ok_te[:, j]
            if rows.size < 2 or not trows.any():
                continue
            idx = rng.choice(rows, size=min(int(n_train), rows.size), replace=False)
            reg = fit_linear_regressor(Xtr[idx], dtr[idx, j], lam=lam, intercept=intercept)
            pred = reg.predict(Xte[trows])
            errs[j] = float(np.mean(np.linalg.norm(pred - dte[trows, j], axis=-1) / nrm[trows]))
        per_lm_all.append(errs)
        per_repeat.append(float(np.nanmean(errs)) if np.isfinite(errs).any() else float("nan"))
    per_lm = np.asarray(per_lm_all)
    with np.errstate(invalid="ignore"):
        lm_mean = np.full(l, np.nan)
        good = np.isfinite(per_lm).any(0)
        lm_mean[good] = np.nanmean(per_lm[:, good], axis=0)
    return _summary(per_repeat, lm_mean)


# ----------------------------------------------------------------------------
# COCO OKS and AP (one person per image)
# ----------------------------------------------------------------------------

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
#: Per-keypoint OKS sigmas of the COCO keypoint benchmark, in COCO order.
COCO_SIGMAS: np.ndarray = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72,
     0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10.0

LSP_KEYPOINT_NAMES: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "neck", "head_top",
)
#: COCO index of each of the first 12 LSP joints (-1 for neck and head top,
#: which COCO does not annotate).
LSP_FROM_COCO: np.ndarray = np.array([16, 14, 12, 11, 13, 15, 10, 8, 6, 5, 7, 9, -1, -1])
#: OKS sigmas for the 14 LSP joints: the COCO sigmas of the same limb joints;
#: neck and head top get 0.079 (the shoulder sigma), as the CrowdPose
#: benchmark does for its 'head' and 'neck' keypoints.
LSP_SIGMAS: np.ndarray = np.concatenate([COCO_SIGMAS[LSP_FROM_COCO[:12]], [0.079, 0.079]])


def oks(pred: np.ndarray, gt: np.ndarray, visibility: np.ndarray, area: np.ndarray,
        sigmas: np.ndarray) -> np.ndarray:
    """Object keypoint similarity of each prediction with its GT, shape (N,).

    As COCOeval: ``OKS = mean over visible k of exp(-d_k^2 / (2 s^2 k_k^2))``
    with ``s^2 = area`` (the GT object's area, COCO uses the segment area, plus
    ``np.spacing(1)``) and ``k_k = 2 * sigma_k``. nan for a sample without any
    visible GT keypoint (COCO ignores such GTs).
    """
    g = _points("gt", gt)
    n, k, _ = g.shape
    p = _points("pred", pred, n, k)
    vis = _visibility("visibility", visibility, n, k)
    ar = _per_sample("area", area, n)
    if (ar < 0).any() or not np.isfinite(ar).all():
        raise ValueError("area must be finite and >= 0")
    s = np.asarray(sigmas, dtype=np.float64)
    if s.shape != (k,):
        raise ValueError(f"sigmas must have shape ({k},), got {s.shape}")
    var = (2.0 * s) ** 2
    d2 = ((p - g) ** 2).sum(-1)
    e = d2 / var[None, :] / (ar[:, None] + np.spacing(1)) / 2.0
    cnt = vis.sum(1)
    out = np.full(n, np.nan)
    np.divide(np.where(vis, np.exp(-e), 0.0).sum(1), cnt, out=out, where=cnt > 0)
    return out


def _ap_one_threshold(o: np.ndarray, order: np.ndarray, t: float) -> float:
    """COCOeval.accumulate for one OKS threshold, one det and one GT per image."""
    t = min(t, 1 - 1e-10)
    tps = (o[order] >= t).astype(np.float64)
    fps = 1.0 - tps
    tp = np.cumsum(tps)
    fp = np.cumsum(fps)
    npig = o.size
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    pr = pr.tolist()
    for i in range(len(pr) - 1, 0, -1):
        if pr[i] > pr[i - 1]:
            pr[i - 1] = pr[i]
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
    inds = np.searchsorted(rc, rec_thrs, side="left")
    q = np.zeros(rec_thrs.size)
    for ri, pi in enumerate(inds):
        if pi < len(pr):
            q[ri] = pr[pi]
    return float(np.mean(q))


def oks_ap(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, visibility: np.ndarray,
           areas: np.ndarray, sigmas: np.ndarray,
           thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """COCO keypoint AP when each image has exactly one GT person and one prediction.

    Follows ``COCOeval.evaluateImg`` + ``accumulate`` + ``summarize``: the
    prediction of image i is a true positive at threshold t iff
    ``OKS_i >= t``; detections are sorted by descending score (stable
    mergesort, ties in image order); precision is made monotone from the right
    and read at the 101 recall thresholds ``linspace(0, 1, 101)``
    (``searchsorted(..., 'left')``, 0 beyond the largest recall); AP is the
    mean over those 101 values, then over ``thresholds`` (default
    ``0.50:0.05:0.95``). Images whose GT has no visible keypoint are dropped
    (COCO marks such GTs 'ignore'; it would also ignore the matched
    detection but can count an unmatched one as a false positive, using a
    box-based distance that is not reproduced here).

    Returns dict ``AP``, ``AP50``, ``AP75`` (nan if that threshold is not in
    ``thresholds``), ``per_threshold`` (T,), ``thresholds`` and ``oks`` (N,).
    """
    g = _points("gt", gt)
    n = g.shape[0]
    sc = _per_sample("scores", scores, n)
    if not np.isfinite(sc).all():
        raise ValueError("scores must be finite")
    p = _points("pred", pred, n, g.shape[1])
    if not np.isfinite(p).all():
        raise ValueError("pred must be finite")
    o = oks(p, g, visibility, areas, sigmas)
    thr = np.arange(0.5, 0.96, 0.05) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-d array, got shape {thr.shape}")
    keep = np.isfinite(o)
    if not keep.any():
        raise ValueError("no image has a visible GT keypoint: AP is undefined")
    ok, sk = o[keep], sc[keep]
    order = np.argsort(-sk, kind="mergesort")
    per_t = np.array([_ap_one_threshold(ok, order, float(t)) for t in thr])

    def at(v: float) -> float:
        hit = np.flatnonzero(np.isclose(thr, v))
        return float(per_t[hit[0]]) if hit.size else float("nan")

    return {"AP": float(per_t.mean()), "AP50": at(0.5), "AP75": at(0.75),
            "per_threshold": per_t, "thresholds": thr, "oks": o}


# ----------------------------------------------------------------------------
# clustering / correspondence
# ----------------------------------------------------------------------------

def knn_accuracy(x: np.ndarray, labels: np.ndarray, neighbours: int = 1) -> float:
    """Leave-one-out ``neighbours``-nearest-neighbour accuracy of integer ``labels`` (>= 0) in the
    Euclidean space of ``x`` (N, D): majority vote, ties to the nearer neighbours; nan when
    ``N <= neighbours``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).ravel()
    if len(x) != len(y):
        raise ValueError(f"x and labels differ in length: {len(x)} vs {len(y)}")
    if len(x) <= neighbours:
        return float("nan")
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    nn_idx = np.argsort(d, axis=1, kind="stable")[:, :neighbours]
    votes = y[nn_idx]
    counts = np.zeros((len(x), int(y.max()) + 1))
    for j in range(neighbours):  # earlier (nearer) neighbours break ties
        counts[np.arange(len(x)), votes[:, j]] += 1 + 1e-3 * (neighbours - j)
    return float((counts.argmax(1) == y).mean())


def nmi(cluster_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Normalised mutual information between two labelings (sklearn, arithmetic normalisation)."""
    from sklearn.metrics import normalized_mutual_info_score

    a = np.asarray(cluster_labels).ravel()
    b = np.asarray(gt_labels).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cluster_labels and gt_labels differ in size: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("cluster_labels is empty")
    return float(normalized_mutual_info_score(b, a))


def hungarian_accuracy(pred_landmarks: np.ndarray, gt: np.ndarray, visibility: np.ndarray | None,
                       threshold_px: float | np.ndarray) -> dict[str, Any]:
    """Match discovered landmark channels to GT keypoints, then score the matches.

    ``cost[m, k]`` = mean distance between discovered channel m (nan = not
    detected) and GT keypoint k over the images where both exist (a large
    constant where they never co-occur). One-to-one assignment by
    ``scipy.optimize.linear_sum_assignment`` (M and K may differ).

    ``accuracy`` = fraction of visible GT instances (image, k) whose assigned
    channel is detected within ``threshold_px`` (scalar or (N,) per image) of
    it; a missing detection or an unassigned GT keypoint counts as a miss.

    Returns dict ``accuracy``, ``per_joint`` (K,), ``assignment`` (K,) channel
    index per GT keypoint (-1 if unassigned), ``cost`` (M, K).
    """
    g = _points("gt", gt)
    n, k, _ = g.shape
    p = _points("pred_landmarks", pred_landmarks, n)
    m = p.shape[1]
    vis = _visibility("visibility", visibility, n, k)
    thr = _positive("threshold_px", _per_sample("threshold_px", threshold_px, n))
    det = np.isfinite(p).all(-1)  # (N, M)
    d = np.linalg.norm(p[:, :, None, :] - g[:, None, :, :], axis=-1)  # (N, M, K)
    both = det[:, :, None] & vis[:, None, :]
    cnt = both.sum(0)
    total = np.where(both, d, 0.0).sum(0)
    cost = np.full((m, k), np.nan)
    np.divide(total, cnt, out=cost, where=cnt > 0)
    big = (np.nanmax(cost) if np.isfinite(cost).any() else 1.0) * 10.0 + 1e6
    rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, big))
    assignment = np.full(k, -1, dtype=np.int64)
    assignment[cols] = rows
    hit = np.zeros((n, k), dtype=bool)
    for kk in range(k):
        mm = assignment[kk]
        if mm < 0:
            continue
        with np.errstate(invalid="ignore"):
            hit[:, kk] = det[:, mm] & (d[:, mm, kk] <= thr)
    hit &= vis
    vc = vis.sum(0)
    per_joint = np.full(k, np.nan)
    np.divide(hit.sum(0), vc, out=per_joint, where=vc > 0)
    total_vis = int(vc.sum())
    acc = float(hit.sum() / total_vis) if total_vis else float("nan")
    return {"accuracy": acc, "per_joint": per_joint, "assignment": assignment, "cost": cost}
