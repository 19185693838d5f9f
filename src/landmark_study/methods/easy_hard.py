"""Easy-hard augmentation, Joint Cutout, dual networks and the pseudo-label baselines
of Xie et al. 2021 (sections 4 and 5).

All methods here extend :class:`~landmark_study.methods.consistency.Consistency`
(one shared flip, then an *easy* teacher view and a *hard* student view of every
unlabeled image; the teacher's heatmaps mapped into the student view are the
student's target, MSE, the teacher branch detached):

* ``easy_hard`` -- "Ours (Single)": the same network at the current step is
  teacher (easy view, "Affine 30") and student (hard view, "Affine 60" plus the
  ``hard`` photometric/occlusion operations). With ``teacher: fixed`` it is
  **PseudoPose** (Eq. 8): a supervised run of the same data, model and schedule,
  trained first (``runs.trained_method``), labels the easy view, and a fresh
  network learns from it on the hard view.
* ``easy_hard_dual`` -- "Ours (Dual)" (sec. 4.2, Eq. 6-7): two networks, each
  taught on its hard view by the *other* network's detached easy view; both are
  updated in the same step (one optimiser, one backward). ``predict`` (and so
  every metric the loop logs) is network 1; :meth:`DualEasyHard.evaluate` also
  logs network 2 (``net2/<metric>``) and the two-network average
  (``avg/<metric>``, the paper's reported number). The partner may have another
  architecture (``partner_model``, ``partner_width``; Table 2).
* ``data_distill`` -- **DataDistill** (Radosavovic et al. 2018, as Xie et al.
  define it in sec. 5): a supervised teacher (the same run as PseudoPose's)
  predicts heatmaps for several fixed augmentations of every unlabeled image;
  they are mapped back to the image, *summed*, decoded into keypoints once
  (:meth:`DataDistill.prepare_data`) and re-rendered as Gaussians of
  ``train.sigma`` in the student's (hard) view.

Hard operations (``hard``, applied to the student view only, after its affine):

* ``ra``: RandAugment-style colour operations (Cubuk et al. 2020, the photometric
  subset: the geometric ones are the affine's job): ``ra_ops`` operations per
  image drawn uniformly from :data:`RA_OPS`, each at strength ``ra_magnitude``
  (a fraction of its largest range, random sign for the enhance-type ops).
* ``jc``: Joint Cutout (sec. 4.1): ``jc_joints`` joints drawn with replacement
  from the *teacher's* predicted peaks (in Dual: the other network's; in
  DataDistill: the pseudo-labels), centre perturbed by ``N(0, (jc_noise H)^2)``,
  half-size per axis uniform in ``jc_half_size`` x H, filled with the ImageNet
  mean colour ("0 after normalisation" in the authors' code). As in the authors'
  code the rectangles are drawn in the easy (teacher) view and carried into the
  hard view by the same transform as the teacher's heatmaps (here the mask, not
  the image, is warped, so the hard image is resampled once as in every other arm).
  Defaults: the authors' 5 joints, half-sizes 10-19 px and noise 10 px at input
  height 256, as fractions of the height.

``labeled_aug: hard`` gives the labeled stream the hard augmentation too (the
affine "Affine 60" and the ``hard`` operations, Joint Cutout around the
ground-truth joints): with ``loss_weights.cons = 0`` that is "hard augmentation
in supervised training" (sec. 6.2).

``ramp_up`` multiplies the consistency term by ``exp(-5 (1 - t)^2)``,
``t = step / (ramp_up * steps)`` clipped to 1 (Laine & Aila's ramp), a remedy
the collapse chapter's preliminary measurements asked to test.

Extra diagnostics: ``mass_target`` (sum over pixels of the student's target
heatmap, mean over joints: a warped teacher map zoomed by ``s`` grows by ``s^2``,
a fresh Gaussian of ``train.sigma`` has ``2 pi sigma^2``) and ``mass_labeled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import geometry, heatmaps
from ..config import ConfigError, spec
from ..losses import consistency_loss, heatmap_mse
from ..models import build_model
from . import register
from .base import Batch
from .consistency import IMAGENET_MEAN, Consistency, ViewPair, joint_cutout

HARD_OPS = ("ra", "jc")
RA_OPS = ("identity", "autocontrast", "brightness", "color", "contrast", "posterize", "solarize", "sharpness")


# ---------------------------------------------------------------------------
# hard operations (pure functions, tested on their own)
# ---------------------------------------------------------------------------

def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: ``b + factor (a - b)`` (factor 1 = ``a``), clipped to [0, 1]."""
    return (b + factor[:, None, None, None] * (a - b)).clamp(0.0, 1.0)


def _grey(images: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).expand_as(images)


def ra_op(images: torch.Tensor, op: str, magnitude: torch.Tensor) -> torch.Tensor:
    """One RandAugment colour operation on ``images (B, 3, H, W)`` in [0, 1].

    ``magnitude (B,)`` in [-1, 1] (its sign matters only for the enhance-type
    operations): brightness/color/contrast/sharpness use the enhancement factor
    ``1 + 0.9 m``; solarize inverts pixels above ``1 - |m|``; posterize keeps
    ``8 - round(4 |m|)`` bits; autocontrast stretches each channel to [0, 1].
    """
    m = magnitude.to(images.dtype).to(images.device)
    if op == "identity":
        return images
    if op == "brightness":
        return _blend(images, torch.zeros_like(images), 1.0 + 0.9 * m)
    if op == "color":
        return _blend(images, _grey(images), 1.0 + 0.9 * m)
    if op == "contrast":
        mean = _grey(images).mean(dim=(1, 2, 3), keepdim=True).expand_as(images)
        return _blend(images, mean, 1.0 + 0.9 * m)
    if op == "sharpness":
        k = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=images.dtype,
                         device=images.device) / 13.0
        blurred = torch.nn.functional.conv2d(images, k.expand(3, 1, 3, 3).contiguous(), padding=1, groups=3)
        blurred = blurred.clone()
        blurred[..., 0, :], blurred[..., -1, :] = images[..., 0, :], images[..., -1, :]
        blurred[..., :, 0], blurred[..., :, -1] = images[..., :, 0], images[..., :, -1]
        return _blend(images, blurred, 1.0 + 0.9 * m)
    if op == "solarize":
        thr = (1.0 - m.abs())[:, None, None, None]
        return torch.where(images >= thr, 1.0 - images, images)
    if op == "posterize":
        bits = (8 - torch.round(4 * m.abs())).clamp(1, 8)
        q = (2.0 ** (8 - bits))[:, None, None, None]
        return torch.floor(torch.round(images * 255.0) / q) * q / 255.0
    if op == "autocontrast":
        lo = images.amin(dim=(2, 3), keepdim=True)
        hi = images.amax(dim=(2, 3), keepdim=True)
        scale = torch.where(hi > lo, 1.0 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
        return torch.where(hi > lo, (images - lo) * scale, images).clamp(0.0, 1.0)
    raise ValueError(f"unknown RandAugment operation {op!r}; known: {', '.join(RA_OPS)}")


def rand_augment(images: torch.Tensor, n_ops: int = 2, magnitude: float = 0.5, ops: tuple[str, ...] = RA_OPS,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """RandAugment (colour subset): ``n_ops`` operations per image, uniform over ``ops``,
    strength ``magnitude`` in [0, 1] with a random sign. Returns new images."""
    if not 0.0 <= magnitude <= 1.0:
        raise ValueError(f"magnitude must be in [0, 1], got {magnitude}")
    b = images.shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    out = images
    for _ in range(n_ops):
        pick = torch.randint(len(ops), (b,), generator=generator, device=gdev).cpu()
        sign = torch.where(torch.rand(b, generator=generator, device=gdev).cpu() < 0.5, -1.0, 1.0)
        mag = magnitude * sign
        new = out.clone()
        for i, op in enumerate(ops):
            sel = (pick == i).nonzero().flatten()
            if len(sel) == 0 or op == "identity":
                continue
            sel_d = sel.to(images.device)
            new[sel_d] = ra_op(out[sel_d], op, mag[sel])
        out = new
    return out


def joint_cutout_mask(points: torch.Tensor, size: tuple[int, int], n_joints: int, half_size: tuple[float, float],
                      noise: float, visibility: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint Cutout rectangles as a mask ``(B, 1, H, W)`` (1 inside) and their boxes."""
    b = points.shape[0]
    blank = torch.zeros(b, 1, *size)
    return joint_cutout(blank, points, n_joints, half_size=half_size, noise=noise, fill=(1.0,),
                        visibility=visibility, generator=generator)


def apply_mask(images: torch.Tensor, mask: torch.Tensor, fill: tuple[float, ...] = IMAGENET_MEAN) -> torch.Tensor:
    """Fill ``images`` where ``mask > 0.5`` with the colour ``fill``."""
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    return torch.where(mask.to(images.device) > 0.5, fill_t.expand_as(images), images)


def gaussian_targets(points: torch.Tensor, image_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float,
                     height: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussians of ``sigma`` (heatmap px) at image-pixel ``points (B, K, 2)``, peak ``height`` (1)."""
    hm_pts = heatmaps.image_to_heatmap(points, image_size, heatmap_size)
    g, _ = heatmaps.encode_gaussian(hm_pts, heatmap_size, sigma)
    if height is not None:
        g = g * height[..., None, None].to(g.dtype)
    return g


def ramp(step: int, steps: int, fraction: float) -> float:
    """Consistency weight ramp-up ``exp(-5 (1 - t)^2)``, ``t = step / (fraction steps)`` in [0, 1]; 1 if off."""
    if fraction <= 0:
        return 1.0
    t = min(1.0, step / max(1.0, fraction * steps))
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


# ---------------------------------------------------------------------------
# Single (and PseudoPose with teacher: fixed)
# ---------------------------------------------------------------------------

@register
class EasyHard(Consistency):
    """Ours (Single): easy teacher view -> hard student view (+ RandAugment / Joint Cutout)."""

    name = "easy_hard"
    version = "1"

    @dataclass(frozen=True)
    class Options(Consistency.Options):
        teacher_aug: str = spec("easy", choices=("none", "easy", "hard"), help="augmentation of the teacher view")
        student_aug: str = spec("hard", choices=("none", "easy", "hard"), help="affine of the student view")
        hard: tuple[str, ...] = spec((), choices=HARD_OPS, help="extra hard operations on the student view")
        ra_ops: int = spec(2, range=(0, 8), help="RandAugment: operations per image")
        ra_magnitude: float = spec(0.5, range=(0.0, 1.0), help="RandAugment: strength, fraction of each range")
        jc_joints: int = spec(5, range=(0, 100), help="Joint Cutout: joints drawn with replacement")
        jc_half_size: tuple[float, float] = spec((10 / 256, 19 / 256), range=(0.0, 1.0),
                                                 help="Joint Cutout half-size per axis, fraction of image height")
        jc_noise: float = spec(10 / 256, range=(0.0, 1.0), help="Joint Cutout centre noise sd, fraction of height")
        labeled_aug: str = spec("standard", choices=("standard", "hard"),
                                help="hard: labeled images get the hard affine and the hard operations too")
        ramp_up: float = spec(0.0, range=(0.0, 1.0), help="fraction of steps of the consistency ramp-up (0 = off)")

        def validate(self) -> None:
            super().validate()
            lo, hi = self.jc_half_size
            if not 0 <= lo <= hi:
                raise ConfigError(f"jc_half_size: {self.jc_half_size!r} must satisfy 0 <= lo <= hi")

    # -- hard operations -----------------------------------------------------
    def _jc_params(self) -> tuple[tuple[float, float], float]:
        h = self.image_size[0]
        lo, hi = self.options.jc_half_size
        return (lo * h, hi * h), self.options.jc_noise * h

    def cutout_mask(self, points: torch.Tensor, M: torch.Tensor | None = None,
                    visibility: torch.Tensor | None = None) -> torch.Tensor:
        """Joint Cutout mask drawn around ``points`` (px of some view A), carried into the
        target view by ``M`` (A -> target; None = the same view)."""
        half, noise = self._jc_params()
        mask, _ = joint_cutout_mask(points.detach().float().cpu(), self.image_size, self.options.jc_joints, half,
                                    noise, visibility=visibility, generator=self.generator)
        mask = mask.to(self.device)
        if M is not None:
            mask = geometry.warp_images(mask, M)
        return (mask > 0.5).float()

    def harden(self, images: torch.Tensor, jc_points: torch.Tensor | None = None, M: torch.Tensor | None = None,
               visibility: torch.Tensor | None = None) -> torch.Tensor:
        """The ``hard`` operations: RandAugment, then Joint Cutout around ``jc_points`` (view A, carried by ``M``)."""
        o = self.options
        if "ra" in o.hard and o.ra_ops > 0:
            images = rand_augment(images, o.ra_ops, o.ra_magnitude, generator=self.generator)
        if "jc" in o.hard and jc_points is not None and o.jc_joints > 0:
            images = apply_mask(images, self.cutout_mask(jc_points, M, visibility))
        return images

    def peaks(self, teacher_heatmaps: torch.Tensor) -> torch.Tensor:
        """Image-pixel argmax of each heatmap (the teacher's coarse keypoints)."""
        pts, _ = heatmaps.decode_argmax(teacher_heatmaps.detach(), subpixel=True)
        return heatmaps.heatmap_to_image(pts, self.image_size, self.heatmap_size)

    def perturb_student(self, views: ViewPair, teacher_heatmaps: torch.Tensor) -> ViewPair:
        if not self.options.hard:
            return views
        pts = self.peaks(teacher_heatmaps) if "jc" in self.options.hard else None
        student = self.harden(views.student_images, pts, views.teacher_to_student)
        return ViewPair(views.teacher_images, student, views.M_teacher, views.M_student, dict(views.extra))

    # -- labeled stream ------------------------------------------------------
    def sample_augmentation(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.options.labeled_aug != "hard":
            return super().sample_augmentation(batch)
        o, a = self.options, self.config.train.augment
        aff = geometry.sample_affine(batch, self.image_size, rotation=o.hard_rotation, scale=o.hard_scale,
                                     translation=a.translation, generator=self.generator)
        flip, flipped = geometry.sample_flip(batch, self.image_size, p=a.flip, generator=self.generator)
        return geometry.compose(aff, flip).to(self.device), flipped.to(self.device)

    def augmented_labeled(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img, kp, vis = self.augment(batch.images, batch.keypoints, batch.visibility)
        if self.options.labeled_aug == "hard":
            img = self.harden(img, kp, None, visibility=vis)
        return img, kp, vis

    def supervised_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, kp, vis = self.augmented_labeled(batch)
        target, weight = self.targets(kp, vis)
        out = self.module(img)
        self._mass_labeled = float(out["heatmaps"].detach().clamp_min(0).sum(dim=(2, 3)).mean())
        return heatmap_mse(out["heatmaps"], target, weight), out

    # -- consistency ---------------------------------------------------------
    def teacher_targets(self, teacher_heatmaps, views):
        target, joint_w, pixel_w = super().teacher_targets(teacher_heatmaps, views)
        self._mass_target = float(target.detach().clamp_min(0).sum(dim=(2, 3)).mean())
        return target, joint_w, pixel_w

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        self._mass_target = None
        losses = super().training_step(labeled, unlabeled, step)
        r = ramp(step, self.config.train.steps, self.options.ramp_up)
        if "cons" in losses and r != 1.0:
            losses["cons"] = losses["cons"] * r
        extra = {"mass_labeled": self._mass_labeled, "ramp": r}
        if self._mass_target is not None:
            extra["mass_target"] = self._mass_target
        self._publish(extra, step)
        return losses

    def _publish(self, extra: dict[str, float], step: int) -> None:
        """Window-average ``extra`` like the base diagnostics (after_step already ran)."""
        for k, v in extra.items():
            self._extra_window.setdefault(k, []).append(v)
        if self.is_log_step(step):
            self.diagnostics.update({k: float(np.mean(v)) for k, v in self._extra_window.items() if v})
            self._extra_window = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._extra_window: dict[str, list[float]] = {}
        self._mass_labeled = 0.0
        self._mass_target: float | None = None


# ---------------------------------------------------------------------------
# Dual networks
# ---------------------------------------------------------------------------

@register
class DualEasyHard(EasyHard):
    """Ours (Dual): two networks teach each other, easy view -> the other's hard view."""

    name = "easy_hard_dual"
    version = "1"

    @dataclass(frozen=True)
    class Options(EasyHard.Options):
        partner_model: str | None = spec(None, help="network 2's backbone (None: model.name)")
        partner_width: int | None = spec(None, range=(4, 512), help="network 2's width (None: model.width)")
        sup_average: bool = spec(True, help="L_sup = 0.5 (L_sup1 + L_sup2) as the authors' code; False: the sum")

        def validate(self) -> None:
            super().validate()
            if self.teacher != "same":
                raise ConfigError(f"teacher: the dual networks teach each other; got {self.teacher!r} (use 'same')")
            if not self.stop_gradient:
                raise ConfigError("stop_gradient: the dual model passes gradients only through the hard views")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.module2 = self.build_partner().to(self.device)

    def build_partner(self) -> nn.Module:
        m, o = self.config.model, self.options
        name = o.partner_model or m.name
        opts = dict(m.options) if name == m.name else {}
        return build_model(name, self.spec.num_keypoints, width=o.partner_width or m.width,
                           heatmap_stride=m.heatmap_stride, **opts)

    def parameters(self):
        return list(self.module.parameters()) + list(self.module2.parameters())

    def state_dict(self) -> dict[str, Any]:
        s = super().state_dict()
        s["module2"] = self.module2.state_dict()
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "module2" in state:
            self.module2.load_state_dict(state["module2"])

    def _both(self, images: torch.Tensor, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(grad):
            return self.module(images)["heatmaps"], self.module2(images)["heatmaps"]

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        self.module.train()
        self.module2.train()
        img, kp, vis = self.augmented_labeled(labeled)
        target, weight = self.targets(kp, vis)
        h1, h2 = self._both(img, True)
        sup = heatmap_mse(h1, target, weight) + heatmap_mse(h2, target, weight)
        losses = {"sup": 0.5 * sup if o.sup_average else sup}
        info = {"peak_labeled": float(h1.detach().amax(dim=(2, 3)).mean()),
                "mass_labeled": float(h1.detach().clamp_min(0).sum(dim=(2, 3)).mean())}
        lam = self.loss_weights().get("cons", 1.0)
        if unlabeled is not None and (lam > 0 or self.is_log_step(step)):
            grad = lam > 0
            views = self.make_views(unlabeled)
            e1, e2 = self._both(views.teacher_images, False)  # teacher signals: detached
            M = views.teacher_to_student
            student = views.student_images
            if "ra" in o.hard and o.ra_ops > 0:
                student = rand_augment(student, o.ra_ops, o.ra_magnitude, generator=self.generator)
            s1 = s2 = student
            if "jc" in o.hard and o.jc_joints > 0:  # each network's hard image masked by the OTHER's peaks
                s1 = apply_mask(student, self.cutout_mask(self.peaks(e2), M))
                s2 = apply_mask(student, self.cutout_mask(self.peaks(e1), M))
            with torch.set_grad_enabled(grad):
                hh1 = self.module(s1)["heatmaps"]
                hh2 = self.module2(s2)["heatmaps"]
            t1, _, _ = super(EasyHard, self).teacher_targets(e2, views)  # target of network 1 from network 2
            t2, _, _ = super(EasyHard, self).teacher_targets(e1, views)
            cons = consistency_loss(hh1, t1) + consistency_loss(hh2, t2)
            if grad:
                losses["cons"] = cons * ramp(step, self.config.train.steps, o.ramp_up)
            info.update({"peak_teacher": float(e1.amax(dim=(2, 3)).mean()),
                         "peak_teacher2": float(e2.amax(dim=(2, 3)).mean()),
                         "peak_student": float(hh1.detach().amax(dim=(2, 3)).mean()),
                         "mass_teacher": float(e1.clamp_min(0).sum(dim=(2, 3)).mean()),
                         "mass_target": float(t1.detach().clamp_min(0).sum(dim=(2, 3)).mean()),
                         "kept": 1.0})
        self.after_step(step, info)
        return losses

    def evaluate(self, ds: Any, device: torch.device) -> dict[str, Any]:
        """Network 1's metrics (plain keys), network 2's (``net2/``) and their mean (``avg/``)."""
        out = super().evaluate(ds, device)
        net1 = self.module
        self.module = self.module2
        try:
            from ..train import evaluate

            out2 = evaluate(self, ds, device)
        finally:
            self.module = net1
        for k, v in out2.items():
            if isinstance(v, (int, float)) and isinstance(out.get(k), (int, float)):
                out[f"net2/{k}"] = float(v)
                out[f"avg/{k}"] = 0.5 * (float(out[k]) + float(v))
        return out


# ---------------------------------------------------------------------------
# DataDistill
# ---------------------------------------------------------------------------

def distill_transforms(n: int, size: tuple[int, int], scales: tuple[float, ...], flip: bool
                       ) -> list[tuple[torch.Tensor, bool]]:
    """The fixed test-time augmentations of DataDistill: every scale, with and without a flip."""
    out = []
    for s in scales:
        for f in ((False, True) if flip else (False,)):
            M = geometry.affine_matrix(size, scale=float(s)).expand(n, 3, 3)
            if f:
                M = geometry.compose(M, geometry.flip_matrix(torch.ones(n, dtype=torch.bool), size))
            out.append((M.contiguous(), f))
    return out


@torch.no_grad()
def distill_heatmaps(module: nn.Module, images: torch.Tensor, image_size: tuple[int, int], scales: tuple[float, ...],
                     flip: bool, flip_perm: np.ndarray) -> torch.Tensor:
    """Sum over the transforms of the teacher's heatmaps mapped back into the original image
    (flipped predictions have their left/right channels swapped back)."""
    total = None
    perm = torch.as_tensor(flip_perm, dtype=torch.long, device=images.device)
    for M, flipped in distill_transforms(images.shape[0], image_size, scales, flip):
        M = M.to(images.device)
        hm = module(geometry.warp_images(images, M))["heatmaps"]
        back = geometry.warp_heatmaps(hm, geometry.invert(M), image_size)
        if flipped:
            back = back[:, perm]
        total = back if total is None else total + back
    return total


@register
class DataDistill(EasyHard):
    """DataDistill: ensembled pseudo-keypoints of a fixed supervised teacher, as Gaussian targets."""

    name = "data_distill"
    version = "1"

    @dataclass(frozen=True)
    class Options(EasyHard.Options):
        teacher: str = spec("fixed", choices=("fixed",), help="the supervised run labels the unlabeled set")
        distill_scales: tuple[float, ...] = spec((0.8, 1.0, 1.2), range=(0.1, 10.0),
                                                 help="test-time scales of the ensemble")
        distill_flip: bool = spec(True, help="add the horizontally flipped version of every scale")

    @classmethod
    def prepare_data(cls, config: Any, data: Any, device: torch.device) -> Any:
        """Replace the unlabeled set's keypoints by the ensemble's pseudo-keypoints (the
        ground truth of the unlabeled images is then never seen by the method)."""
        from ..runs import trained_method

        if data.unlabeled is None:
            return data
        o = config.options()
        teacher = trained_method(cls.fixed_teacher_config(config), device=device)
        net = teacher.module.eval()
        ds = data.unlabeled
        size = ds.image_size
        hm_size = (size[0] // config.model.heatmap_stride, size[1] // config.model.heatmap_stride)
        pts_all, conf_all = [], []
        for s in range(0, len(ds), 256):
            imgs = torch.from_numpy(np.ascontiguousarray(ds.images[s:s + 256].transpose(0, 3, 1, 2))).float()
            imgs = imgs.div_(255.0).to(device)
            total = distill_heatmaps(net, imgs, size, tuple(o.distill_scales), o.distill_flip,
                                     ds.spec.flip_permutation())
            pts, conf = heatmaps.decode_argmax(total, subpixel=True)
            pts_all.append(heatmaps.heatmap_to_image(pts, size, hm_size).cpu().numpy())
            conf_all.append(conf.cpu().numpy() / (len(o.distill_scales) * (2 if o.distill_flip else 1)))
        pseudo = np.concatenate(pts_all).astype(np.float32)
        meta = dict(ds.meta)
        meta["distill_confidence"] = np.concatenate(conf_all).astype(np.float32)
        unl = replace(ds, keypoints=pseudo, visibility=np.ones(pseudo.shape[:2], np.float32), meta=meta)
        return replace(data, unlabeled=unl)

    def unsupervised_loss(self, unlabeled: Batch, step: int, grad: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        views = self.make_views(unlabeled)
        pts = unlabeled.keypoints  # the pseudo-keypoints of prepare_data, original-image px
        student = views.student_images
        o = self.options
        if "ra" in o.hard and o.ra_ops > 0:
            student = rand_augment(student, o.ra_ops, o.ra_magnitude, generator=self.generator)
        if "jc" in o.hard and o.jc_joints > 0:
            student = apply_mask(student, self.cutout_mask(pts, views.M_student))
        h_s = self.student_forward(student, grad=grad)
        target = gaussian_targets(geometry.warp_points(pts, views.M_student), self.image_size, self.heatmap_size,
                                  self.config.train.sigma)
        self._mass_target = float(target.sum(dim=(2, 3)).mean())
        loss = consistency_loss(h_s, target)
        return loss, {"peak_student": float(h_s.detach().amax(dim=(2, 3)).mean())}
