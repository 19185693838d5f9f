"""Self-training a landmark detector from generic keypoints (Mallis, thesis chapter 4).

No ground-truth label is used for training anywhere here; the ground truth of the
training images is read only to *measure* the pseudo-labels, and val/test keep theirs
for evaluation.

* ``magicpoint``: a MagicPoint-style generic detector (SuperPoint's first stage,
  DeTone et al. 2018): a single-channel heatmap detector trained on
  :func:`landmark_study.keypoints.synthetic_corners`. It stands in for SuperPoint.
* ``self_training``, stage ``detector`` (Algorithm 1, lines 1-6): round 1 trains a
  NEW single-channel detector from scratch on generic keypoints (``init``: SIFT, ORB,
  GFTT, MagicPoint, or a mixture of perturbed ground-truth and random points for the
  noise study); round ``r`` trains a new one on the thresholded + NMS'd detections of
  round ``r - 1`` (with data distillation -- heatmaps averaged over several
  transforms -- once ``r - 1 >= distill_from``).
* stage ``landmarks`` (lines 7-12): round 1 recovers correspondence by aligning every
  image's detections of the last detector round to a one-image template with
  Coherent Point Drift and a Hungarian assignment (missing points filled from the
  aligned template) and trains a K-channel detector; round ``r`` retrains on the
  confident argmax points of round ``r - 1``.

Each round is one run of the results store; its ``prepare_data`` fetches the previous
round with :func:`landmark_study.runs.trained_method` (so a chain trains once and is
cached), and :func:`previous_config` is the one place that derives it. Pseudo-labels
are cached beside the weights (``<key>.pseudo.npz`` in the checkpoint folder).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .. import geometry, heatmaps
from ..config import RunConfig, spec
from ..data.sample import ArrayDataset, DatasetSpec
from ..losses import heatmap_mse
from ..models import build_model
from . import register
from .base import Batch
from .supervised import HeatmapMethod

INITS = ("sift", "orb", "gftt", "magicpoint", "noisy_gt")
#: Mallis et al.'s true-positive radius: 8 px at 256 px (thesis Sec. 4.4, footnote 1)
RADIUS_AT_256 = 8.0


# ----------------------------------------------------------------------------
# point-set helpers (pure numpy)


def pack_points(points: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length point sets -> ``(N, k, 2)`` float32 and visibility ``(N, k)``
    (the first ``min(P_i, k)`` slots of image ``i`` are its points, the rest 0/invisible)."""
    n = len(points)
    kp = np.zeros((n, k, 2), np.float32)
    vis = np.zeros((n, k), np.float32)
    for i, p in enumerate(points):
        p = np.asarray(p, np.float32).reshape(-1, 2)[:k]
        kp[i, : len(p)] = p
        vis[i, : len(p)] = 1.0
    return kp, vis


def unpack_points(kp: np.ndarray, vis: np.ndarray) -> list[np.ndarray]:
    return [kp[i][vis[i] > 0] for i in range(len(kp))]


def pseudo_spec(k: int, name: str = "pseudo") -> DatasetSpec:
    return DatasetSpec(name=name, keypoint_names=tuple(f"p{i}" for i in range(k)), normaliser="bbox")


def noisy_gt_points(gt: np.ndarray, vis: np.ndarray, real_fraction: float, noise_px: float,
                    image_size: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """The noise study's initial pseudo-labels: per image, as many points as it has visible
    landmarks, ``round(real_fraction * n)`` of them visible ground-truth landmarks (drawn
    without replacement) moved by ``N(0, noise_px^2)``, the rest uniform over the image."""
    h, w = image_size
    out = []
    for g, v in zip(np.asarray(gt, np.float64), np.asarray(vis) > 0):
        cand = g[v]
        n = len(cand)
        n_real = int(round(real_fraction * n))
        real = cand[rng.choice(n, n_real, replace=False)] + rng.normal(0, noise_px, (n_real, 2)) if n_real else \
            np.zeros((0, 2))
        rand = np.stack([rng.uniform(0, w - 1, n - n_real), rng.uniform(0, h - 1, n - n_real)], 1)
        pts = np.concatenate([real, rand]).reshape(-1, 2)
        pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        out.append(pts.astype(np.float32))
    return out


def cpd(X: np.ndarray, Y: np.ndarray, transform: str = "rigid", w: float = 0.2, max_iter: int = 100,
        tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coherent Point Drift (Myronenko & Song 2010): align the template ``Y`` (M, 2) to the
    points ``X`` (N, 2), a GMM with centroids ``T(Y)`` and a uniform outlier weight ``w``.

    ``transform='rigid'``: similarity ``T(y) = s R y + t`` (rotation, isotropic scale,
    translation); ``'affine'``: ``T(y) = B y + t``. Returns ``(T(Y) (M, 2), A (2, 2),
    t (2,))`` with ``T(y) = A y + t``. Deterministic (initialised at the identity with
    the usual ``sigma^2 = sum ||x - y||^2 / (D M N)``).
    """
    X = np.asarray(X, np.float64).reshape(-1, 2)
    Y = np.asarray(Y, np.float64).reshape(-1, 2)
    if transform not in ("rigid", "affine"):
        raise ValueError(f"transform must be 'rigid' or 'affine', got {transform!r}")
    if not 0 <= w < 1:
        raise ValueError(f"w must be in [0, 1), got {w}")
    n, m, d = len(X), len(Y), 2
    if n == 0 or m == 0:
        return Y.copy(), np.eye(2), np.zeros(2)
    # like Myronenko's code: each set to zero mean and unit scale, solve, map the transform back
    mx, my = X.mean(0), Y.mean(0)
    sx = float(np.sqrt(((X - mx) ** 2).sum(1).mean())) or 1.0
    sy = float(np.sqrt(((Y - my) ** 2).sum(1).mean())) or 1.0
    An, tn = _cpd_normalised((X - mx) / sx, (Y - my) / sy, transform, w, max_iter, tol)
    A = sx / sy * An
    t = sx * tn + mx - A @ my
    return Y @ A.T + t, A, t


def _cpd_normalised(X: np.ndarray, Y: np.ndarray, transform: str, w: float, max_iter: int,
                    tol: float) -> tuple[np.ndarray, np.ndarray]:
    n, m, d = len(X), len(Y), 2
    A, t = np.eye(2), np.zeros(2)
    sigma2 = float(((X[None] - Y[:, None]) ** 2).sum()) / (d * m * n)
    prev_q = np.inf
    for _ in range(max_iter):
        TY = Y @ A.T + t
        d2 = ((X[None, :, :] - TY[:, None, :]) ** 2).sum(-1)  # (M, N)
        sigma2 = max(sigma2, 1e-8)
        P = np.exp(-d2 / (2 * sigma2))
        c = (2 * np.pi * sigma2) ** (d / 2) * w / (1 - w) * m / n
        P = P / (P.sum(0, keepdims=True) + c)
        Np = P.sum()
        if Np < 1e-12:
            break
        mu_x = (P.sum(0) @ X) / Np
        mu_y = (P.sum(1) @ Y) / Np
        Xh, Yh = X - mu_x, Y - mu_y
        Apx = Xh.T @ P.T @ Yh  # (2, 2)
        yPy = (Yh * (P.sum(1)[:, None] * Yh)).sum()
        xPx = (Xh * (P.sum(0)[:, None] * Xh)).sum()
        if transform == "rigid":
            U, _, Vt = np.linalg.svd(Apx)
            C = np.diag([1.0, np.linalg.det(U @ Vt)])
            R = U @ C @ Vt
            s = np.trace(Apx.T @ R) / max(yPy, 1e-12)
            A = s * R
            sigma2 = (xPx - s * np.trace(Apx.T @ R)) / (Np * d)
        else:
            YPY = Yh.T @ (P.sum(1)[:, None] * Yh)
            A = Apx @ np.linalg.pinv(YPY)
            sigma2 = (xPx - np.trace(Apx @ A.T)) / (Np * d)
        t = mu_x - A @ mu_y
        q = sigma2
        if abs(prev_q - q) < tol:
            break
        prev_q = q
    return A, t


def match_to_template(points: np.ndarray, template: np.ndarray, *, transform: str = "rigid", w: float = 0.2,
                      radius: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Correspondence by template (Mallis Sec. 4.2.4): CPD-align ``template`` (K, 2) to an
    image's ``points`` (P, 2), assign by the Hungarian algorithm on the Euclidean distance
    between aligned template points and detections, accept pairs within ``radius`` px,
    and fill the other landmarks with the aligned template point.
    Returns ``(landmarks (K, 2), matched (K,) bool)``."""
    template = np.asarray(template, np.float64).reshape(-1, 2)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    aligned, _, _ = cpd(points, template, transform=transform, w=w)
    out = aligned.copy()
    matched = np.zeros(len(template), bool)
    if len(points):
        cost = np.linalg.norm(aligned[:, None] - points[None], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] <= radius
        out[rows[ok]] = points[cols[ok]]
        matched[rows[ok]] = True
    return out.astype(np.float32), matched


# ----------------------------------------------------------------------------
# configs of a chain


def with_steps(config: RunConfig, steps: int) -> RunConfig:
    """The config with ``steps`` training steps, one evaluation and one checkpoint at the end."""
    return config.with_overrides(**{"train.steps": steps, "train.eval_every": steps,
                                    "train.checkpoint_every": steps})


_DETECTOR_ONLY_IRRELEVANT = ("detector_rounds", "detector_steps", "num_landmarks", "template_index", "cpd",
                             "cpd_w", "match_radius", "min_matched", "landmark_threshold", "reg_images",
                             "reg_repeats", "clustering_protocol")


def canonical(config: RunConfig) -> RunConfig:
    """Reset the options a run does not depend on to their defaults (so chains that share
    rounds share runs): landmark-stage options in detector rounds, the noise-study and
    MagicPoint options when the initial keypoints do not use them, and ``distill_from``
    while it has not taken effect (round ``r`` uses distillation iff ``r - 1 >= distill_from``)."""
    if config.method != SelfTraining.name:
        return config
    o = config.options()
    d = SelfTraining.Options()
    new = dataclasses.asdict(o)
    if o.stage == "detector":
        for k in _DETECTOR_ONLY_IRRELEVANT:
            new[k] = getattr(d, k)
        if o.distill_from is not None and o.round - 1 < o.distill_from:
            new["distill_from"] = None
    if o.init != "noisy_gt":
        new["real_fraction"], new["noise_px"] = d.real_fraction, d.noise_px
    else:
        new["init_points"], new["box_padding"] = d.init_points, d.box_padding
    if o.init != "magicpoint":
        new["magicpoint_steps"], new["magicpoint_images"] = d.magicpoint_steps, d.magicpoint_images
    defaults = dataclasses.asdict(d)
    opts = {k: v for k, v in new.items() if v != defaults[k]}
    return config.with_overrides(method_options=opts)


def previous_config(config: RunConfig) -> RunConfig | None:
    """The run whose detections are this round's training labels (None for detector round 1)."""
    o = config.options()
    opts = dataclasses.asdict(o)
    if o.stage == "detector":
        if o.round == 1:
            return None
        opts["round"] = o.round - 1
        return canonical(config.with_overrides(method_options=opts))
    if o.round > 1:
        opts["round"] = o.round - 1
        return canonical(config.with_overrides(method_options=opts))
    opts.update(stage="detector", round=o.detector_rounds)
    return canonical(with_steps(config.with_overrides(method_options=opts), o.detector_steps))


def magicpoint_config(config: RunConfig) -> RunConfig:
    """The MagicPoint run a ``self_training`` config with ``init='magicpoint'`` uses: same
    data (for evaluation), model and batch; seed 0 (one detector for every seed, as one
    SuperPoint serves every run in the thesis); Adam 1e-3, no weight decay."""
    o = config.options()
    base = config.with_overrides(method="magicpoint", seed=0, loss_weights={},
                                 method_options={"images": o.magicpoint_images})
    base = base.with_overrides(**{"train.lr": 1e-3, "train.weight_decay": 0.0, "train.optimizer": "adam",
                                  "train.lr_milestones": [0.75], "model.options": {"norm": "gn"}})
    return with_steps(base, o.magicpoint_steps)


# ----------------------------------------------------------------------------
# pseudo-label cache


_STATS: dict[str, dict[str, float]] = {}


def _cache_path(config: RunConfig):
    from ..runs import checkpoint_dir, run_key

    return checkpoint_dir() / f"{run_key(config)}.pseudo.npz"


def _radius(config: RunConfig, o: Any) -> float:
    return float(o.eval_radius) if o.eval_radius is not None else RADIUS_AT_256 * config.data.size / 256.0


# ----------------------------------------------------------------------------
# methods


class _DetectorBase(HeatmapMethod):
    """Single-channel heatmap detector: max of Gaussians (or deltas) at the pseudo-labels."""

    def _channels(self) -> int:
        return 1

    def build(self) -> nn.Module:
        m = self.config.model
        return build_model(m.name, self._channels(), width=m.width, heatmap_stride=m.heatmap_stride, **m.options)

    # -- training -------------------------------------------------------------
    def _jitter(self, images: torch.Tensor) -> torch.Tensor:
        j = float(getattr(self.options, "color_jitter", 0.0))
        if j <= 0:
            return images
        b = images.shape[0]
        g = self.generator

        def u(*shape):
            return (torch.rand(*shape, generator=g) * 2 - 1).to(images.device)

        bright = 1 + j * u(b, 1, 1, 1)
        contrast = 1 + j * u(b, 1, 1, 1)
        gain = 1 + 0.5 * j * u(b, 3, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        out = (images - mean) * contrast + mean
        return (out * bright * gain).clamp(0, 1)

    def _augment(self, batch: Batch, flip: bool):
        a = self.config.train.augment
        n = batch.images.shape[0]
        m = geometry.sample_affine(n, self.image_size, rotation=a.rotation, scale=a.scale,
                                   translation=a.translation, generator=self.generator)
        if flip:
            fm, _ = geometry.sample_flip(n, self.image_size, p=a.flip, generator=self.generator)
            m = geometry.compose(m, fm)
        m = m.to(self.device)
        img = self._jitter(geometry.warp_images(batch.images, m))
        kp, vis = geometry.warp_keypoints(batch.keypoints, batch.visibility, m, self.image_size)
        return img, kp, vis

    def _target(self, kp: torch.Tensor, vis: torch.Tensor, single: bool):
        pts = heatmaps.image_to_heatmap(kp, self.image_size, self.heatmap_size)
        if getattr(self.options, "target", "gaussian") == "delta":
            maps, w = heatmaps.encode_delta(pts, self.heatmap_size, vis)
        else:
            maps, w = heatmaps.encode_gaussian(pts, self.heatmap_size, self.config.train.sigma, vis)
        if single:
            return maps.amax(dim=1, keepdim=True), torch.ones(maps.shape[0], 1, device=maps.device)
        return maps, w

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        img, kp, vis = self._augment(labeled, flip=self.is_detector)
        target, w = self._target(kp, vis, single=self.is_detector)
        out = self.module(img)["heatmaps"]
        self.diagnostics["peak"] = float(out.detach().amax(dim=(2, 3)).mean())
        self.diagnostics["labels_per_image"] = float(labeled.visibility.sum(1).mean())
        return {"det": heatmap_mse(out, target, w)}

    is_detector = True

    # -- inference ------------------------------------------------------------
    @torch.no_grad()
    def heatmap(self, images: torch.Tensor, distill: int = 0) -> torch.Tensor:
        """``(B, C, h, w)`` heatmaps; with ``distill = V >= 2`` the average over the first V
        transforms of :data:`DISTILL_VIEWS` (identity, flip, rotations, zooms), each
        warped back to the original frame (data distillation, Radosavovic et al. 2018)."""
        was = self.module.training
        self.module.eval()
        try:
            if distill < 2:
                return self.module(images)["heatmaps"]
            b = images.shape[0]
            acc = cnt = None
            for angle, scale, flip in DISTILL_VIEWS[:distill]:
                m = geometry.affine_matrix(self.image_size, angle=angle, scale=scale).expand(b, 3, 3)
                if flip:
                    m = geometry.compose(geometry.flip_matrix(torch.ones(b, dtype=torch.bool), self.image_size), m)
                m = m.to(images.device)
                hm = self.module(geometry.warp_images(images, m))["heatmaps"]
                inv = geometry.invert(m)
                back = geometry.warp_heatmaps(hm, inv, self.image_size)
                ones = geometry.warp_heatmaps(torch.ones_like(hm[:, :1]), inv, self.image_size)
                acc = back if acc is None else acc + back
                cnt = ones if cnt is None else cnt + ones
            return torch.where(cnt > 0.5, acc / cnt.clamp_min(1e-6), torch.zeros_like(acc))
        finally:
            self.module.train(was)

    def detect(self, images: np.ndarray | torch.Tensor, *, threshold: float, radius: int, max_points: int,
               bbox: np.ndarray | None = None, distill: int = 0, chunk: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
        """Thresholded max-pool NMS of the detector's heatmap (Mallis Eq. 4.1) on ``images``
        (``(N, H, W, 3)`` uint8 or ``(N, 3, H, W)`` float in [0, 1]); points in image px."""
        from ..keypoints import heatmap_points

        out = []
        n = len(images)
        for s in range(0, n, chunk):
            x = images[s:s + chunk]
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float().div_(255.0)
            hm = self.heatmap(x.to(self.device), distill)[:, :1].float().cpu()
            out += heatmap_points(hm, self.image_size, threshold, radius, max_points,
                                  None if bbox is None else bbox[s:s + chunk])
        return out

    def _detect_opts(self) -> dict[str, Any]:
        o = self.options
        return {"threshold": o.threshold, "radius": o.nms_radius, "max_points": o.max_points}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NMS points padded to ``max_points`` (confidence 0 marks an empty slot)."""
        dets = self.detect(images, **self._detect_opts())
        k = self.options.max_points
        pts = torch.zeros(len(dets), k, 2)
        conf = torch.zeros(len(dets), k)
        for i, (p, s) in enumerate(dets):
            pts[i, : len(p)] = torch.from_numpy(p)
            conf[i, : len(s)] = torch.from_numpy(s)
        return pts, conf

    def evaluate(self, ds: ArrayDataset, device: torch.device) -> dict[str, Any]:
        """Precision and recall of the NMS points (inside the object box grown by
        ``box_padding``, as for the pseudo-labels) against the ground truth within the
        thesis radius (8 px at 256), detections per image, and the training labels' own
        precision/recall (``pseudo_*``, measured when they were made)."""
        from ..keypoints import precision_recall

        pad = getattr(self.options, "box_padding", None)
        dets = self.detect(ds.images, **self._detect_opts(), bbox=None if pad is None else _boxes(ds, pad))
        pr = precision_recall(dets, ds.keypoints, ds.visibility, _radius(self.config, self.options))
        out: dict[str, Any] = {"precision": pr["precision"], "recall": pr["recall"],
                               "points_per_image": pr["n_detections"] / max(len(ds), 1),
                               "per_landmark_recall": [None if not np.isfinite(v) else round(float(v), 4)
                                                       for v in pr["per_landmark_recall"]]}
        out.update(self.pseudo_stats())
        return out

    def pseudo_stats(self) -> dict[str, float]:
        from ..runs import run_key

        return dict(_STATS.get(run_key(self.config), {}))


DISTILL_VIEWS: tuple[tuple[float, float, bool], ...] = (
    (0.0, 1.0, False), (0.0, 1.0, True), (15.0, 1.0, False), (-15.0, 1.0, False),
    (0.0, 0.85, False), (0.0, 1.15, False), (15.0, 1.0, True), (-15.0, 1.0, True),
)


@register
class MagicPoint(_DetectorBase):
    """A generic corner detector trained on synthetic shapes (SuperPoint's MagicPoint stage).

    ``prepare_data`` replaces the training set by ``images`` synthetic-corner images of the
    run's image size (:func:`landmark_study.keypoints.synthetic_corners`, seed 0, so every
    MagicPoint run of one size sees the same images); val/test keep the run's dataset, so
    ``final`` holds the detector's precision/recall on it.
    """

    name = "magicpoint"
    version = "1"
    loss_names = ("det",)
    default_weights = {"det": 1.0}

    @dataclass(frozen=True)
    class Options:
        images: int = spec(2000, range=(10, 100_000), help="synthetic corner images")
        threshold: float = spec(0.3, range=(0.0, 10.0), help="NMS detection threshold")
        nms_radius: int = spec(2, range=(0, 16), help="NMS window radius in heatmap px")
        max_points: int = spec(30, range=(1, 512))
        target: str = spec("gaussian", choices=("gaussian", "delta"))
        color_jitter: float = spec(0.2, range=(0.0, 1.0))
        eval_radius: float | None = spec(None, range=(0.0, None), help="px; None = 8 px at 256")

    @classmethod
    def prepare_data(cls, config: RunConfig, data: Any, device: torch.device) -> Any:
        from ..keypoints import synthetic_corners

        corners = synthetic_corners(config.options().images, seed=0, size=config.data.size)
        return dataclasses.replace(data, labeled=corners, unlabeled=None)


@register
class SelfTraining(_DetectorBase):
    """One round of Mallis et al.'s self-training (see the module docstring)."""

    name = "self_training"
    version = "1"
    loss_names = ("det",)
    default_weights = {"det": 1.0}

    @dataclass(frozen=True)
    class Options:
        stage: str = spec("detector", choices=("detector", "landmarks"))
        round: int = spec(1, range=(1, 100), help="1 = trained on the initial (generic) keypoints")
        init: str = spec("gftt", choices=INITS, help="round-1 pseudo-labels")
        init_points: int = spec(30, range=(1, 500), help="generic keypoints kept per image (ANMS)")
        box_padding: float | None = spec(0.15, range=(0.0, 2.0),
                                         help="drop points outside the object box grown by this; None = keep all")
        real_fraction: float = spec(1.0, range=(0.0, 1.0), help="noisy_gt: share of real landmarks")
        noise_px: float = spec(1.0, range=(0.0, 50.0), help="noisy_gt: std of the landmark perturbation")
        magicpoint_steps: int = spec(600, range=(1, 1_000_000))
        magicpoint_images: int = spec(2000, range=(10, 100_000))
        target: str = spec("gaussian", choices=("gaussian", "delta"))
        threshold: float = spec(0.3, range=(0.0, 10.0), help="NMS detection threshold t (Eq. 4.1)")
        nms_radius: int = spec(2, range=(0, 16), help="NMS window radius in heatmap px")
        max_points: int = spec(30, range=(1, 512), help="pseudo-labels kept per image")
        distill_from: int | None = spec(None, range=(1, 100),
                                        help="detections of rounds >= this are distilled; None = never")
        distill_views: int = spec(6, range=(2, len(DISTILL_VIEWS)))
        color_jitter: float = spec(0.2, range=(0.0, 1.0))
        eval_radius: float | None = spec(None, range=(0.0, None), help="px; None = 8 px at 256")
        # landmarks stage
        detector_rounds: int = spec(4, range=(1, 100), help="single-channel rounds before correspondence")
        detector_steps: int = spec(150, range=(1, 1_000_000), help="train.steps of those rounds")
        num_landmarks: int = spec(10, range=(1, 100), help="K: points of the template")
        template_index: int | None = spec(None, range=(0, None),
                                          help="training image used as template; None = the first with >= K points")
        cpd: str = spec("rigid", choices=("rigid", "affine"))
        cpd_w: float = spec(0.2, range=(0.0, 0.99))
        match_radius: float = spec(4.0, range=(0.0, None), help="px: accepted template-detection distance")
        min_matched: float = spec(0.5, range=(0.0, 1.0), help="images with fewer matched landmarks are dropped")
        landmark_threshold: float = spec(0.2, range=(0.0, 10.0), help="K-channel peak counted as detected")
        reg_images: int = spec(200, range=(2, 100_000), help="N of the forward/backward regressors")
        reg_repeats: int = spec(3, range=(1, 100))
        clustering_protocol: bool = spec(False, help="also report fnme/bnme exactly as the clustering chapter's "
                                                     "stage 2 does (sqrt(wh) normaliser, 5 repeats, every "
                                                     "channel's argmax), "
                                                     "for a same-data comparison")

    @property
    def is_detector(self) -> bool:  # type: ignore[override]
        return self.options.stage == "detector"

    def _channels(self) -> int:
        return 1 if self.is_detector else self.spec.num_keypoints

    # -- pseudo-labels ----------------------------------------------------------
    @classmethod
    def prepare_data(cls, config: RunConfig, data: Any, device: torch.device) -> Any:
        o = config.options()
        path = _cache_path(config)
        from ..runs import run_key

        key = run_key(config)
        if path.exists():
            z = np.load(path)
            kp, vis, keep = z["keypoints"], z["visibility"], z["keep"]
            _STATS[key] = {k[6:]: float(z[k]) for k in z.files if k.startswith("stats_")}
        else:
            kp, vis, keep = cls._make_labels(config, data.labeled, device)
            stats = _label_stats(kp, vis, keep, data.labeled, _radius(config, o))
            _STATS[key] = stats
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, keypoints=kp, visibility=vis, keep=keep, **{f"stats_{k}": v for k, v in stats.items()})
            tmp.replace(path)
        if not keep.any():
            from ..train import TrainingError

            raise TrainingError(f"{config.method} round {o.round} ({o.stage}): no training image keeps a pseudo-label "
                                "(lower method_options.min_matched / landmark_threshold)")
        lab = data.labeled.subset(np.flatnonzero(keep))
        k = kp.shape[1]
        lab = dataclasses.replace(lab, spec=pseudo_spec(k, "pseudo" if o.stage == "detector" else "landmarks"),
                                  keypoints=kp[keep].astype(np.float32), visibility=vis[keep].astype(np.float32),
                                  labels=None)
        return dataclasses.replace(data, labeled=lab, unlabeled=None)

    @classmethod
    def _make_labels(cls, config: RunConfig, ds: ArrayDataset, device: torch.device):
        from ..runs import trained_method

        o = config.options()
        n = len(ds)
        keep = np.ones(n, bool)
        box = None if o.box_padding is None else _boxes(ds, o.box_padding)
        if o.stage == "detector" and o.round == 1:
            if o.init == "noisy_gt":
                rng = np.random.default_rng([config.seed, 7])
                pts = noisy_gt_points(ds.keypoints, ds.visibility, o.real_fraction, o.noise_px, ds.image_size, rng)
                return (*pack_points(pts, o.max_points), keep)
            if o.init == "magicpoint":
                mp = trained_method(magicpoint_config(config))
                dets = mp.detect(ds.images, threshold=mp.options.threshold, radius=mp.options.nms_radius,
                                 max_points=o.init_points, bbox=box)
            else:
                from ..keypoints import detect

                dets = [detect(ds.images[i], o.init, max_points=o.init_points,
                               bbox=None if box is None else box[i]) for i in range(n)]
            return (*pack_points([d[0] for d in dets], o.max_points), keep)
        prev_cfg = previous_config(config)
        prev = trained_method(prev_cfg)
        po = prev.options
        if po.stage == "detector":
            distill = po.distill_views if (o.distill_from is not None and po.round >= o.distill_from) else 0
            dets = prev.detect(ds.images, threshold=po.threshold, radius=po.nms_radius, max_points=po.max_points,
                               bbox=box, distill=distill)
            pts = [d[0] for d in dets]
            if o.stage == "detector":
                return (*pack_points(pts, o.max_points), keep)
            return correspondence(pts, o)
        # landmarks round r > 1: confident argmax points of round r - 1
        p, c = _predict_landmarks(prev, ds.images, distill=0)
        vis = (c >= o.landmark_threshold).astype(np.float32)
        keep = vis.mean(1) >= o.min_matched
        return p.astype(np.float32), vis, keep

    # -- landmarks stage --------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_detector:
            return super().predict(images)
        hm = self.heatmap(images)
        pts, conf = heatmaps.decode_argmax(hm, subpixel=True)
        return heatmaps.heatmap_to_image(pts, self.image_size, self.heatmap_size), conf

    def evaluate(self, ds: ArrayDataset, device: torch.device) -> dict[str, Any]:
        if self.is_detector:
            return super().evaluate(ds, device)
        from ..keypoints import precision_recall
        from ..metrics import backward_nme, forward_nme
        from ..train import load_run_data

        o = self.options
        if not hasattr(self, "_reg"):
            tr = load_run_data(self.config.data).labeled
            self._reg = tr.subset(np.arange(min(len(tr), max(o.reg_images, 2))))
        tr = self._reg
        p_tr, c_tr = _predict_landmarks(self, tr.images)
        p_te, c_te = _predict_landmarks(self, ds.images)
        d_tr = np.where((c_tr >= o.landmark_threshold)[..., None], p_tr, np.nan)
        d_te = np.where((c_te >= o.landmark_threshold)[..., None], p_te, np.nan)
        norm = ds.normaliser_values()
        n_reg = min(o.reg_images, len(tr))
        out: dict[str, Any] = {}
        fwd_train = np.where(np.isfinite(d_tr), d_tr, p_tr)  # a regressor needs every input: argmax when unsure
        fwd_test = np.where(np.isfinite(d_te), d_te, p_te)
        f = forward_nme(fwd_train, tr.keypoints, fwd_test, ds.keypoints, norm, n_train=n_reg,
                        repeats=o.reg_repeats, seed=0, visibility_test=ds.visibility)
        b = backward_nme(d_tr, tr.keypoints, d_te, ds.keypoints, norm, n_train=n_reg, repeats=o.reg_repeats, seed=0)
        out["forward_nme"], out["backward_nme"] = f["mean"], b["mean"]
        if o.clustering_protocol:
            from .clustering_correspondence import regression_metrics

            # every channel's argmax, unthresholded, as stage 2 reports its landmarks
            out.update(regression_metrics(p_tr, tr, p_te, ds, n_reg, self.config.seed, "mean"))
            out["ppe"] = float(self.spec.num_keypoints)  # points per image, as stage 2 reports it
        out["detected_fraction"] = float(np.isfinite(d_te).all(-1).mean())
        rad = _radius(self.config, o)
        for mult in (1, 2, 3):
            out[f"tracked@{mult * rad:g}px"] = tracking_precision(d_te, ds.keypoints, ds.visibility, mult * rad)
        pr = precision_recall(unpack_points(np.nan_to_num(d_te), np.isfinite(d_te).all(-1)), ds.keypoints,
                              ds.visibility, rad)
        out["precision"], out["recall"] = pr["precision"], pr["recall"]
        out.update(self.pseudo_stats())
        return out

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        if self.is_detector:
            return super().training_step(labeled, unlabeled, step)
        img, kp, vis = self._augment(labeled, flip=False)  # no flip: left/right channels are unknown
        target, w = self._target(kp, vis, single=False)
        out = self.module(img)["heatmaps"]
        self.diagnostics["peak"] = float(out.detach().amax(dim=(2, 3)).mean())
        return {"det": heatmap_mse(out, target, w)}


def _boxes(ds: ArrayDataset, padding: float) -> np.ndarray:
    from ..keypoints import padded_box

    return padded_box(ds.bbox, padding, ds.image_size)


@torch.no_grad()
def _predict_landmarks(method: SelfTraining, images: np.ndarray, distill: int = 0, chunk: int = 128):
    pts, conf = [], []
    for s in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[s:s + chunk].transpose(0, 3, 1, 2))).float().div_(255.0)
        hm = method.heatmap(x.to(method.device), distill)
        p, c = heatmaps.decode_argmax(hm, subpixel=True)
        pts.append(heatmaps.heatmap_to_image(p, method.image_size, method.heatmap_size).float().cpu().numpy())
        conf.append(c.float().cpu().numpy())
    return np.concatenate(pts), np.concatenate(conf)


def choose_template(points: list[np.ndarray], k: int, index: int | None = None) -> tuple[int, np.ndarray]:
    """The template image and its ``k`` points: ``index`` if given, else the first image with at
    least ``k`` detections (detections come sorted by score, so its ``k`` strongest are kept)."""
    if index is not None:
        if not 0 <= index < len(points) or len(points[index]) < 1:
            raise ValueError(f"template_index {index} has no detections")
        return index, np.asarray(points[index][:k], np.float64)
    for i, p in enumerate(points):
        if len(p) >= k:
            return i, np.asarray(p[:k], np.float64)
    i = int(np.argmax([len(p) for p in points]))
    return i, np.asarray(points[i][:k], np.float64)


def correspondence(points: list[np.ndarray], o: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template correspondence for every image: ``(landmarks (N, K, 2), visibility (N, K), keep (N,))``.
    Every landmark of a kept image is labelled (matched detection or aligned template point);
    images with fewer than ``min_matched * K`` matches are dropped."""
    _, tpl = choose_template(points, o.num_landmarks, o.template_index)
    k = len(tpl)
    if k == 0:
        from ..train import TrainingError

        raise TrainingError("correspondence: the detector found no point in any training image "
                            "(lower method_options.threshold or train the detector rounds longer)")
    n = len(points)
    kp = np.zeros((n, k, 2), np.float32)
    vis = np.ones((n, k), np.float32)
    keep = np.zeros(n, bool)
    for i, p in enumerate(points):
        lm, matched = match_to_template(p, tpl, transform=o.cpd, w=o.cpd_w, radius=o.match_radius)
        kp[i] = lm
        keep[i] = matched.mean() >= o.min_matched if k else False
    return kp, vis, keep


def tracking_precision(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, threshold: float) -> float:
    """Mallis Fig. 4.5: each discovered landmark is matched to the ground-truth landmark it
    tracks best (Hungarian on the mean distance over images where both exist,
    :func:`landmark_study.metrics.hungarian_accuracy`); the share of its detections within
    ``threshold`` px of that landmark, averaged over the discovered landmarks."""
    from ..metrics import hungarian_accuracy

    res = hungarian_accuracy(pred, gt, vis, threshold)
    pred = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    v = np.asarray(vis) > 0
    scores = []
    for kk, m in enumerate(res["assignment"]):
        if m < 0:
            continue
        ok = np.isfinite(pred[:, m]).all(-1) & v[:, kk]
        if not ok.any():
            scores.append(0.0)
            continue
        d = np.linalg.norm(pred[ok, m] - g[ok, kk], axis=-1)
        scores.append(float((d <= threshold).mean()))
    return float(np.mean(scores)) if scores else float("nan")


def _label_stats(kp: np.ndarray, vis: np.ndarray, keep: np.ndarray, ds: ArrayDataset, radius: float) -> dict[str, float]:
    """Precision/recall of training pseudo-labels against the (hidden) ground truth."""
    from ..keypoints import precision_recall

    idx = np.flatnonzero(keep)
    pts = [kp[i][vis[i] > 0] for i in idx]
    if not len(idx):
        return {"pseudo_precision": float("nan"), "pseudo_recall": float("nan"), "pseudo_points": 0.0,
                "pseudo_images": 0.0}
    pr = precision_recall(pts, ds.keypoints[idx], ds.visibility[idx], radius)
    return {"pseudo_precision": float(pr["precision"]), "pseudo_recall": float(pr["recall"]),
            "pseudo_points": float(pr["n_detections"] / len(idx)), "pseudo_images": float(len(idx) / len(keep))}


__all__ = ["MagicPoint", "SelfTraining", "canonical", "choose_template", "correspondence", "cpd",
           "magicpoint_config", "match_to_template", "noisy_gt_points", "pack_points", "previous_config",
           "pseudo_spec", "tracking_precision", "with_steps"]
