"""Small building blocks shared by the backbones: norms, stems, residual blocks.

Every block here is plain ``torch.nn``; the weights are initialised by PyTorch's
defaults (which draw from the global RNG), so a model built right after
``torch.manual_seed(s)`` is the same for the same ``s``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("bn", "gn")

#: ImageNet statistics, the default input normalisation of every model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def gn_groups(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """Number of GroupNorm groups for ``channels``: the largest divisor of ``channels``
    that is at most ``max_groups`` and leaves at least ``min_channels_per_group``
    channels in each group (1 if none does).

    ``gn_groups(256) == 32`` (Mallis et al.'s GroupNorm(32)), ``gn_groups(64) == 16``,
    ``gn_groups(32) == 8``, ``gn_groups(16) == 4``, ``gn_groups(24) == 6``.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    best = 1
    for g in range(1, min(max_groups, channels) + 1):
        if channels % g == 0 and channels // g >= min_channels_per_group:
            best = g
    return best


def make_norm(norm: str, channels: int) -> nn.Module:
    """A normalisation layer: ``'bn'`` (BatchNorm2d) or ``'gn'`` (GroupNorm, groups by :func:`gn_groups`)."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        return nn.GroupNorm(gn_groups(channels), channels)
    raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")


def conv_norm_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, norm: str = "bn",
                  act: bool = True) -> nn.Sequential:
    """``conv(kernel, stride, 'same' padding, no bias) -> norm -> ReLU`` (ReLU omitted if ``act=False``)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        make_norm(norm, cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def make_stem(width: int, stride: int, norm: str = "bn") -> nn.Sequential:
    """Stem from RGB to ``width`` channels at ``1/stride`` resolution.

    ``log2(stride)`` stride-2 3x3 conv-norm-ReLU layers (one stride-1 layer for
    ``stride == 1``).
    """
    check_stride(stride)
    n = max(1, int(math.log2(stride)))
    s = 2 if stride > 1 else 1
    layers = [conv_norm_act(3, width, 3, s, norm)]
    layers += [conv_norm_act(width, width, 3, s, norm) for _ in range(n - 1)]
    return nn.Sequential(*layers)


HEATMAP_STRIDES = (1, 2, 4)


def check_stride(stride: int) -> None:
    """Raise ``ValueError`` unless ``stride`` is one of :data:`HEATMAP_STRIDES`."""
    if stride not in HEATMAP_STRIDES:
        raise ValueError(f"heatmap_stride must be one of {HEATMAP_STRIDES}, got {stride!r}")


class BasicBlock(nn.Module):
    """ResNet basic block (post-activation): two 3x3 convs with a residual skip.

    The skip is a 1x1 conv + norm when the channel count or stride changes.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: str = "bn") -> None:
        super().__init__()
        self.conv1 = conv_norm_act(cin, cout, 3, stride, norm)
        self.conv2 = conv_norm_act(cout, cout, 3, 1, norm, act=False)
        self.skip: nn.Module = nn.Identity()
        if cin != cout or stride != 1:
            self.skip = conv_norm_act(cin, cout, 1, stride, norm, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual (Newell et al.'s hourglass unit).

    ``norm-ReLU-1x1(cin->cout/2) - norm-ReLU-3x3 - norm-ReLU-1x1(->cout)`` plus a
    skip (1x1 conv when ``cin != cout``).
    """

    def __init__(self, cin: int, cout: int, norm: str = "bn") -> None:
        super().__init__()
        mid = max(1, cout // 2)
        self.body = nn.Sequential(
            make_norm(norm, cin), nn.ReLU(inplace=False),
            nn.Conv2d(cin, mid, 1, bias=False),
            make_norm(norm, mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            make_norm(norm, mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=True),
        )
        self.skip: nn.Module = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class HierarchicalBlock(nn.Module):
    """Hierarchical, parallel, multi-scale residual block (Bulat & Tzimiropoulos 2017),
    the hourglass unit Mallis et al. use.

    Three pre-activated (norm-ReLU-conv) 3x3 convs in sequence with ``cout/2``,
    ``cout/4`` and ``cout/4`` output channels; their outputs are concatenated
    (``cout`` channels) and added to the skip (1x1 conv when ``cin != cout``).
    ``cout`` must be divisible by 4.
    """

    def __init__(self, cin: int, cout: int, norm: str = "bn") -> None:
        super().__init__()
        if cout % 4:
            raise ValueError(f"HierarchicalBlock needs cout divisible by 4, got {cout}")
        widths = (cout // 2, cout // 4, cout // 4)
        convs = []
        c = cin
        for w in widths:
            convs.append(nn.Sequential(make_norm(norm, c), nn.ReLU(inplace=False),
                                       nn.Conv2d(c, w, 3, padding=1, bias=False)))
            c = w
        self.convs = nn.ModuleList(convs)
        self.skip: nn.Module = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        y = x
        for conv in self.convs:
            y = conv(y)
            outs.append(y)
        return torch.cat(outs, dim=1) + self.skip(x)


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``, the package's pixel convention) to ``size``;
    a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
