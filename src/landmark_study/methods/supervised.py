"""Supervised heatmap regression: the baseline every chapter compares against."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import geometry, heatmaps
from ..losses import heatmap_mse
from ..models import build_model
from . import register
from .base import Batch, Method


class HeatmapMethod(Method):
    """Shared pieces of heatmap-based methods: model, augmentation, targets, decoding."""

    def build(self) -> nn.Module:
        m = self.config.model
        return build_model(m.name, self.spec.num_keypoints, width=m.width,
                           heatmap_stride=m.heatmap_stride, **m.options)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        s = self.config.model.heatmap_stride
        return self.image_size[0] // s, self.image_size[1] // s

    def sample_augmentation(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random affine (+ flip) matrices on the method's generator; returns (M, flipped)."""
        a = self.config.train.augment
        aff = geometry.sample_affine(batch, self.image_size, rotation=a.rotation, scale=a.scale,
                                     translation=a.translation, generator=self.generator)
        flip, flipped = geometry.sample_flip(batch, self.image_size, p=a.flip, generator=self.generator)
        m = geometry.compose(aff, flip)
        return m.to(self.device), flipped.to(self.device)

    def augment(self, images: torch.Tensor, keypoints: torch.Tensor, visibility: torch.Tensor):
        m, flipped = self.sample_augmentation(images.shape[0])
        img = geometry.warp_images(images, m)
        kp, vis = geometry.warp_keypoints(keypoints, visibility, m, self.image_size)
        kp, vis = geometry.flip_keypoint_order(kp, vis, self.spec.flip_permutation(), flipped)
        return img, kp, vis

    def targets(self, keypoints: torch.Tensor, visibility: torch.Tensor):
        pts = heatmaps.image_to_heatmap(keypoints, self.image_size, self.heatmap_size)
        return heatmaps.encode_gaussian(pts, self.heatmap_size, self.config.train.sigma, visibility)

    def supervised_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, kp, vis = self.augment(batch.images, batch.keypoints, batch.visibility)
        target, weight = self.targets(kp, vis)
        out = self.module(img)
        return heatmap_mse(out["heatmaps"], target, weight), out

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        was = self.module.training
        self.module.eval()
        hm = self.module(images)["heatmaps"]
        self.module.train(was)
        pts, conf = heatmaps.decode_argmax(hm, subpixel=True)
        return heatmaps.heatmap_to_image(pts, self.image_size, self.heatmap_size), conf


@register
class Supervised(HeatmapMethod):
    """Heatmap regression on the labeled images only (JointsMSE, Gaussian targets)."""

    name = "supervised"
    version = "1"
    loss_names = ("sup",)
    default_weights = {"sup": 1.0}

    @dataclass(frozen=True)
    class Options:
        pass

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        loss, out = self.supervised_loss(labeled)
        self.diagnostics["peak_labeled"] = float(out["heatmaps"].detach().amax(dim=(2, 3)).mean())
        return {"sup": loss}
