"""Backbones: RGB (already normalised) -> a list of multi-scale feature maps.

Every backbone follows one interface:

* ``forward(x) -> list[Tensor]``: ``features[0]`` is at heatmap resolution
  ``(H / heatmap_stride, W / heatmap_stride)`` and is what the heads read; the
  following entries are coarser maps (strictly decreasing resolution, each half
  the previous one), used e.g. by Moskvyak et al.'s feature fusion.
* ``feature_channels``: channel count of each entry of ``features``.
* ``input_multiple``: input height and width must be divisible by it.

Widths and depths are arguments, so the same definition serves 64x64 inputs on
a 2-core CPU (the defaults) and 256x256 inputs on a GPU (larger ``width``,
``heatmap_stride=4``).

Parameter counts of the default configurations (backbone only; the same for
every ``heatmap_stride`` and for ``norm='bn'`` or ``'gn'``):

* ``hrnet_small`` (width=16, num_branches=3, blocks=1, modules=(1, 1)): 192,656
* ``hourglass`` (width=32, depth=3, block='hierarchical'): 72,944
* ``resnet_deconv`` (width=16, blocks=(1, 1, 1, 1), deconv_width=32,
  num_deconv=3): 406,032
* ``unet_small`` (width=12, depth=3): 273,216

Measured training step (forward + backward, batch 32, 64x64 input, 32x32
heatmaps, ``torch.set_num_threads(2)`` on the project's 2-core CPU, quiet
machine, median): hrnet_small 39 ms, hourglass 43 ms, resnet_deconv 24 ms,
unet_small 34 ms (GroupNorm about the same); hourglass with ``width=48``
(162,456 parameters) 72 ms; hrnet_small with ``fused_channels=64`` 60 ms.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import (BasicBlock, HierarchicalBlock, PreActBottleneck, check_stride, conv_norm_act, make_norm,
                     make_stem, upsample_to)


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class Backbone(nn.Module):
    """Base class: stores ``heatmap_stride``, ``feature_channels`` and ``input_multiple``."""

    heatmap_stride: int
    feature_channels: tuple[int, ...]
    input_multiple: int

    @property
    def out_channels(self) -> int:
        """Channels of ``features[0]`` (the heads' input)."""
        return self.feature_channels[0]


# --------------------------------------------------------------------------- HRNet


class HRModule(nn.Module):
    """One HRNet exchange unit: residual blocks on every branch, then fusion.

    Fusion output ``i`` is ``ReLU(sum_j f_ij(x_j))`` with ``f_ii`` the identity,
    ``f_ij`` (``j > i``, coarser) a 1x1 conv + norm followed by bilinear upsampling,
    and ``f_ij`` (``j < i``, finer) ``i - j`` stride-2 3x3 convs.
    """

    def __init__(self, channels: Sequence[int], blocks: int, norm: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c, norm=norm) for _ in range(blocks)]) for c in channels
        )
        fuse = []
        for i, ci in enumerate(channels):
            row = []
            for j, cj in enumerate(channels):
                if i == j:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(conv_norm_act(cj, ci, 1, 1, norm, act=False))
                else:
                    steps: list[nn.Module] = [conv_norm_act(cj, cj, 3, 2, norm) for _ in range(i - j - 1)]
                    steps.append(conv_norm_act(cj, ci, 3, 2, norm, act=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse = nn.ModuleList(fuse)
        self.act = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        ys = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            size = ys[i].shape[-2:]
            acc = ys[i]
            for j, f in enumerate(row):
                if j != i:
                    acc = acc + upsample_to(f(ys[j]), size)
            out.append(self.act(acc))
        return out


class HRNetSmall(Backbone):
    """Small HRNet-style multi-resolution network (after Sun et al. 2019).

    Stem (stride ``heatmap_stride``) -> ``blocks`` basic blocks at ``width`` ->
    for each extra branch: a stride-2 3x3 transition from the coarsest branch,
    then ``modules[k]`` exchange units (:class:`HRModule`) over the branches so far.
    Branch ``b`` has ``width * 2**b`` channels at ``1 / 2**b`` of heatmap resolution.

    ``features`` = the final outputs of all branches, finest first (e.g.
    32x32, 16x16, 8x8 for a 64x64 input at ``heatmap_stride=2``); the heads read the
    finest one, as HRNet's pose head does. Input sides must be divisible by
    ``heatmap_stride * 2**(num_branches - 1)``.

    Default (``width=16, num_branches=3, blocks=1, modules=(1, 1)``): 192,656
    parameters (``modules=(1, 2)``: 328,496). HRNet-W32 proper is ``width=32, num_branches=4`` with more modules.
    """

    def __init__(self, width: int = 16, heatmap_stride: int = 2, norm: str = "bn", *,
                 num_branches: int = 3, blocks: int = 1, modules: Sequence[int] = (1, 1)) -> None:
        super().__init__()
        check_stride(heatmap_stride)
        _check_positive("width", width)
        _check_positive("blocks", blocks)
        if num_branches not in (2, 3, 4):
            raise ValueError(f"num_branches must be 2, 3 or 4, got {num_branches!r}")
        modules = tuple(modules)
        if len(modules) != num_branches - 1 or any(not isinstance(m, int) or m < 1 for m in modules):
            raise ValueError(
                f"modules must hold num_branches - 1 = {num_branches - 1} positive ints, got {modules!r}"
            )
        channels = [width * 2**b for b in range(num_branches)]
        self.heatmap_stride = heatmap_stride
        self.feature_channels = tuple(channels)
        self.input_multiple = heatmap_stride * 2 ** (num_branches - 1)
        self.stem = make_stem(width, heatmap_stride, norm)
        self.stage1 = nn.Sequential(*[BasicBlock(width, width, norm=norm) for _ in range(blocks)])
        self.transitions = nn.ModuleList(
            conv_norm_act(channels[b - 1], channels[b], 3, 2, norm) for b in range(1, num_branches)
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(HRModule(channels[: b + 1], blocks, norm) for _ in range(modules[b - 1]))
            for b in range(1, num_branches)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = [self.stage1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            xs = xs + [transition(xs[-1])]
            for module in stage:
                xs = module(xs)
        return xs


# ----------------------------------------------------------------------- Hourglass


class Hourglass(Backbone):
    """Single-stack hourglass (Newell et al. 2016) with BatchNorm or GroupNorm.

    Stem (stride ``heatmap_stride``) -> hourglass of ``depth`` levels (each level: a
    skip block at the current resolution; a 2x2 max-pool, block, the next level,
    block, bilinear 2x upsampling; the two added) -> block -> 1x1 conv-norm-ReLU.
    All blocks have ``width`` channels. ``block='hierarchical'`` (default) is Bulat &
    Tzimiropoulos's multi-scale block (the unit Mallis et al. use, with
    ``norm='gn'``, GroupNorm(32) at width 256); ``block='bottleneck'`` is Newell's
    pre-activation bottleneck.

    ``features`` = [output at heatmap resolution, then the decoder's output at every
    coarser level, 1/2 ... 1/2**depth]. Input sides must be divisible by
    ``heatmap_stride * 2**depth``; ``width`` must be divisible by 4.

    Default (``width=32, depth=3, block='hierarchical'``): 72,944 parameters
    (``width=48``: 162,456; ``width=64``: 287,328).
    """

    def __init__(self, width: int = 32, heatmap_stride: int = 2, norm: str = "bn", *,
                 depth: int = 3, block: str = "hierarchical") -> None:
        super().__init__()
        check_stride(heatmap_stride)
        _check_positive("width", width)
        _check_positive("depth", depth)
        blocks = {"hierarchical": HierarchicalBlock, "bottleneck": PreActBottleneck}
        if block not in blocks:
            raise ValueError(f"unknown hourglass block {block!r}; known: {', '.join(blocks)}")
        if width % 4:
            raise ValueError(f"hourglass width must be divisible by 4, got {width}")
        unit = blocks[block]
        self.heatmap_stride = heatmap_stride
        self.feature_channels = (width,) * (depth + 1)
        self.input_multiple = heatmap_stride * 2**depth
        self.depth = depth
        self.stem = make_stem(width, heatmap_stride, norm)
        self.skips = nn.ModuleList(unit(width, width, norm) for _ in range(depth))
        self.downs = nn.ModuleList(unit(width, width, norm) for _ in range(depth))
        self.bottom = unit(width, width, norm)
        self.ups = nn.ModuleList(unit(width, width, norm) for _ in range(depth))
        self.post = nn.Sequential(unit(width, width, norm), conv_norm_act(width, width, 1, 1, norm))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for skip, down in zip(self.skips, self.downs):
            skips.append(skip(x))
            x = down(F.max_pool2d(x, 2))
        x = self.bottom(x)
        decoded = []
        for level in reversed(range(self.depth)):
            x = self.ups[level](x)
            decoded.append(x)
            x = skips[level] + upsample_to(x, skips[level].shape[-2:])
        return [self.post(x)] + decoded[::-1]


# ------------------------------------------------------------------ ResNet-deconv


class ResNetDeconv(Backbone):
    """ResNet-style encoder + deconvolution decoder ("SimpleBaseline", Xiao et al. 2018).

    Stem (stride ``heatmap_stride``) -> ``num_deconv + 1`` stages of basic blocks
    with ``width * 2**i`` channels (stage 0 at stride 1, the others halve the
    resolution) -> ``num_deconv`` 4x4 stride-2 transposed convs (+norm+ReLU) with
    ``deconv_width`` channels back to heatmap resolution.

    ``features`` = [last deconv output, earlier deconv outputs, encoder output]
    (finest first). Input sides must be divisible by ``heatmap_stride * 2**num_deconv``.

    Default (``width=16, blocks=(1, 1, 1, 1), deconv_width=32, num_deconv=3``):
    406,032 parameters. SimpleBaseline-ResNet50 itself is ``deconv_width=256`` on a
    bottleneck ResNet with a stride-32 encoder.
    """

    def __init__(self, width: int = 16, heatmap_stride: int = 2, norm: str = "bn", *,
                 blocks: Sequence[int] = (1, 1, 1, 1), deconv_width: int | None = None,
                 num_deconv: int = 3) -> None:
        super().__init__()
        check_stride(heatmap_stride)
        _check_positive("width", width)
        _check_positive("num_deconv", num_deconv)
        blocks = tuple(blocks)
        if len(blocks) != num_deconv + 1 or any(not isinstance(b, int) or b < 1 for b in blocks):
            raise ValueError(f"blocks must hold num_deconv + 1 = {num_deconv + 1} positive ints, got {blocks!r}")
        deconv_width = 2 * width if deconv_width is None else _check_positive("deconv_width", deconv_width)
        self.heatmap_stride = heatmap_stride
        self.input_multiple = heatmap_stride * 2**num_deconv
        self.stem = make_stem(width, heatmap_stride, norm)
        stages = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = [BasicBlock(cin, cout, stride=1 if i == 0 else 2, norm=norm)]
            layers += [BasicBlock(cout, cout, norm=norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.encoder = nn.Sequential(*stages)
        deconvs = []
        for _ in range(num_deconv):
            deconvs.append(nn.Sequential(
                nn.ConvTranspose2d(cin, deconv_width, 4, stride=2, padding=1, bias=False),
                make_norm(norm, deconv_width), nn.ReLU(inplace=True),
            ))
            cin = deconv_width
        self.decoder = nn.ModuleList(deconvs)
        self.feature_channels = (deconv_width,) * num_deconv + (width * 2**num_deconv,)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.encoder(self.stem(x))
        feats = [x]
        for deconv in self.decoder:
            x = deconv(x)
            feats.append(x)
        return feats[::-1]


# ------------------------------------------------------------------------- U-Net


def _double_conv(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(conv_norm_act(cin, cout, 3, 1, norm), conv_norm_act(cout, cout, 3, 1, norm))


class UNetSmall(Backbone):
    """Small U-Net (Ronneberger et al. 2015) working at heatmap resolution.

    Stem (stride ``heatmap_stride``) -> double conv at ``width`` -> ``depth`` times
    (2x2 max-pool, double conv doubling the channels) -> ``depth`` times (2x2
    stride-2 transposed conv halving the channels, concat with the skip, double
    conv).

    ``features`` = [decoder outputs, finest first, then the bottleneck]. Input
    sides must be divisible by ``heatmap_stride * 2**depth``.

    Default (``width=12, depth=3``): 273,216 parameters (Xie et al.'s preliminary
    collapse experiment used a 234K-parameter U-Net at 64x64 with 32x32 heatmaps).
    """

    def __init__(self, width: int = 12, heatmap_stride: int = 2, norm: str = "bn", *,
                 depth: int = 3) -> None:
        super().__init__()
        check_stride(heatmap_stride)
        _check_positive("width", width)
        _check_positive("depth", depth)
        chans = [width * 2**i for i in range(depth + 1)]
        self.heatmap_stride = heatmap_stride
        self.input_multiple = heatmap_stride * 2**depth
        self.feature_channels = tuple(chans)
        self.stem = make_stem(width, heatmap_stride, norm)
        self.enc = nn.ModuleList(
            [_double_conv(width, width, norm)]
            + [_double_conv(chans[i - 1], chans[i], norm) for i in range(1, depth + 1)]
        )
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in range(depth))
        self.dec = nn.ModuleList(_double_conv(2 * chans[i], chans[i], norm) for i in range(depth))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.enc[0](self.stem(x))
        skips = [x]
        for enc in self.enc[1:]:
            x = enc(F.max_pool2d(x, 2))
            skips.append(x)
        feats = [x]
        for level in reversed(range(len(self.dec))):
            x = self.dec[level](torch.cat([skips[level], self.up[level](x)], dim=1))
            feats.append(x)
        return feats[::-1]


#: Registry of backbone names -> classes (``build_model``'s ``name``).
MODELS: dict[str, type[Backbone]] = {
    "hrnet_small": HRNetSmall,
    "hourglass": Hourglass,
    "resnet_deconv": ResNetDeconv,
    "unet_small": UNetSmall,
}
