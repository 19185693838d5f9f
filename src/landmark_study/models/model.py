"""The one model entry point: :func:`build_model` -> :class:`KeypointModel`."""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch import nn

from .backbones import MODELS, Backbone
from .heads import DetectorDescriptorHead, FeatureFusion, HeatmapHead, KeypointClassifier, keypoint_representations
from .layers import IMAGENET_MEAN, IMAGENET_STD, NORMS, check_stride

HEADS = ("heatmap", "detector_descriptor")


class KeypointModel(nn.Module):
    """Input normalisation + backbone + head (+ optional feature fusion and KCN).

    ``forward(x)`` takes float images ``(B, 3, H, W)`` in ``[0, 1]`` (normalised
    inside with the fixed ``mean``/``std`` buffers) and returns a dict:

    * ``'heatmaps'`` ``(B, K, h, w)`` raw -- head ``'heatmap'``;
    * ``'detector'`` ``(B, 1, h, w)`` in (0, 1), ``'detector_logits'`` (same shape),
      ``'descriptors'`` ``(B, d, h, w)`` unit L2 norm along dim 1 -- head
      ``'detector_descriptor'``;
    * ``'features'``: list of multi-scale maps, ``features[0]`` at ``(h, w)``, then
      strictly coarser ones (always);
    * ``'fused'`` ``(B, C, h, w)`` when built with ``fused_channels=C``.

    Head outputs and ``'fused'`` are contiguous NCHW tensors. On CPU the backbone
    runs in channels-last memory format (``channels_last_on_cpu=True``, 20-35%
    faster there), so the ``'features'`` maps may be channels-last strided (use
    ``reshape`` rather than ``view`` on them); values do not depend on the format.

    ``(h, w) = (H, W) / heatmap_stride``; ``H`` and ``W`` must be divisible by
    ``input_multiple`` (a ``ValueError`` names the sizes otherwise).

    Attributes: ``name``, ``num_keypoints``, ``heatmap_stride``, ``input_multiple``,
    ``config`` (the ``build_model`` arguments), ``backbone``, ``head``, ``fusion``
    (or None), ``kcn`` (or None). Backbone weights are interchangeable between
    models built with the same backbone arguments and different heads
    (``b.backbone.load_state_dict(a.backbone.state_dict())``), e.g. for Mallis et
    al.'s stage 2.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, *, name: str, num_keypoints: int,
                 fusion: FeatureFusion | None = None, kcn: KeypointClassifier | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 channels_last_on_cpu: bool = True, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.shape[1] != 3 or std_t.shape[1] != 3:
            raise ValueError(f"mean and std must have 3 values, got {list(mean)} and {list(std)}")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)
        self.backbone = backbone
        self.head = head
        self.fusion = fusion
        self.kcn = kcn
        self.channels_last_on_cpu = channels_last_on_cpu
        self.name = name
        self.num_keypoints = num_keypoints
        self.heatmap_stride = backbone.heatmap_stride
        self.input_multiple = backbone.input_multiple
        self.config = dict(config or {})

    def heatmap_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the outputs for an input of ``height x width`` (checked)."""
        self._check_size(height, width)
        return height // self.heatmap_stride, width // self.heatmap_stride

    def _check_size(self, height: int, width: int) -> None:
        m = self.input_multiple
        if height % m or width % m:
            raise ValueError(
                f"model {self.name!r} (heatmap_stride={self.heatmap_stride}) needs input height and width "
                f"divisible by {m}; got {height}x{width}"
            )

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"model {self.name!r} expects images (B, 3, H, W), got {shape}")
        if not x.is_floating_point():
            raise TypeError(f"model {self.name!r} expects float images in [0, 1], got dtype {x.dtype}")
        self._check_size(int(x.shape[2]), int(x.shape[3]))
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if self.channels_last_on_cpu and x.device.type == "cpu":
            # oneDNN convolutions and BatchNorm run 20-35% faster in NHWC on CPU.
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.backbone(x)
        out: dict[str, Any] = {k: v.contiguous() for k, v in self.head(features[0]).items()}
        out["features"] = features
        if self.fusion is not None:
            out["fused"] = self.fusion(features).contiguous()
        return out

    def classify_keypoints(self, out: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoint representations and KCN logits from a forward output.

        Returns ``(z, logits)`` with ``z = GMP(fused * heatmaps_i)`` of shape
        ``(B, K, C)`` and ``logits = kcn(z)`` of shape ``(B, K, K)``. Needs a model
        built with ``head='heatmap'`` and ``fused_channels``.
        """
        if self.kcn is None or "fused" not in out or "heatmaps" not in out:
            raise ValueError(
                f"model {self.name!r}: classify_keypoints needs head='heatmap' and fused_channels set at build time"
            )
        z = keypoint_representations(out["fused"], out["heatmaps"])
        return z, self.kcn(z)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameters of ``model``; buffers are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_model(name: str, num_keypoints: int, *, width: int | None = None, heatmap_stride: int = 2,
                head: str = "heatmap", descriptor_dim: int = 64, norm: str = "bn",
                fused_channels: int | None = None, kcn_hidden: int | None = None,
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                channels_last_on_cpu: bool = True, **kw: Any) -> KeypointModel:
    """Build a keypoint model.

    Args:
        name: backbone, a key of :data:`MODELS` (``'hrnet_small'``, ``'hourglass'``,
            ``'resnet_deconv'``, ``'unet_small'``).
        num_keypoints: K, the heatmap channels (and the KCN's classes); ignored
            (may be 0) with ``head='detector_descriptor'``, which has no KCN.
        width: base width; ``None`` takes the backbone's default (hrnet_small 16,
            hourglass 32, resnet_deconv 16, unet_small 12).
        heatmap_stride: 1, 2 or 4 (input / heatmap size).
        head: ``'heatmap'`` (K raw heatmaps) or ``'detector_descriptor'``.
        descriptor_dim: d of the descriptor head.
        norm: ``'bn'`` (BatchNorm) or ``'gn'`` (GroupNorm, groups dividing the width).
        fused_channels: C of Moskvyak et al.'s feature fusion (``out['fused']``) and,
            with ``head='heatmap'``, the input size of the KCN (``model.kcn``).
        kcn_hidden: hidden layer of the KCN (None: a single linear layer).
        mean, std: input normalisation (images are expected in [0, 1]).
        channels_last_on_cpu: run the backbone in NHWC memory format on CPU (faster;
            same values up to float rounding).
        **kw: backbone-specific options (e.g. ``depth`` for ``'hourglass'``/
            ``'unet_small'``, ``num_branches``/``blocks``/``modules`` for
            ``'hrnet_small'``, ``blocks``/``deconv_width``/``num_deconv`` for
            ``'resnet_deconv'``).

    Parameter counts with the defaults and ``num_keypoints=10``, head
    ``'heatmap'``, no fusion: hrnet_small 192,826; hourglass 73,274;
    resnet_deconv 406,362; unet_small 273,346 (backbone counts in
    :mod:`landmark_study.models.backbones` plus ``(out_channels + 1) * K``).

    Raises:
        ValueError: unknown ``name`` (the message lists :data:`MODELS`), ``head`` or
            ``norm``; bad sizes; unknown backbone options.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")
    check_stride(heatmap_stride)
    needs_k = head == "heatmap"
    if not isinstance(num_keypoints, int) or isinstance(num_keypoints, bool) or num_keypoints < (1 if needs_k else 0):
        raise ValueError(f"num_keypoints must be a positive int, got {num_keypoints!r}")
    cls = MODELS[name]
    accepted = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; accepted: {', '.join(accepted)}"
        )
    bb_args: dict[str, Any] = dict(heatmap_stride=heatmap_stride, norm=norm, **kw)
    if width is not None:
        bb_args["width"] = width
    backbone = cls(**bb_args)
    head_mod: nn.Module
    if head == "heatmap":
        head_mod = HeatmapHead(backbone.out_channels, num_keypoints)
    else:
        head_mod = DetectorDescriptorHead(backbone.out_channels, descriptor_dim)
    fusion = kcn = None
    if fused_channels is not None:
        fusion = FeatureFusion(backbone.feature_channels, fused_channels)
        if head == "heatmap":
            kcn = KeypointClassifier(fused_channels, num_keypoints, kcn_hidden)
    config = dict(name=name, num_keypoints=num_keypoints, width=width, heatmap_stride=heatmap_stride,
                  head=head, descriptor_dim=descriptor_dim, norm=norm, fused_channels=fused_channels,
                  kcn_hidden=kcn_hidden, mean=tuple(mean), std=tuple(std),
                  channels_last_on_cpu=channels_last_on_cpu, **kw)
    return KeypointModel(backbone, head_mod, name=name, num_keypoints=num_keypoints, fusion=fusion, kcn=kcn,
                         mean=mean, std=std, channels_last_on_cpu=channels_last_on_cpu, config=config)
