"""Moskvyak et al. 2021, *Semi-supervised keypoint localization*, and its baselines.

* ``sc_ti_te`` -- the paper's method. The keypoint localisation network (KLN) is
  a heatmap model built with Moskvyak et al.'s feature fusion (multi-scale
  features upsampled to heatmap size, concatenated, 1x1 conv to ``C`` channels:
  ``F``) and a keypoint classification network (KCN). Keypoint representations
  are ``z_k = GMP(F * h_k)``. Losses (Eq. 5): ``sup`` (heatmap MSE on the
  labeled images), ``sc`` (Eq. 1, cross-entropy of the KCN against the keypoint
  index), ``te`` (Eq. 2, ``|| f(g(x)) - g(f(x)) ||^2`` with one random
  perspective ``g`` applied to image and heatmaps, no inverse warp) and ``ti``
  (Eq. 4, ``|| z - z' ||^2`` between the concatenated representations of ``x``
  and ``g(x)``). Each unsupervised loss has a switch (Table 2 ablation) and the
  ground-truth heatmaps replace the predicted ones for labeled images in the
  unsupervised losses unless ``gt_heatmaps`` is off (Table 4).
  ``unlabeled_fraction`` keeps a nested share of the unlabeled pool (Table 3).
* ``elt_heatmap`` -- Honari et al.'s equivariant landmark transformation as a
  baseline on the same network: the supervised loss plus
  ``|| g(L(x)) - L(g(x)) ||^2`` on soft-argmax landmarks (normalised by the image
  side), with the same perspective ``g``.
* ``pseudo_label`` -- Radosavovic et al.'s data distillation: the supervised run
  with the same config is the teacher (:func:`landmark_study.runs.trained_method`);
  it labels the unlabeled images by multi-transform inference (scales x flip,
  heatmaps mapped back and averaged); keypoints whose averaged peak is below
  ``threshold`` are dropped; a student is then trained from scratch on labeled
  + pseudo-labeled images.

The Jakab et al. conditional-generation baseline of the paper's Table 1 is
``generation`` (:mod:`landmark_study.methods.generation`).

:func:`keypoint_representations_fast` computes the same values as
:func:`landmark_study.losses.keypoint_representations` with a sparse backward
pass (the gradient of a max reaches only its argmax), about ten times faster on
the CPU than differentiating through the dense ``(B, K, C, h, w)`` product.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .. import geometry, heatmaps
from ..losses import elt_loss, heatmap_mse, sc_loss, te_loss, ti_loss
from ..models import build_model
from . import register
from .base import Batch
from .supervised import HeatmapMethod, Supervised


# ---------------------------------------------------------------------------
# keypoint representations
# ---------------------------------------------------------------------------

class _GlobalMaxOfProduct(torch.autograd.Function):
    """``z[b,k,c] = max_p F[b,c,p] * H[b,k,p]`` with a sparse backward pass."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:  # (B,C,P), (B,K,P)
        zs, ids = [], []
        for k in range(maps.shape[1]):  # one keypoint at a time keeps the product in cache
            z, i = (feats * maps[:, k:k + 1]).max(dim=-1)
            zs.append(z)
            ids.append(i)
        z, idx = torch.stack(zs, 1), torch.stack(ids, 1)  # (B, K, C)
        ctx.save_for_backward(feats, maps, idx)
        return z

    @staticmethod
    def backward(ctx, gz: torch.Tensor):
        feats, maps, idx = ctx.saved_tensors
        g_feats = g_maps = None
        if ctx.needs_input_grad[0]:
            h_at = maps.gather(2, idx)  # H[b, k, idx[b,k,c]]
            g_feats = torch.zeros_like(feats).scatter_add_(2, idx.transpose(1, 2), (gz * h_at).transpose(1, 2))
        if ctx.needs_input_grad[1]:
            f_at = feats.gather(2, idx.transpose(1, 2)).transpose(1, 2)  # F[b, c, idx[b,k,c]]
            g_maps = torch.zeros_like(maps).scatter_add_(2, idx, gz * f_at)
        return g_feats, g_maps


def keypoint_representations_fast(features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``z_k = GMP(F * h_k)``, (B, K, C); the values of :func:`losses.keypoint_representations`.

    ``features`` (B, C, h, w) and ``maps`` (B, K, h, w) at the same size. At ties the
    whole gradient goes to the first maximum (a valid subgradient; ``amax`` splits it).
    """
    if features.ndim != 4 or maps.ndim != 4 or features.shape[0] != maps.shape[0] \
            or features.shape[-2:] != maps.shape[-2:]:
        raise ValueError(f"features (B, C, h, w) and heatmaps (B, K, h, w) must share batch and size, "
                         f"got {tuple(features.shape)} and {tuple(maps.shape)}")
    b, c = features.shape[:2]
    k = maps.shape[1]
    maps = maps.to(features.dtype)
    return _GlobalMaxOfProduct.apply(features.reshape(b, c, -1), maps.reshape(b, k, -1))


def representation_metrics(z: np.ndarray, visibility: np.ndarray, neighbours: int = 5, seed: int = 0) -> dict[str, float]:
    """How well keypoint representations group by keypoint identity.

    ``z`` (N, K, C), ``visibility`` (N, K); only visible keypoints count. Returns
    ``repr_knn``: leave-one-out ``neighbours``-nearest-neighbour accuracy of the
    keypoint index (Euclidean, majority vote, ties to the nearest), and
    ``repr_nmi``: NMI between K-means (K clusters) and the keypoint index.
    Chance level of ``repr_knn`` is about 1/K.
    """
    from sklearn.cluster import KMeans

    from ..metrics import knn_accuracy, nmi

    n, k, c = z.shape
    keep = np.asarray(visibility).reshape(-1) > 0
    x = np.asarray(z, dtype=np.float64).reshape(-1, c)[keep]
    y = np.tile(np.arange(k), n)[keep]
    if len(x) <= neighbours:
        return {"repr_knn": float("nan"), "repr_nmi": float("nan")}
    knn = knn_accuracy(x, y, neighbours)
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    return {"repr_knn": knn, "repr_nmi": nmi(labels, y)}


# ---------------------------------------------------------------------------
# the paper's method
# ---------------------------------------------------------------------------

def _nested_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """First ``ceil(fraction * n)`` of a seeded permutation: nested across fractions."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:max(1, int(math.ceil(fraction * n)))])


@register
class SemanticConsistency(HeatmapMethod):
    """Moskvyak et al. 2021: L = l1 sup + l2 SC + l3 TE + l4 TI (Eq. 5)."""

    name = "sc_ti_te"
    version = "1"
    loss_names = ("sup", "sc", "te", "ti")
    default_weights = {"sup": 1e3, "sc": 0.5, "te": 1e2, "ti": 1e2}  # the paper's (l1, l2, l3, l4)
    uses_unlabeled = True

    @dataclass(frozen=True)
    class Options:
        sc: bool = True
        te: bool = True
        ti: bool = True
        gt_heatmaps: bool = True  # ground-truth heatmaps for labeled images in the unsupervised losses
        fused_channels: int = 32  # C of the fused feature map F (paper: 64 at HRNet-32)
        kcn_hidden: Optional[int] = None  # None: one linear layer (the paper's "input and output layer")
        distortion: float = 0.15  # perspective corner jitter, fraction of the side (< 0.25)
        unlabeled_fraction: float = 1.0  # share of the unlabeled pool kept (Table 3)
        repr_images: int = 100  # images used for the representation metrics at each evaluation

        def validate(self) -> None:
            from ..config import ConfigError

            if not 0.0 <= self.distortion < 0.25:
                raise ConfigError(f"method_options.distortion: {self.distortion} not in [0, 0.25)")
            if not 0.0 < self.unlabeled_fraction <= 1.0:
                raise ConfigError(f"method_options.unlabeled_fraction: {self.unlabeled_fraction} not in (0, 1]")
            if self.fused_channels < 1 or self.repr_images < 1:
                raise ConfigError("method_options.fused_channels and repr_images must be >= 1")
            if self.kcn_hidden is not None and self.kcn_hidden < 1:
                raise ConfigError("method_options.kcn_hidden must be None or >= 1")

    def build(self) -> nn.Module:
        m, o = self.config.model, self.options
        return build_model(m.name, self.spec.num_keypoints, width=m.width, heatmap_stride=m.heatmap_stride,
                           fused_channels=o.fused_channels, kcn_hidden=o.kcn_hidden, **m.options)

    @classmethod
    def prepare_data(cls, config: Any, data: Any, device: torch.device) -> Any:
        f = config.options().unlabeled_fraction
        if f >= 1.0 or data.unlabeled is None:
            return data
        keep = _nested_subset(len(data.unlabeled), f, config.data.split_seed + 7919)
        return dataclasses.replace(data, unlabeled=data.unlabeled.subset(keep))

    # -- pieces ---------------------------------------------------------------
    def _augment_images(self, images: torch.Tensor) -> torch.Tensor:
        m, _ = self.sample_augmentation(images.shape[0])
        return geometry.warp_images(images, m)

    def _perspective(self, batch: int) -> torch.Tensor:
        return geometry.sample_perspective(batch, self.image_size, distortion=self.options.distortion,
                                           generator=self.generator).to(self.device)

    def representations(self, images: torch.Tensor, chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """(z (B, K, C), KCN logits (B, K, K)) from the predicted heatmaps, eval mode, no grad."""
        was = self.module.training
        self.module.eval()
        zs, ls = [], []
        with torch.no_grad():
            for s in range(0, images.shape[0], chunk):
                out = self.module(images[s:s + chunk])
                z = keypoint_representations_fast(out["fused"], out["heatmaps"])
                zs.append(z)
                ls.append(self.module.kcn(z))
        self.module.train(was)
        return torch.cat(zs), torch.cat(ls)

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        img_l, kp, vis = self.augment(labeled.images, labeled.keypoints, labeled.visibility)
        target, w = self.targets(kp, vis)
        bl = img_l.shape[0]
        x = img_l if unlabeled is None else torch.cat([img_l, self._augment_images(unlabeled.images)])
        b = x.shape[0]
        view = o.te or o.ti
        if view:
            g = self._perspective(b)
            out = self.module(torch.cat([x, geometry.warp_images(x, g)]))
        else:
            out = self.module(x)
        hm = out["heatmaps"]
        h = hm[:b]
        losses: dict[str, torch.Tensor] = {"sup": heatmap_mse(h[:bl], target, w)}
        # heatmaps the unsupervised losses use: ground truth for the labeled rows (Sec. 4.2)
        H = torch.cat([target, h[bl:]]) if o.gt_heatmaps else h
        if view:
            hg = hm[b:]
            gH = geometry.warp_heatmaps(H, g, self.image_size)
            Hg = torch.cat([gH[:bl], hg[bl:]]) if o.gt_heatmaps else hg
        if o.te:
            losses["te"] = te_loss(hg, gH)
        if o.sc or o.ti:
            fused = out["fused"]
            z = keypoint_representations_fast(fused[:b], H)
            if o.sc:
                logits = self.module.kcn(z)
                sw = torch.ones(b, h.shape[1], device=h.device)
                if o.gt_heatmaps:  # an invisible joint has an all-zero target map: no representation
                    sw = torch.cat([(w > 0).to(sw.dtype), sw[bl:]])
                losses["sc"] = sc_loss(logits, sw)
                with torch.no_grad():
                    if b > bl:
                        self.diagnostics["kcn_acc_unlabeled"] = float(
                            (logits[bl:].argmax(-1) == torch.arange(h.shape[1], device=h.device)).float().mean())
            if o.ti:
                zg = keypoint_representations_fast(fused[b:], Hg)
                losses["ti"] = ti_loss(z, zg)
                self.diagnostics["z_norm"] = float(z.detach().flatten(1).norm(dim=1).mean())
        with torch.no_grad():
            self.diagnostics["peak_labeled"] = float(h[:bl].amax(dim=(2, 3)).mean())
            if b > bl:
                self.diagnostics["peak_unlabeled"] = float(h[bl:].amax(dim=(2, 3)).mean())
        return losses

    def evaluate(self, ds: Any, device: torch.device) -> dict[str, Any]:
        from ..train import _Tensors, evaluate

        out = evaluate(self, ds, device)
        sub = ds.subset(np.arange(min(self.options.repr_images, len(ds))))
        t = _Tensors(sub, device)
        z, logits = self.representations(t.batch(torch.arange(t.n)).images)
        vis = sub.visibility
        k = z.shape[1]
        correct = (logits.argmax(-1).cpu().numpy() == np.arange(k)[None]) & (vis > 0)
        out["kcn_acc"] = float(correct.sum() / max((vis > 0).sum(), 1))
        out.update(representation_metrics(z.cpu().numpy(), vis))
        return out


# ---------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------

@register
class EltHeatmap(HeatmapMethod):
    """Supervised heatmaps + Honari et al.'s ELT on soft-argmax landmarks (baseline of Table 1).

    Weights: the supervised heatmap MSE at the SC/TI/TE method's 1e3 and ELT (in units of the
    image side squared) at 10, chosen on validation PCK@0.1 (figures, 1% labels, seed 0, 800
    steps) from {1, 10, 100}: 0.627 / 0.630 / 0.614 at the last evaluation. Version 1 weighted
    both terms 1, i.e. ELT 10^4 times stronger relative to the heatmap loss; that baseline fell to
    PCK@0.1 0.27 against 0.65 for supervised training, a broken baseline rather than evidence.
    """

    name = "elt_heatmap"
    version = "2"
    loss_names = ("sup", "elt")
    default_weights = {"sup": 1e3, "elt": 10.0}
    uses_unlabeled = True

    @dataclass(frozen=True)
    class Options:
        distortion: float = 0.15  # the same perspective law as sc_ti_te
        beta: float = 20.0  # soft-argmax sharpness on the raw heatmaps (peak ~1)
        labeled_too: bool = True  # apply ELT to the labeled images as well

        def validate(self) -> None:
            from ..config import ConfigError

            if not 0.0 <= self.distortion < 0.25:
                raise ConfigError(f"method_options.distortion: {self.distortion} not in [0, 0.25)")
            if self.beta <= 0:
                raise ConfigError(f"method_options.beta: {self.beta} must be > 0")

    def _points(self, hm: torch.Tensor) -> torch.Tensor:
        p = heatmaps.soft_argmax(hm, beta=self.options.beta)
        return heatmaps.heatmap_to_image(p, self.image_size, self.heatmap_size)

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        img_l, kp, vis = self.augment(labeled.images, labeled.keypoints, labeled.visibility)
        target, w = self.targets(kp, vis)
        bl = img_l.shape[0]
        parts = [img_l]
        if unlabeled is not None:
            m, _ = self.sample_augmentation(unlabeled.images.shape[0])
            parts.append(geometry.warp_images(unlabeled.images, m))
        x = torch.cat(parts)
        b = x.shape[0]
        g = geometry.sample_perspective(b, self.image_size, distortion=o.distortion,
                                        generator=self.generator).to(self.device)
        hm = self.module(torch.cat([x, geometry.warp_images(x, g)]))["heatmaps"]
        losses = {"sup": heatmap_mse(hm[:bl], target, w)}
        lo = 0 if o.labeled_too else bl
        p = self._points(hm[lo:b])
        pg = self._points(hm[b + lo:])
        gm = g[lo:]
        with torch.no_grad():  # landmarks leaving the frame under g cannot be compared (Honari's caveat)
            inside = geometry.inside_frame(geometry.warp_points(p, gm), self.image_size).to(p.dtype)
        side = torch.full((p.shape[0],), float(max(self.image_size)), device=p.device)
        losses["elt"] = elt_loss(pg, p, gm, weights=inside, normaliser=side)
        self.diagnostics["peak_labeled"] = float(hm[:bl].detach().amax(dim=(2, 3)).mean())
        return losses


@register
class PseudoLabel(Supervised):
    """Radosavovic et al. 2018 data distillation: teacher = the supervised run of the same config."""

    name = "pseudo_label"
    version = "1"
    loss_names = ("sup",)
    default_weights = {"sup": 1.0}

    @dataclass(frozen=True)
    class Options:
        threshold: float = 0.5  # keep a pseudo keypoint if its averaged heatmap peak reaches this
        scales: tuple[float, ...] = (0.85, 1.0, 1.15)  # multi-transform inference (each with and without flip)

        def validate(self) -> None:
            from ..config import ConfigError

            if not self.scales or min(self.scales) <= 0:
                raise ConfigError(f"method_options.scales: {self.scales} must be positive and non-empty")

    _pending: dict[str, float] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.diagnostics.update(type(self)._pending)

    @staticmethod
    def teacher_config(config: Any) -> Any:
        """The supervised run this student distils (same data, model, schedule, seed)."""
        return config.with_overrides(method="supervised", method_options={}, loss_weights={})

    @classmethod
    def pseudo_labels(cls, teacher: Any, ds: Any, scales: tuple[float, ...], device: torch.device,
                      chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Multi-transform inference: (points (N, K, 2) image px, averaged peak (N, K))."""
        from ..train import _Tensors

        t = _Tensors(ds, device)
        size = teacher.image_size
        perm = torch.as_tensor(teacher.spec.flip_permutation(), device=device)
        pts, conf = [], []
        teacher.module.eval()
        with torch.no_grad():
            for s in range(0, t.n, chunk):
                img = t.batch(torch.arange(s, min(s + chunk, t.n))).images
                n = img.shape[0]
                acc = None
                for sc in scales:
                    for flip in (False, True):
                        m = geometry.affine_matrix(size, angle=torch.zeros(n, dtype=torch.float64),
                                                   scale=torch.full((n,), sc, dtype=torch.float64),
                                                   translation=torch.zeros(n, 2, dtype=torch.float64),
                                                   shear=torch.zeros(n, 2, dtype=torch.float64)).to(device)
                        if flip:
                            m = geometry.compose(m, geometry.flip_matrix(torch.ones(n, dtype=torch.bool), size).to(device))
                        hm = teacher.module(geometry.warp_images(img, m))["heatmaps"]
                        if flip:
                            hm = hm[:, perm]
                        hm = geometry.warp_heatmaps(hm, geometry.invert(m), size)
                        acc = hm if acc is None else acc + hm
                avg = acc / (2 * len(scales))
                p, c = heatmaps.decode_argmax(avg, subpixel=True)
                pts.append(heatmaps.heatmap_to_image(p, size, avg.shape[-2:]).cpu().numpy())
                conf.append(c.cpu().numpy())
        return np.concatenate(pts), np.concatenate(conf)

    @classmethod
    def prepare_data(cls, config: Any, data: Any, device: torch.device) -> Any:
        from ..metrics import pck
        from ..runs import trained_method

        if data.unlabeled is None:
            return data
        o = config.options()
        teacher = trained_method(cls.teacher_config(config), device=device)
        pts, conf = cls.pseudo_labels(teacher, data.unlabeled, tuple(o.scales), device)
        vis = ((conf >= o.threshold) & np.isfinite(pts).all(-1)).astype(np.float32)
        u = data.unlabeled
        truth = (u.visibility > 0)
        r = pck(pts, u.keypoints, truth.astype(np.float32), u.normaliser_values(), alpha=0.1)
        kept = (vis > 0) & truth
        correct = np.linalg.norm(pts - u.keypoints, axis=-1) <= 0.1 * u.normaliser_values()[:, None]
        cls._pending = {"pl_pck@0.1_all": float(r["mean"]), "pl_kept": float(vis.mean()),
                        "pl_pck@0.1_kept": float(correct[kept].mean()) if kept.any() else float("nan")}
        pseudo = dataclasses.replace(u, keypoints=pts.astype(np.float32), visibility=vis)
        lab = data.labeled
        union = dataclasses.replace(
            lab,
            images=np.concatenate([lab.images, pseudo.images]),
            keypoints=np.concatenate([lab.keypoints, pseudo.keypoints]),
            visibility=np.concatenate([lab.visibility, pseudo.visibility]),
            bbox=np.concatenate([lab.bbox, pseudo.bbox]),
            labels=None if lab.labels is None or pseudo.labels is None else np.concatenate([lab.labels, pseudo.labels]),
            meta={k: np.concatenate([lab.meta[k], pseudo.meta[k]]) for k in lab.meta if k in pseudo.meta},
        )
        return dataclasses.replace(data, labeled=union, unlabeled=None)
