"""Conditional image generation through a keypoint bottleneck, in the spirit of Jakab et
al. (NeurIPS 2018), as the semi-supervised baseline of Moskvyak et al.'s Table 1 ("Gen").

``generation``: the heatmap network of every other baseline is the keypoint detector.
For an image ``x`` (labeled or not) a random perspective ``g`` makes the target
``x' = g(x)``. The detector's heatmaps of ``x'`` go through a soft-argmax to K points,
which are rendered as Gaussian maps (the bottleneck: geometry can only pass as K
points); an appearance encoder sees the *source* ``x``; a decoder reconstructs ``x'``
from the appearance features and the Gaussian maps. Losses: ``sup`` (heatmap MSE on
the labeled images, the same as ``supervised``) and ``rec`` (mean absolute error of the
reconstruction, images in [0, 1]; Jakab et al. use a perceptual VGG loss, too costly
for this CPU). At test time only the detector runs, as in every other method.

Differences from Jakab et al.: small convolutional encoder and decoder at heatmap
resolution (no VGG, no perceptual loss), a perspective warp instead of thin-plate
splines, and the keypoints are the supervised heatmap channels (so the bottleneck
and the labels name the same points, as the semi-supervised use needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import geometry, heatmaps
from ..losses import heatmap_mse
from ..models import build_model
from . import register
from .base import Batch
from .supervised import HeatmapMethod


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True))


class GenerationNet(nn.Module):
    """The keypoint detector (``kp``, any heatmap model) plus the appearance encoder and
    decoder used only in training; ``forward`` is the detector's, so prediction and
    evaluation see a plain heatmap model."""

    def __init__(self, detector: nn.Module, stride: int, width: int, num_keypoints: int):
        super().__init__()
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"heatmap stride must be a power of two, got {stride}")
        self.kp = detector
        downs = int(math.log2(stride))
        layers = [_block(3, width)] + [_block(width, width, stride=2) for _ in range(downs)] + [_block(width, width)]
        self.encoder = nn.Sequential(*layers)
        self.decoder_low = nn.Sequential(_block(width + num_keypoints, 2 * width), _block(2 * width, 2 * width))
        self.decoder_high = nn.Sequential(_block(2 * width, width), nn.Conv2d(width, 3, 3, padding=1))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.kp(x)

    def reconstruct(self, source: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Image at the source's size from the source's appearance and K Gaussian maps."""
        a = self.encoder(source)
        if a.shape[-2:] != maps.shape[-2:]:
            a = F.interpolate(a, size=maps.shape[-2:], mode="bilinear", align_corners=False)
        h = self.decoder_low(torch.cat([a, maps], dim=1))
        if self.stride > 1:
            h = F.interpolate(h, size=source.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.decoder_high(h))


@register
class ConditionalGeneration(HeatmapMethod):
    """Supervised heatmaps + reconstruction of a warped image through a keypoint bottleneck."""

    name = "generation"
    version = "1"
    loss_names = ("sup", "rec")
    # the heatmap MSE at the SC/TI/TE method's weight (1e3); rec is an L1 of order 0.1 at the start
    default_weights = {"sup": 1e3, "rec": 1.0}
    uses_unlabeled = True

    @dataclass(frozen=True)
    class Options:
        distortion: float = 0.15  # perspective between source and target (the sc_ti_te law)
        beta: float = 20.0  # soft-argmax sharpness on the raw heatmaps (peak ~1), as elt_heatmap
        render_sigma: float = 1.5  # Gaussian bottleneck maps, heatmap px
        width: int = 16  # encoder/decoder channels
        labeled_too: bool = True  # reconstruct the labeled images as well

        def validate(self) -> None:
            from ..config import ConfigError

            if not 0.0 <= self.distortion < 0.25:
                raise ConfigError(f"method_options.distortion: {self.distortion} not in [0, 0.25)")
            if self.beta <= 0 or self.render_sigma <= 0:
                raise ConfigError(f"method_options.beta ({self.beta}) and render_sigma ({self.render_sigma}) "
                                  "must be > 0")
            if self.width < 1:
                raise ConfigError(f"method_options.width: {self.width} must be >= 1")

    def build(self) -> nn.Module:
        m = self.config.model
        det = build_model(m.name, self.spec.num_keypoints, width=m.width, heatmap_stride=m.heatmap_stride,
                          **m.options)
        return GenerationNet(det, m.heatmap_stride, self.options.width, self.spec.num_keypoints)

    def render(self, hm: torch.Tensor) -> torch.Tensor:
        """Soft-argmax points of ``hm`` rendered as unit-peak Gaussians (the bottleneck)."""
        p = heatmaps.soft_argmax(hm, beta=self.options.beta)
        maps, _ = heatmaps.encode_gaussian(p, self.heatmap_size, self.options.render_sigma)
        return maps

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        o = self.options
        img_l, kp, vis = self.augment(labeled.images, labeled.keypoints, labeled.visibility)
        target, w = self.targets(kp, vis)
        bl = img_l.shape[0]
        src = [img_l] if o.labeled_too else []
        if unlabeled is not None:
            m, _ = self.sample_augmentation(unlabeled.images.shape[0])
            src.append(geometry.warp_images(unlabeled.images, m))
        if not src:
            return {"sup": heatmap_mse(self.module(img_l)["heatmaps"], target, w),
                    "rec": img_l.sum() * 0.0}
        source = torch.cat(src)
        g = geometry.sample_perspective(source.shape[0], self.image_size, distortion=o.distortion,
                                        generator=self.generator).to(self.device)
        tgt = geometry.warp_images(source, g)
        hm = self.module(torch.cat([img_l, tgt]))["heatmaps"]
        losses = {"sup": heatmap_mse(hm[:bl], target, w)}
        recon = self.module.reconstruct(source, self.render(hm[bl:]))
        with torch.no_grad():  # pixels the warp filled with zeros carry no image
            valid = geometry.warp_images(torch.ones_like(source[:, :1]), g) > 0.99
        err = (recon - tgt).abs() * valid
        losses["rec"] = err.sum() / (valid.sum() * 3).clamp_min(1)
        self.diagnostics["peak_labeled"] = float(hm[:bl].detach().amax(dim=(2, 3)).mean())
        return losses
