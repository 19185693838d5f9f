"""Consistency-based semi-supervised heatmap regression, with the switches of Xie et al. 2021.

One method, ``consistency``, covers the paper's section 3 (the collapsing problem)
and its failed attempts (section 6.3). For every unlabeled image a *teacher view*
and a *student view* are drawn (independent affine warps of the image after one
shared horizontal flip); the teacher's heatmaps are mapped into the student view
(``T_{t->s} = M_s inv(M_t)``, zero padding) and the student is pulled towards them
with :func:`~landmark_study.losses.consistency_loss`:
``L = L_sup + lambda * L_cons``, lambda being ``loss_weights.cons``.

Switches (``method_options``):

* ``teacher_aug`` / ``student_aug``: ``none`` (the original image), ``easy``
  ("Affine 30": rotation uniform in +-30 deg, scale in [0.75, 1.25]) or ``hard``
  ("Affine 60": +-60 deg, [0.5, 1.5]); the ranges are options too.
* ``stop_gradient``: detach the teacher branch (the paper's key ingredient).
* ``teacher``: ``same`` network at the current step, ``ema`` of the student
  (``ema_decay``; Mean Teacher) or ``fixed``: a supervised run of the same data,
  model and schedule, trained first (a pseudo-labeller that never changes).
* ``confidence_threshold``: joints whose teacher peak is below it are left out
  of the consistency loss (failed attempts A1-A4).
* ``reweight_gain``: foreground re-weighting (failed attempt C): each pixel's
  squared difference is weighted by ``1 + gain * clamp(teacher, 0, 1)``.
* ``target``: ``warp`` the teacher heatmaps (the paper), or re-render a
  ``gaussian`` of ``train.sigma`` at the teacher's mapped peak, with the peak
  value as its height (a remedy to the widening of warped targets).
* ``perturbations``: extra evaluation under fixed perturbations of the
  evaluation images (``affine30``, ``affine60``, ``jc5``, ``affine60+jc5``),
  logged as ``pck@0.1/<name>`` (Fig. 5 left: which augmentation is "easy").

Diagnostics (the loop logs them as ``diag/*`` at every evaluation): mean peak
response (max over each heatmap, mean over joints and images) on the labeled
images (``peak_labeled``), on the unlabeled teacher view (``peak_teacher``) and
the student view (``peak_student``), each averaged over the steps since the last
evaluation; the teacher heatmaps' mass (``mass_teacher``, sum over pixels, mean
over joints); the fraction of joints above the threshold (``kept``); and the
collapse indicators ``collapse_ratio`` (``peak_teacher`` now over its maximum
since the burn-in, 1 during burn-in) and ``collapsed_at`` (the first evaluation
step with a ratio below :data:`COLLAPSE_RATIO`; ``train.steps`` when none,
a censored value).

With ``loss_weights.cons = 0`` the method is the supervised baseline; the
unlabeled views are then only passed forward (without gradients) at the steps
whose diagnostics are logged, so the baseline's response curves are comparable.

Extension points (for subclasses such as easy-hard with Joint Cutout, dual
networks): :meth:`Consistency.view_matrices`, :meth:`Consistency.make_views`,
:meth:`Consistency.perturb_student`, :meth:`Consistency.teacher_forward`,
:meth:`Consistency.student_forward`, :meth:`Consistency.teacher_targets`,
:meth:`Consistency.unsupervised_loss` and :meth:`Consistency.after_step`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import geometry, heatmaps
from ..config import ConfigError, spec
from ..losses import consistency_loss
from . import register
from .base import Batch
from .supervised import HeatmapMethod

COLLAPSE_RATIO = 0.25
"""A run has *collapsed* when its final unlabeled (teacher-view) peak response is
below this fraction of its maximum after the burn-in."""

PERTURBATIONS = ("none", "affine30", "affine60", "jc5", "affine60+jc5")
IMAGENET_MEAN = (0.485, 0.456, 0.406)


@dataclass
class ViewPair:
    """Two views of a batch of unlabeled images.

    ``M_teacher``/``M_student`` map original-image pixels to each view's pixels;
    ``extra`` is free for subclasses (e.g. Joint Cutout boxes).
    """

    teacher_images: torch.Tensor
    student_images: torch.Tensor
    M_teacher: torch.Tensor
    M_student: torch.Tensor
    extra: dict[str, Any]

    @property
    def teacher_to_student(self) -> torch.Tensor:
        return geometry.relative(self.M_teacher, self.M_student)


def joint_cutout(images: torch.Tensor, points: torch.Tensor, n_joints: int = 5,
                 half_size: tuple[float, float] = (3.0, 6.0), noise: float = 2.5,
                 fill: tuple[float, ...] = IMAGENET_MEAN, visibility: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint Cutout (Xie et al. 2021, sec. 4.1): mask ``n_joints`` rectangles around keypoints.

    For each image, ``n_joints`` joints are drawn with replacement (among visible
    ones when ``visibility`` is given); each rectangle is centred at the joint
    (image px) plus ``N(0, noise^2)`` px, with half-sizes per axis uniform in
    ``half_size`` px, and filled with ``fill`` (the ImageNet mean colour: "0
    after normalisation" in the authors' code). Returns ``(images, boxes
    (B, n, 4) as x0, y0, x1, y1)``. Images are not modified in place.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    if points.shape[:1] != (b,) or points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, K, 2) with B={b}, got {tuple(points.shape)}")
    if n_joints < 0:
        raise ValueError(f"n_joints must be >= 0, got {n_joints}")
    k = points.shape[1]
    gdev = generator.device if generator is not None else torch.device("cpu")
    prob = torch.ones(b, k) if visibility is None else (visibility.detach().float().cpu() > 0).float()
    prob = torch.where(prob.sum(1, keepdim=True) > 0, prob, torch.ones_like(prob))
    out = images.clone()
    if n_joints == 0:
        return out, torch.zeros(b, 0, 4)
    idx = torch.multinomial(prob.to(gdev), n_joints, replacement=True, generator=generator).cpu()
    centre = points.detach().float().cpu()[torch.arange(b)[:, None], idx]
    centre = centre + noise * torch.randn(b, n_joints, 2, generator=generator, device=gdev).cpu()
    lo, hi = half_size
    half = lo + (hi - lo) * torch.rand(b, n_joints, 2, generator=generator, device=gdev).cpu()
    boxes = torch.cat([centre - half, centre + half], dim=-1)
    ys = torch.arange(h, dtype=torch.float32)[None, None, :, None]
    xs = torch.arange(w, dtype=torch.float32)[None, None, None, :]
    inside = ((xs >= boxes[..., 0, None, None]) & (xs <= boxes[..., 2, None, None])
              & (ys >= boxes[..., 1, None, None]) & (ys <= boxes[..., 3, None, None])).any(dim=1)  # (B, H, W)
    inside = inside.to(images.device)[:, None]
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    if fill_t.shape[1] not in (1, c):
        raise ValueError(f"fill must have 1 or {c} values, got {len(fill)}")
    out = torch.where(inside, fill_t.expand(b, c, h, w), out)
    return out, boxes


@register
class Consistency(HeatmapMethod):
    """Supervised JointsMSE + lambda x teacher/student heatmap consistency on unlabeled images."""

    name = "consistency"
    version = "1"
    loss_names = ("sup", "cons")
    default_weights = {"sup": 1.0, "cons": 1.0}
    uses_unlabeled = True

    @dataclass(frozen=True)
    class Options:
        teacher_aug: str = spec("easy", choices=("none", "easy", "hard"),
                                help="augmentation of the teacher view")
        student_aug: str = spec("easy", choices=("none", "easy", "hard"),
                                help="augmentation of the student view")
        easy_rotation: float = spec(30.0, range=(0.0, 180.0), help="'easy' rotation, uniform in +-deg")
        easy_scale: tuple[float, float] = spec((0.75, 1.25), range=(0.05, 10.0))
        hard_rotation: float = spec(60.0, range=(0.0, 180.0), help="'hard' rotation, uniform in +-deg")
        hard_scale: tuple[float, float] = spec((0.5, 1.5), range=(0.05, 10.0))
        flip: float = spec(0.5, range=(0.0, 1.0), help="probability of one horizontal flip shared by both views")
        stop_gradient: bool = spec(True, help="detach the teacher branch")
        teacher: str = spec("same", choices=("same", "ema", "fixed"))
        ema_decay: float = spec(0.99, range=(0.0, 1.0), help="theta' <- a theta' + (1 - a) theta")
        confidence_threshold: float = spec(0.0, range=(0.0, 1.0),
                                           help="keep a joint in L_cons only if its teacher peak exceeds this")
        reweight_gain: float = spec(0.0, range=(0.0, 1e4),
                                    help="pixel weight 1 + gain * teacher response (0 = off)")
        target: str = spec("warp", choices=("warp", "gaussian"))
        collapse_burnin: float = spec(0.1, range=(0.0, 1.0),
                                      help="fraction of steps before the response maximum is tracked")
        perturbations: tuple[str, ...] = spec((), choices=PERTURBATIONS,
                                              help="extra evaluation under these perturbations")

        def validate(self) -> None:
            for name in ("easy_scale", "hard_scale"):
                lo, hi = getattr(self, name)
                if not 0 < lo <= hi:
                    raise ConfigError(f"{name}: {getattr(self, name)!r} must satisfy 0 < lo <= hi")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        o = self.options
        self.teacher_module: nn.Module | None = None
        if o.teacher == "ema":
            self.teacher_module = copy.deepcopy(self.module)
            for p in self.teacher_module.parameters():
                p.requires_grad_(False)
        self._fixed_loaded = False
        self._window: dict[str, list[float]] = {}
        self._max_response = 0.0
        self._collapsed_at: float | None = None

    # -- views ---------------------------------------------------------------
    def _preset(self, which: str) -> tuple[float, tuple[float, float]]:
        o = self.options
        if which == "easy":
            return o.easy_rotation, o.easy_scale
        if which == "hard":
            return o.hard_rotation, o.hard_scale
        return 0.0, (1.0, 1.0)

    def view_matrices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M_teacher, M_student)``: one shared flip, then an independent affine per view."""
        flip_m = self.shared_flip(n)
        mats = []
        for which in (self.options.teacher_aug, self.options.student_aug):
            rot, scale = self._preset(which)
            aff = geometry.sample_affine(n, self.image_size, rotation=rot, scale=scale, generator=self.generator)
            mats.append(geometry.compose(flip_m, aff).to(self.device))
        return mats[0], mats[1]

    def shared_flip(self, n: int) -> torch.Tensor:
        """Flip matrices applied to the image before both views (no left/right renaming needed)."""
        M, _ = geometry.sample_flip(n, self.image_size, p=self.options.flip, generator=self.generator)
        return M

    def make_views(self, unlabeled: Batch) -> ViewPair:
        M_t, M_s = self.view_matrices(unlabeled.images.shape[0])
        return ViewPair(teacher_images=geometry.warp_images(unlabeled.images, M_t),
                        student_images=geometry.warp_images(unlabeled.images, M_s),
                        M_teacher=M_t, M_student=M_s, extra={})

    def perturb_student(self, views: ViewPair, teacher_heatmaps: torch.Tensor) -> ViewPair:
        """Hook to harden the student view once the teacher's heatmaps are known
        (Joint Cutout masks around the teacher's peaks). Default: unchanged."""
        return views

    # -- forward passes ------------------------------------------------------
    def _fixed_teacher(self) -> nn.Module:
        if not self._fixed_loaded:
            from ..runs import trained_method

            t = trained_method(self.fixed_teacher_config(self.config), device=self.device)
            self.teacher_module = t.module
            for p in self.teacher_module.parameters():
                p.requires_grad_(False)
            self._fixed_loaded = True
        return self.teacher_module

    @staticmethod
    def fixed_teacher_config(config):
        """The supervised run used as a fixed teacher: same data, model, schedule and seed."""
        return config.with_overrides(**{"method": "supervised", "method_options": {}, "loss_weights": {},
                                        "train.unlabeled_batch_size": 0})

    def teacher_forward(self, images: torch.Tensor, grad: bool) -> torch.Tensor:
        """Teacher heatmaps on the teacher view (graph kept only when ``grad``)."""
        o = self.options
        if o.teacher == "same":
            net, train_mode = self.module, True
        elif o.teacher == "ema":
            net, train_mode = self.teacher_module, True
        else:
            net, train_mode = self._fixed_teacher(), False
        net.train(train_mode)
        if grad and o.teacher == "same":
            return net(images)["heatmaps"]
        with torch.no_grad():
            return net(images)["heatmaps"]

    def student_forward(self, images: torch.Tensor, grad: bool = True) -> torch.Tensor:
        if grad:
            return self.module(images)["heatmaps"]
        with torch.no_grad():
            return self.module(images)["heatmaps"]

    # -- targets -------------------------------------------------------------
    def teacher_targets(self, teacher_heatmaps: torch.Tensor, views: ViewPair
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Map the teacher's heatmaps into the student view.

        Returns ``(target (B,K,h,w), joint_weights (B,K) or None, pixel_weights
        (B,K,h,w) or None)``; the confidence threshold and the foreground
        re-weighting are applied here.
        """
        o = self.options
        M = views.teacher_to_student
        if o.target == "warp":
            target = geometry.warp_heatmaps(teacher_heatmaps, M, self.image_size)
        else:
            pts, conf = heatmaps.decode_argmax(teacher_heatmaps, subpixel=True)
            img_pts = heatmaps.heatmap_to_image(pts, self.image_size, self.heatmap_size)
            img_pts = geometry.warp_points(img_pts, M)
            hm_pts = heatmaps.image_to_heatmap(img_pts, self.image_size, self.heatmap_size)
            g, _ = heatmaps.encode_gaussian(hm_pts, self.heatmap_size, self.config.train.sigma)
            target = g * conf.clamp(0.0, 1.0)[..., None, None]
        joint_w = None
        if o.confidence_threshold > 0:
            peak = teacher_heatmaps.detach().amax(dim=(2, 3))
            joint_w = (peak > o.confidence_threshold).to(target.dtype)
        pixel_w = None
        if o.reweight_gain > 0:
            pixel_w = 1.0 + o.reweight_gain * target.detach().clamp(0.0, 1.0)
        return target, joint_w, pixel_w

    def unsupervised_loss(self, unlabeled: Batch, step: int, grad: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        """``L_cons`` on one unlabeled batch and its diagnostics."""
        o = self.options
        views = self.make_views(unlabeled)
        with_grad_teacher = grad and not o.stop_gradient
        h_t = self.teacher_forward(views.teacher_images, grad=with_grad_teacher)
        views = self.perturb_student(views, h_t.detach())
        h_s = self.student_forward(views.student_images, grad=grad)
        target, joint_w, pixel_w = self.teacher_targets(h_t, views)
        loss = consistency_loss(h_s, target, joint_w, stop_gradient=o.stop_gradient, pixel_weights=pixel_w)
        info = {"peak_teacher": float(h_t.detach().amax(dim=(2, 3)).mean()),
                "peak_student": float(h_s.detach().amax(dim=(2, 3)).mean()),
                "mass_teacher": float(h_t.detach().clamp_min(0).sum(dim=(2, 3)).mean()),
                "kept": 1.0 if joint_w is None else float(joint_w.mean())}
        return loss, info

    # -- the step ------------------------------------------------------------
    def before_step(self, step: int) -> None:
        """Update the EMA teacher from the student's current weights (one step of lag:
        the loop applies the optimiser after ``training_step``)."""
        if self.options.teacher != "ema":
            return
        a = self.options.ema_decay
        with torch.no_grad():
            for pt, ps in zip(self.teacher_module.parameters(), self.module.parameters()):
                pt.mul_(a).add_(ps.detach(), alpha=1.0 - a)
            for bt, bs in zip(self.teacher_module.buffers(), self.module.buffers()):
                bt.copy_(bs)

    def after_step(self, step: int, info: dict[str, float]) -> None:
        """Accumulate diagnostics; publish them at the steps the loop logs."""
        for k, v in info.items():
            self._window.setdefault(k, []).append(v)
        t = self.config.train
        done = step + 1
        if not (done % t.eval_every == 0 or done == t.steps):
            return
        diag = {k: float(np.mean(v)) for k, v in self._window.items() if v}
        self._window = {}
        if "peak_teacher" in diag:
            r = diag["peak_teacher"]
            if done >= self.options.collapse_burnin * t.steps:
                self._max_response = max(self._max_response, r)
                ratio = r / self._max_response if self._max_response > 0 else 1.0
            else:
                ratio = 1.0
            if self._collapsed_at is None and ratio < COLLAPSE_RATIO:
                self._collapsed_at = float(done)
            diag["collapse_ratio"] = float(ratio)
            diag["collapsed_at"] = float(t.steps if self._collapsed_at is None else self._collapsed_at)
        self.diagnostics.update(diag)

    def is_log_step(self, step: int) -> bool:
        t = self.config.train
        return (step + 1) % t.eval_every == 0 or step + 1 == t.steps

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        self.module.train()
        self.before_step(step)
        sup, out = self.supervised_loss(labeled)
        info = {"peak_labeled": float(out["heatmaps"].detach().amax(dim=(2, 3)).mean())}
        losses = {"sup": sup}
        lam = self.loss_weights().get("cons", 1.0)
        if unlabeled is not None and lam > 0:
            cons, extra = self.unsupervised_loss(unlabeled, step, grad=True)
            losses["cons"] = cons
            info.update(extra)
        elif unlabeled is not None and self.is_log_step(step):
            _, extra = self.unsupervised_loss(unlabeled, step, grad=False)
            info.update(extra)
        self.module.train()
        self.after_step(step, info)
        return losses

    # -- state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = super().state_dict()
        if self.options.teacher == "ema":
            s["teacher"] = self.teacher_module.state_dict()
        s["diag_state"] = {"max_response": torch.tensor(self._max_response),
                           "collapsed_at": torch.tensor(-1.0 if self._collapsed_at is None else self._collapsed_at)}
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.options.teacher == "ema" and "teacher" in state:
            self.teacher_module.load_state_dict(state["teacher"])
        d = state.get("diag_state")
        if d is not None:
            self._max_response = float(d["max_response"])
            c = float(d["collapsed_at"])
            self._collapsed_at = None if c < 0 else c

    # -- evaluation ----------------------------------------------------------
    def evaluate(self, ds: Any, device: torch.device) -> dict[str, Any]:
        out = super().evaluate(ds, device)
        for name in self.options.perturbations:
            out[f"pck@0.1/{name}"] = perturbed_pck(self, ds, name, device)
        return out


def perturb(images: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor, kind: str,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply a named perturbation (Fig. 5 left) to images and ground truth.

    ``affine30``/``affine60``: rotation uniform in +-30/60 deg, scale in
    [0.75, 1.25]/[0.5, 1.5] about the centre; ``jc5``: Joint Cutout on 5 joints
    drawn among the visible ones; ``affine60+jc5``: both. Returns ``(images,
    keypoints, visibility, scale (B,))``; ``scale`` multiplies the PCK normaliser.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    b = images.shape[0]
    size = tuple(images.shape[-2:])
    scale = torch.ones(b)
    if kind.startswith("affine"):
        rot, sc = (30.0, (0.75, 1.25)) if kind.startswith("affine30") else (60.0, (0.5, 1.5))
        M, params = geometry.sample_affine(b, size, rotation=rot, scale=sc, generator=generator, return_params=True)
        images = geometry.warp_images(images, M.to(images.device))
        keypoints, visibility = geometry.warp_keypoints(keypoints, visibility, M.to(images.device), size)
        scale = params["scale"].float()
    if kind.endswith("jc5"):
        half = (3.0 * size[0] / 64.0, 6.0 * size[0] / 64.0)
        images, _ = joint_cutout(images, keypoints, 5, half_size=half, noise=2.5 * size[0] / 64.0,
                                 visibility=visibility, generator=generator)
    return images, keypoints, visibility, scale


@torch.no_grad()
def perturbed_pck(method, ds: Any, kind: str, device: torch.device, alpha: float = 0.1, seed: int = 12345,
                  chunk: int = 256) -> float:
    """PCK@alpha of ``method`` on ``ds`` under perturbation ``kind`` (fixed seed: the same
    perturbed images for every model). The normaliser scales with the affine's zoom."""
    from ..metrics import pck

    gen = torch.Generator().manual_seed(seed)
    imgs = torch.from_numpy(np.ascontiguousarray(ds.images.transpose(0, 3, 1, 2))).float().div_(255.0)
    kp = torch.from_numpy(ds.keypoints.astype(np.float32))
    vis = torch.from_numpy(ds.visibility.astype(np.float32))
    norm = torch.from_numpy(ds.normaliser_values())
    preds, gts, viss, norms = [], [], [], []
    for s in range(0, imgs.shape[0], chunk):
        sl = slice(s, s + chunk)
        im, k2, v2, sc = perturb(imgs[sl], kp[sl], vis[sl], kind, gen)
        p, _ = method.predict(im.to(device))
        preds.append(p.float().cpu().numpy())
        gts.append(k2.numpy())
        viss.append(v2.numpy())
        norms.append((norm[sl] * sc.double()).numpy())
    r = pck(np.concatenate(preds), np.concatenate(gts), np.concatenate(viss), np.concatenate(norms), alpha=alpha)
    return float(r["mean"])
