"""Keypoint networks: backbones, heads and the :func:`build_model` entry point.

>>> import torch
>>> from landmark_study.models import build_model
>>> model = build_model("hrnet_small", num_keypoints=10)          # 64x64 -> 32x32 heatmaps
>>> out = model(torch.rand(2, 3, 64, 64))
>>> tuple(out["heatmaps"].shape)
(2, 10, 32, 32)

See :mod:`landmark_study.models.backbones` for the architectures and their
parameter counts, :mod:`landmark_study.models.heads` for the heads.
"""

from __future__ import annotations

from .backbones import MODELS, Backbone, Hourglass, HRModule, HRNetSmall, ResNetDeconv, UNetSmall
from .heads import (DetectorDescriptorHead, FeatureFusion, HeatmapHead, KeypointClassifier,
                    keypoint_representations)
from .layers import HEATMAP_STRIDES, IMAGENET_MEAN, IMAGENET_STD, NORMS, gn_groups
from .model import HEADS, KeypointModel, build_model, count_parameters

__all__ = [
    "MODELS", "HEADS", "NORMS", "HEATMAP_STRIDES", "IMAGENET_MEAN", "IMAGENET_STD",
    "Backbone", "HRNetSmall", "HRModule", "Hourglass", "ResNetDeconv", "UNetSmall",
    "HeatmapHead", "DetectorDescriptorHead", "FeatureFusion", "KeypointClassifier",
    "keypoint_representations", "KeypointModel", "build_model", "count_parameters", "gn_groups",
]
