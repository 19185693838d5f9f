"""Honari et al. 2018: sequential multitasking (Seq-MT), ELT, and the two
multitask baselines of their Table 1 (Comm-MT, Heatmap-MT).

Seq-MT (their Fig. 1 and 2)
    A localiser made of convolutions only (no pooling; see ``stride`` below)
    ends in ``K`` maps; soft-argmax (Eq. 1, temperature ``beta``) turns each map
    into a point, and the *points alone* feed a small MLP (FC ``hidden`` -> classes)
    that predicts the image's class. Losses (Eq. 2): ``lm`` -- squared pixel
    distance to the ground-truth landmarks on labeled images, averaged over
    landmarks (``lambda / (S K) sum ||L~ - L||^2``); ``attr`` -- cross-entropy of
    the class on every training image (labeled and unlabeled: all carry a class);
    ``elt`` -- ``alpha / K sum ||T(L(I)) - L(T(I))||^2`` on images *without*
    landmark labels only (the paper's Blocks protocol), T a small random affine
    map; the weight decay ``gamma`` is ``train.weight_decay``. Gradients of ELT
    flow into both predictions (Eq. 2 has no stop-gradient).

Comm-MT (Fig. 5)
    Convolutions with max-pooling, a shared FC layer, then two branches: FC ->
    ``2K`` coordinates (regressed with the same ``lm`` loss) and FC -> classes.

Heatmap-MT (Fig. 6)
    The same full-resolution localiser as Seq-MT; landmarks are trained with the
    log-likelihood of a spatial softmax at the ground-truth pixel (the rounded
    landmark) and read out by argmax, so they live on the pixel grid. The maps
    *before* the softmax go through pooling + convolutions + FC to the classes.

Evaluation (:meth:`_SeqMTBase.evaluate`): ``err_px`` (mean Euclidean pixel error
over visible landmarks, Table 1's metric), ``err_px_<k>`` per landmark,
``acc`` (class accuracy, methods with a classifier), PCK@0.1, and on *Shapes*
``on_shape_*``: the fraction of images whose soft-argmax point lies on or within
``near_px`` pixels of its shape (the landmark-to-shape assignment is the one of
the two that fits the set best: with no landmark labels the order is arbitrary).

``stride`` (an option of the two full-resolution localisers): 1 is the paper's
net (every layer at input resolution); 2 runs the first convolution with stride
2, the dilated stack at half resolution and upsamples (bilinear) before the two
1x1 convolutions, so the landmark maps are again at input resolution. It is the
CPU stand-in (4x fewer multiply-adds); the chapter says where it is used.

The landmark-labeled subset is re-drawn *class-balanced* (Honari, footnote 1) in
:meth:`_SeqMTBase.prepare_data` when ``balanced`` is set: the same number of
labels, split as evenly as possible over the classes, drawn from the data's
``split_seed``; every method of this module sees the same labeled images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import geometry
from ..config import spec as _s
from ..data.sample import ArrayDataset
from ..heatmaps import soft_argmax
from ..losses import elt_loss
from . import register
from .base import Batch, Method

__all__ = ["SeqMT", "CommMT", "HeatmapMT", "FullResLocaliser", "SeqMTNet", "CommMTNet", "HeatmapMTNet",
           "balanced_labeled", "normalise_points", "on_shape_fractions", "landmark_loss", "heatmap_nll"]


# ----------------------------------------------------------------------------- networks


def _check_options(o: Any) -> None:
    from ..config import ConfigError

    if len(o.dilations) < 1:
        raise ConfigError("dilations: at least one convolution is needed")
    if o.kernel % 2 != 1:
        raise ConfigError(f"kernel: must be odd, got {o.kernel}")


class FullResLocaliser(nn.Module):
    """Convolutions without pooling ending in ``K`` maps at input resolution.

    ``len(dilations)`` convolutions of ``kernel x kernel`` (the i-th with dilation
    ``dilations[i]``, padding keeping the size), each followed by BatchNorm and
    ReLU, then two 1x1 convolutions (``width -> width -> K``), as the paper's Fig. 2
    (``C x n`` then two 1x1). ``stride=2``: the first convolution has stride 2 and
    the features are upsampled back to the input size before the 1x1 convolutions.
    """

    def __init__(self, k: int, width: int, kernel: int, dilations: tuple[int, ...], stride: int = 1,
                 in_ch: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_ch
        for i, d in enumerate(dilations):
            s = stride if i == 0 else 1
            pad = d * (kernel - 1) // 2
            layers += [nn.Conv2d(c, width, kernel, stride=s, padding=pad, dilation=d, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        self.body = nn.Sequential(*layers)
        self.stride = stride
        self.head = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, k, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        if self.stride != 1:
            f = F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(f)


def normalise_points(pts: torch.Tensor, size: tuple[int, int] | torch.Size, mode: str = "none") -> torch.Tensor:
    """The classifier's input: the points ``(B, K, 2)`` in pixels, made parameter-free comparable.

    ``"none"``: mapped to ``[-1, 1]`` by the image size (the paper: raw landmarks
    into the MLP); ``"centre"``: minus their mean, times ``4 / size`` (invariant
    to translation, bounded gradients); ``"centre_scale"``: minus their mean,
    divided by their RMS distance to it (also scale-invariant, but the gradient
    grows as ``1 / RMS`` when the points bunch together, as they do at
    initialisation). Rotation is left to the MLP."""
    if mode == "none":
        h, w = size
        scale = torch.tensor([w - 1, h - 1], dtype=pts.dtype, device=pts.device)
        return 2 * pts / scale - 1
    if mode == "centre":
        h, w = size
        return (pts - pts.mean(dim=1, keepdim=True)) * (4.0 / max(h, w))
    if mode == "centre_scale":
        c = pts - pts.mean(dim=1, keepdim=True)
        rms = c.pow(2).sum(-1).mean(-1).clamp_min(1e-6).sqrt()
        return c / rms[:, None, None]
    raise ValueError(f"point_norm must be 'none', 'centre' or 'centre_scale', got {mode!r}")


class SeqMTNet(nn.Module):
    """Localiser -> soft-argmax points -> MLP on the points (the landmark bottleneck)."""

    def __init__(self, k: int, num_classes: int, width: int, kernel: int, dilations: tuple[int, ...],
                 stride: int, beta: float, hidden: tuple[int, ...] = (40,), point_norm: str = "none"):
        super().__init__()
        self.localiser = FullResLocaliser(k, width, kernel, dilations, stride)
        self.beta = beta
        self.point_norm = point_norm
        self.classifier = None
        if num_classes > 0:
            layers: list[nn.Module] = []
            c = 2 * k
            for h in hidden:
                layers += [nn.Linear(c, h), nn.ReLU(inplace=True)]
                c = h
            self.classifier = nn.Sequential(*layers, nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.localiser(x)
        pts = soft_argmax(maps, self.beta)  # (B, K, 2) in pixels of x
        out = {"maps": maps, "points": pts}
        if self.classifier is not None:
            out["logits"] = self.classifier(normalise_points(pts, x.shape[-2:], self.point_norm).flatten(1))
        return out


class CommMTNet(nn.Module):
    """Conv + max-pool stages, a shared FC layer, two FC branches (points, classes)."""

    def __init__(self, k: int, num_classes: int, width: int, image_size: tuple[int, int], stages: int, fc: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i in range(stages):
            w = width * 2 ** i
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        h, w_ = image_size
        for _ in range(stages):
            h, w_ = h // 2, w_ // 2
        self.shared = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w_, fc), nn.ReLU(inplace=True))
        self.points = nn.Linear(fc, 2 * k)
        self.classifier = nn.Linear(fc, num_classes) if num_classes > 0 else None
        self.k = k

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.shared(self.features(x))
        h, w = x.shape[-2:]
        scale = torch.tensor([w - 1, h - 1], dtype=z.dtype, device=z.device)
        # the branch regresses points in [-1, 1]; map to pixels
        pts = (self.points(z).view(-1, self.k, 2) + 1) * scale / 2
        out = {"points": pts}
        if self.classifier is not None:
            out["logits"] = self.classifier(z)
        return out


class HeatmapMTNet(nn.Module):
    """Full-resolution localiser; its maps (before the softmax) -> pool/conv stages -> FC -> classes."""

    def __init__(self, k: int, num_classes: int, width: int, kernel: int, dilations: tuple[int, ...], stride: int,
                 image_size: tuple[int, int], stages: int, fc: int):
        super().__init__()
        self.localiser = FullResLocaliser(k, width, kernel, dilations, stride)
        self.classifier = None
        if num_classes > 0:
            layers: list[nn.Module] = []
            c = k
            for _ in range(stages):
                layers += [nn.MaxPool2d(2), nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
                c = width
            h, w = image_size
            for _ in range(stages):
                h, w = h // 2, w // 2
            layers += [nn.Flatten(), nn.Linear(c * h * w, fc), nn.ReLU(inplace=True), nn.Linear(fc, num_classes)]
            self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.localiser(x)
        out = {"maps": maps}
        if self.classifier is not None:
            out["logits"] = self.classifier(maps)
        return out


# ----------------------------------------------------------------------------- losses and helpers


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, visibility: torch.Tensor | None = None) -> torch.Tensor:
    """``1/(S K) sum ||L~_k - L_k||^2`` in pixels^2 (Honari Eq. 2, third term, without lambda).

    Invisible landmarks (visibility 0) are left out of the sum but the mean is still
    over ``S K`` terms, so a mask does not rescale the rest."""
    d2 = (pred - target).pow(2).sum(-1)
    if visibility is not None:
        d2 = d2 * visibility
    return d2.mean()


def heatmap_nll(maps: torch.Tensor, target: torch.Tensor, visibility: torch.Tensor | None = None) -> torch.Tensor:
    """Log-likelihood loss of a spatial softmax at the ground-truth pixel (Heatmap-MT).

    ``maps (B, K, H, W)``, ``target (B, K, 2)`` in pixels of the maps (rounded to
    the nearest pixel and clipped into the frame). Mean over visible landmarks."""
    b, k, h, w = maps.shape
    t = torch.round(target).long()
    x = t[..., 0].clamp(0, w - 1)
    y = t[..., 1].clamp(0, h - 1)
    idx = (y * w + x).reshape(-1)
    logp = F.log_softmax(maps.reshape(b * k, h * w), dim=-1)
    nll = -logp.gather(1, idx[:, None]).squeeze(1)
    if visibility is None:
        return nll.mean()
    v = visibility.reshape(-1)
    return (nll * v).sum() / v.sum().clamp_min(1.0)


def balanced_labeled(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of ``count`` samples spread as evenly as possible over the classes.

    Each class gets ``count // C`` samples (or all it has), the remaining slots go
    to classes picked at random; within a class the samples are random. Drawn from
    ``np.random.default_rng(seed)``; returned sorted."""
    labels = np.asarray(labels)
    n = len(labels)
    if not (1 <= count <= n):
        raise ValueError(f"balanced_labeled: count must be in [1, {n}], got {count}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    take = {c: 0 for c in classes}
    left = count
    while left > 0:
        open_ = [c for c in classes if take[c] < len(pools[c])]
        share = left // len(open_)
        if share == 0:
            for c in rng.permutation(open_)[:left]:
                take[c] += 1
            break
        for c in open_:
            add = min(share, len(pools[c]) - take[c])
            take[c] += add
            left -= add
    return np.sort(np.concatenate([pools[c][:take[c]] for c in classes]))


def _concat(a: ArrayDataset, b: ArrayDataset | None) -> ArrayDataset:
    if b is None:
        return a
    return ArrayDataset(
        spec=a.spec, images=np.concatenate([a.images, b.images]), keypoints=np.concatenate([a.keypoints, b.keypoints]),
        visibility=np.concatenate([a.visibility, b.visibility]), bbox=np.concatenate([a.bbox, b.bbox]),
        labels=None if a.labels is None else np.concatenate([a.labels, b.labels]),
        meta={k: np.concatenate([a.meta[k], b.meta[k]]) for k in a.meta if k in b.meta})


def _distance_to_mask(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from each point ``(N, 2)`` to the nearest pixel centre of its ``(N, H, W)`` mask."""
    out = np.full(len(points), np.inf)
    for i in range(len(points)):
        ys, xs = np.nonzero(mask[i])
        if len(xs):
            out[i] = np.sqrt(((xs - points[i, 0]) ** 2 + (ys - points[i, 1]) ** 2).min())
    return out


def on_shape_fractions(points: np.ndarray, triangle_mask: np.ndarray, square_mask: np.ndarray,
                       near_px: float = 1.0) -> dict[str, float]:
    """Where two unsupervised landmarks land on *Shapes*.

    ``points (N, 2, 2)``; a point is on its shape when it lies within ``near_px``
    pixels of a pixel centre of the shape's mask (``0`` = strictly on a pixel of
    it). The two assignments (landmark 0 -> triangle, 1 -> square, or the swap)
    are scored by the fraction of images where *both* points are on their shapes;
    the better one is reported: ``on_shape_triangle``, ``on_shape_square`` (per
    shape), ``on_shape_both`` and ``swapped`` (1.0 if landmark 0 is the square's)."""
    best = None
    for swapped in (0, 1):
        tri = _distance_to_mask(triangle_mask, points[:, swapped]) <= near_px
        sq = _distance_to_mask(square_mask, points[:, 1 - swapped]) <= near_px
        r = {"on_shape_triangle": float(tri.mean()), "on_shape_square": float(sq.mean()),
             "on_shape_both": float((tri & sq).mean()), "swapped": float(swapped)}
        if best is None or r["on_shape_both"] > best["on_shape_both"]:
            best = r
    assert best is not None
    return best


# ----------------------------------------------------------------------------- methods


class _SeqMTBase(Method):
    """Shared options, data preparation, loss bookkeeping and evaluation."""

    loss_names = ("lm", "attr", "elt")
    default_weights = {"lm": 1.0, "attr": 1.0, "elt": 1.0}

    def __init__(self, config: Any, spec: Any, image_size: tuple[int, int], device: torch.device,
                 generator: torch.Generator):
        o = config.options()
        dc = config.data
        has_unlabeled = dc.label_fraction < 1.0 if dc.num_labels is None else (
            dc.n_train is None or dc.num_labels < dc.n_train)
        # A applies to every image with a class (all of them), ELT to images without landmark labels
        self.uses_unlabeled = bool((o.attribute or getattr(o, "elt", False)) and has_unlabeled)
        super().__init__(config, spec, image_size, device, generator)
        if o.attribute and not spec.num_classes:
            from ..config import ConfigError

            raise ConfigError(f"method_options.attribute: dataset {spec.name!r} has no class labels")

    @property
    def num_classes(self) -> int:
        return int(self.spec.num_classes or 0) if self.options.attribute else 0

    @classmethod
    def prepare_data(cls, config: Any, data: Any, device: torch.device) -> Any:
        o = config.options()
        if not o.balanced or data.unlabeled is None or data.labeled.labels is None:
            return data
        from ..train import RunData

        pool = _concat(data.labeled, data.unlabeled)
        lab = balanced_labeled(pool.labels, len(data.labeled), seed=config.data.split_seed)
        unl = np.setdiff1d(np.arange(len(pool)), lab)
        return RunData(labeled=pool.subset(lab), unlabeled=pool.subset(unl), val=data.val, test=data.test)

    # -- pieces -------------------------------------------------------------
    def forward_points(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        return out["points"]

    def landmark_term(self, out: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        return landmark_loss(out["points"], batch.keypoints, batch.visibility)

    def _split(self, out: dict[str, torch.Tensor], sizes: list[int]) -> list[dict[str, torch.Tensor]]:
        parts = [dict() for _ in sizes]
        for key, val in out.items():
            for p, v in zip(parts, torch.split(val, sizes)):
                p[key] = v
        return parts

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        use_elt = getattr(o, "elt", False) and unlabeled is not None
        images = [labeled.images]
        if unlabeled is not None:
            images.append(unlabeled.images)
        M = None
        if use_elt:
            M = geometry.sample_affine(unlabeled.images.shape[0], self.image_size, rotation=o.elt_rotation,
                                       scale=(1 - o.elt_scale, 1 + o.elt_scale), translation=o.elt_translation,
                                       generator=self.generator).to(self.device)
            images.append(geometry.warp_images(unlabeled.images, M))
        sizes = [x.shape[0] for x in images]
        out = self.module(torch.cat(images))  # one pass: BatchNorm sees every image of the step
        parts = self._split(out, sizes)
        losses: dict[str, torch.Tensor] = {}
        if o.landmarks:
            losses["lm"] = self.landmark_term(parts[0], labeled)
        if o.attribute:
            logits = torch.cat([p["logits"] for p in parts[:2]])
            labels = torch.cat([labeled.labels] + ([unlabeled.labels] if unlabeled is not None else []))
            losses["attr"] = F.cross_entropy(logits, labels)
            self.diagnostics["train_acc"] = float((logits.argmax(1) == labels).float().mean())
        if use_elt:
            pts_u, pts_t = parts[1]["points"], parts[2]["points"]
            losses["elt"] = elt_loss(pts_t, pts_u, M)
        if not losses:
            from ..train import TrainingError

            raise TrainingError(f"method {self.name!r}: every loss is switched off (landmarks, attribute, elt)")
        return losses

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        was = self.module.training
        self.module.eval()
        out = self.module(images)
        self.module.train(was)
        pts = self.forward_points(out)
        if "maps" in out:
            b, k, h, w = out["maps"].shape
            conf = torch.softmax(out["maps"].reshape(b, k, h * w).float(), -1).amax(-1)
        else:
            conf = torch.ones(pts.shape[:2], device=pts.device)
        return pts, conf

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor | None:
        if self.num_classes == 0:
            return None
        was = self.module.training
        self.module.eval()
        logits = self.module(images)["logits"]
        self.module.train(was)
        return logits.argmax(1)

    def evaluate(self, ds: ArrayDataset, device: torch.device) -> dict[str, Any]:
        from ..metrics import pck
        from ..train import _Tensors

        t = _Tensors(ds, device)
        pts, cls = [], []
        for s in range(0, t.n, 256):
            b = t.batch(torch.arange(s, min(s + 256, t.n)))
            p, _ = self.predict(b.images)
            pts.append(p.float().cpu().numpy())
            c = self.classify(b.images)
            if c is not None:
                cls.append(c.cpu().numpy())
        pred = np.concatenate(pts)
        vis = ds.visibility > 0
        err = np.linalg.norm(pred - ds.keypoints, axis=-1)
        out: dict[str, Any] = {"err_px": float(err[vis].mean()) if vis.any() else math.nan}
        for k, name in enumerate(ds.spec.keypoint_names):
            out[f"err_px_{name}"] = float(err[vis[:, k], k].mean()) if vis[:, k].any() else math.nan
        out["pck@0.1"] = float(pck(pred, ds.keypoints, ds.visibility, ds.normaliser_values(), alpha=0.1)["mean"])
        if cls and ds.labels is not None:
            out["acc"] = float((np.concatenate(cls) == ds.labels).mean())
        if "triangle_mask" in ds.meta and "square_mask" in ds.meta and pred.shape[1] == 2:
            out.update(on_shape_fractions(pred, ds.meta["triangle_mask"], ds.meta["square_mask"],
                                          near_px=self.options.near_px))
        return out


@register
class SeqMT(_SeqMTBase):
    """Honari et al.'s sequential multitasking: soft-argmax landmarks feed the classifier."""

    name = "seq_mt"
    version = "1"

    @dataclass(frozen=True)
    class Options:
        landmarks: bool = _s(True, help="landmark L2 loss on labeled images (L)")
        attribute: bool = _s(False, help="class cross-entropy through the landmarks (A)")
        elt: bool = _s(False, help="ELT on images without landmark labels")
        balanced: bool = _s(True, help="class-balanced landmark-labeled subset (Honari footnote 1)")
        width: int = _s(16, range=(1, 512))
        kernel: int = _s(3, range=(1, 15))
        dilations: tuple[int, ...] = _s((1, 2, 4, 8, 16, 1), range=(1, 64), help="one convolution per entry")
        stride: int = _s(1, choices=(1, 2))
        beta: float = _s(1.0, range=(1e-3, 1e3), help="soft-argmax temperature (Eq. 1)")
        hidden: tuple[int, ...] = _s((40,), range=(1, 4096), help="MLP hidden layers (paper, Shapes: FC 40 -> classes)")
        point_norm: str = _s("none", choices=("none", "centre", "centre_scale"),
                             help="classifier input: raw points (paper) or centred and scaled")
        elt_rotation: float = _s(20.0, range=(0.0, 180.0), help="ELT transform: max |degrees|")
        elt_scale: float = _s(0.1, range=(0.0, 0.5), help="ELT transform: scale in [1-s, 1+s]")
        elt_translation: float = _s(0.05, range=(0.0, 0.5), help="ELT transform: max shift, fraction of size")
        near_px: float = _s(1.0, range=(0.0, 100.0), help="Shapes: 'on its shape' tolerance in px")

        def validate(self) -> None:
            _check_options(self)

    def build(self) -> nn.Module:
        o = self.options
        return SeqMTNet(self.spec.num_keypoints, self.num_classes, o.width, o.kernel, o.dilations, o.stride,
                        o.beta, o.hidden, o.point_norm)


@register
class CommMT(_SeqMTBase):
    """Common multitasking (Fig. 5): pooled conv features, shared FC, point and class branches."""

    name = "comm_mt"
    version = "1"
    loss_names = ("lm", "attr")
    default_weights = {"lm": 1.0, "attr": 1.0}

    @dataclass(frozen=True)
    class Options:
        landmarks: bool = _s(True)
        attribute: bool = _s(False)
        balanced: bool = _s(True)
        width: int = _s(16, range=(1, 512), help="channels of the first stage (doubling per stage)")
        stages: int = _s(3, range=(1, 6), help="conv + 2x2 max-pool stages")
        fc: int = _s(256, range=(1, 8192), help="shared FC units")
        near_px: float = _s(1.0, range=(0.0, 100.0))

    def build(self) -> nn.Module:
        o = self.options
        return CommMTNet(self.spec.num_keypoints, self.num_classes, o.width, self.image_size, o.stages, o.fc)


@register
class HeatmapMT(_SeqMTBase):
    """Heatmap multitasking (Fig. 6): softmax log-likelihood maps, argmax read-out, classifier on the maps."""

    name = "heatmap_mt"
    version = "1"
    loss_names = ("lm", "attr")
    default_weights = {"lm": 1.0, "attr": 1.0}

    @dataclass(frozen=True)
    class Options:
        landmarks: bool = _s(True)
        attribute: bool = _s(False)
        balanced: bool = _s(True)
        width: int = _s(16, range=(1, 512))
        kernel: int = _s(3, range=(1, 15))
        dilations: tuple[int, ...] = _s((1, 2, 4, 8, 16, 1), range=(1, 64))
        stride: int = _s(1, choices=(1, 2))
        stages: int = _s(3, range=(1, 6), help="pool + conv stages of the classifier")
        fc: int = _s(64, range=(1, 8192))
        near_px: float = _s(1.0, range=(0.0, 100.0))

        def validate(self) -> None:
            _check_options(self)

    def build(self) -> nn.Module:
        o = self.options
        return HeatmapMTNet(self.spec.num_keypoints, self.num_classes, o.width, o.kernel, o.dilations, o.stride,
                            self.image_size, o.stages, o.fc)

    def forward_points(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        b, k, h, w = out["maps"].shape
        idx = out["maps"].reshape(b, k, h * w).argmax(-1)
        return torch.stack([idx % w, idx // w], dim=-1).to(out["maps"].dtype)

    def landmark_term(self, out: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        return heatmap_nll(out["maps"], batch.keypoints, batch.visibility)
