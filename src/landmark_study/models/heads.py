"""Heads on top of a backbone's features.

* :class:`HeatmapHead` -- K raw heatmaps (no activation; trained with MSE against
  peak-1 Gaussians).
* :class:`DetectorDescriptorHead` -- Mallis et al.'s detector (1 channel, sigmoid)
  and dense descriptor (``d`` channels, unit L2 norm along channels).
* :class:`FeatureFusion` -- Moskvyak et al.'s fusion: every feature map upsampled
  to heatmap size, concatenated, 1x1 conv to ``C`` channels.
* :func:`keypoint_representations` -- ``z_i = GMP(F * h_i)`` (Moskvyak et al. Sec. 3.1).
* :class:`KeypointClassifier` -- the KCN: a small MLP shared across keypoints
  mapping a ``C``-dim representation to ``K`` logits.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import upsample_to


class HeatmapHead(nn.Module):
    """1x1 conv from ``in_channels`` to ``num_keypoints`` raw heatmaps.

    Weights are drawn from N(0, 0.001^2) and the bias is 0 (as in HRNet and
    SimpleBaseline), so an untrained model predicts near-zero heatmaps.
    Parameters: ``(in_channels + 1) * num_keypoints``.
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_keypoints, 1)
        nn.init.normal_(self.conv.weight, std=1e-3)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmaps": self.conv(x)}


class DetectorDescriptorHead(nn.Module):
    """Detector (1 channel + sigmoid) and descriptor (``descriptor_dim`` channels,
    L2-normalised along channels) at heatmap resolution, each a 1x1 conv.

    Returns ``{'detector': sigmoid(logits), 'detector_logits': logits,
    'descriptors': unit-norm descriptors}``; ``detector_logits`` is there for a
    numerically stable BCE. Parameters: ``(in_channels + 1) * (1 + descriptor_dim)``.
    """

    def __init__(self, in_channels: int, descriptor_dim: int = 64) -> None:
        super().__init__()
        if not isinstance(descriptor_dim, int) or descriptor_dim < 1:
            raise ValueError(f"descriptor_dim must be a positive int, got {descriptor_dim!r}")
        self.detector = nn.Conv2d(in_channels, 1, 1)
        nn.init.zeros_(self.detector.bias)
        self.descriptor = nn.Conv2d(in_channels, descriptor_dim, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.detector(x)
        desc = F.normalize(self.descriptor(x), p=2.0, dim=1, eps=1e-8)
        return {"detector": torch.sigmoid(logits), "detector_logits": logits, "descriptors": desc}


class FeatureFusion(nn.Module):
    """Moskvyak et al.'s fusion: upsample every feature map to the size of the first
    (bilinear, ``align_corners=False``), concatenate along channels, 1x1 conv (with
    bias, no activation) to ``out_channels``. Computed in the equivalent cheaper
    order (project each map at its own resolution, then upsample and add).

    Parameters: ``(sum(in_channels) + 1) * out_channels``. In the paper (HRNet-32)
    the concatenation has 352 channels and ``out_channels = 64``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"fused_channels must be a positive int, got {out_channels!r}")
        self.in_channels = tuple(in_channels)
        self.conv = nn.Conv2d(sum(self.in_channels), out_channels, 1)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Fuse ``features`` (list of ``(B, C_i, h_i, w_i)``) into ``(B, C, h, w)``;
        ``size`` defaults to the first map's ``(h, w)``."""
        if len(features) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature maps, got {len(features)}")
        size = tuple(features[0].shape[-2:]) if size is None else tuple(size)
        # conv1x1(cat(up(f_i))) == bias + sum_i up(conv1x1_i(f_i)): bilinear upsampling and a
        # 1x1 conv are both linear and act on different axes, so each map is projected at its
        # own resolution first (far cheaper than concatenating at full resolution).
        out = None
        start = 0
        for f, c in zip(features, self.in_channels):
            if f.shape[1] != c:
                raise ValueError(f"feature map with {f.shape[1]} channels where {c} were declared")
            y = upsample_to(F.conv2d(f, self.conv.weight[:, start:start + c]), size)
            out = y if out is None else out + y
            start += c
        assert out is not None
        return out + self.conv.bias.reshape(1, -1, 1, 1)


def keypoint_representations(fused: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """Semantic keypoint representations ``z_i = GMP(F * h_i)`` (Moskvyak et al. Eq. before 1).

    Args:
        fused: ``(B, C, h, w)`` fused feature map ``F``.
        heatmaps: ``(B, K, h, w)`` predicted heatmaps (used as given: no activation).

    Returns:
        ``(B, K, C)``: for each keypoint, the channel-wise global max over space of
        ``F`` multiplied by that keypoint's heatmap.
    """
    if fused.ndim != 4 or heatmaps.ndim != 4:
        raise ValueError(f"fused and heatmaps must be 4-D, got {tuple(fused.shape)} and {tuple(heatmaps.shape)}")
    if fused.shape[0] != heatmaps.shape[0] or fused.shape[-2:] != heatmaps.shape[-2:]:
        raise ValueError(
            f"fused {tuple(fused.shape)} and heatmaps {tuple(heatmaps.shape)} must share batch and spatial size"
        )
    b, c = fused.shape[:2]
    k = heatmaps.shape[1]
    prod = fused.reshape(b, 1, c, -1) * heatmaps.reshape(b, k, 1, -1)
    return prod.amax(dim=-1)


class KeypointClassifier(nn.Module):
    """KCN: shared classifier of keypoint representations (Moskvyak et al.).

    ``hidden=None`` (the paper's "input and an output layer", under a thousand
    parameters) is one linear layer ``C -> K``: ``(C + 1) * K`` parameters.
    ``hidden=n`` inserts a ReLU hidden layer: ``(C + 1) * n + (n + 1) * K``.

    ``forward(z)`` maps ``(..., C)`` to ``(..., K)``; for ``z`` of shape ``(B, K, C)``
    the logits are ``(B, K, K)`` and the SC loss is the cross-entropy against
    ``arange(K)``.
    """

    def __init__(self, in_channels: int, num_keypoints: int, hidden: int | None = None) -> None:
        super().__init__()
        if hidden is None:
            self.net: nn.Module = nn.Linear(in_channels, num_keypoints)
        else:
            if not isinstance(hidden, int) or hidden < 1:
                raise ValueError(f"kcn hidden must be a positive int or None, got {hidden!r}")
            self.net = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, num_keypoints))
        self.in_channels = in_channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.in_channels:
            raise ValueError(f"KCN expects last dim {self.in_channels}, got shape {tuple(z.shape)}")
        return self.net(z)
