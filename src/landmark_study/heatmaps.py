"""Heatmap codec: encode points as Gaussian / delta maps, decode maps to points.

Like mmpose's ``codecs``, encoding and decoding live together and are tested as a
round trip. Coordinates follow the package convention (pixel centres at integers):

* image px -> heatmap px: ``x_h = (x + 0.5) * w / W - 0.5`` (:func:`image_to_heatmap`),
  the ``align_corners=False`` relation; :func:`heatmap_to_image` is its exact inverse;
* encoders take points in *heatmap* pixels and return ``(..., K, h, w)`` maps plus
  per-joint weights;
* decoders return points in heatmap pixels ``(x, y)`` = ``(column, row)``.

Decoders:

* :func:`decode_argmax` -- integer argmax plus the classic quarter-pixel shift toward
  the higher neighbour (Simple Baselines / HRNet); ``refine=True`` adds the DARK-style
  Taylor step on the log-heatmap, exact for an unclipped Gaussian.
* :func:`soft_argmax` -- Honari et al. (2018) Eq. 1, the expectation of pixel
  coordinates under ``softmax(beta * M)``. Note its *bias*: every pixel gets weight
  ``exp(beta * m) >= exp(0)``, so on a peak-1 Gaussian with ``beta = 1`` the
  near-uniform background pulls the estimate strongly toward the map centre. For an
  exactly Gaussian target, ``soft_argmax(log(heatmap), beta=1)`` is unbiased
  (the softmax is then the normalised Gaussian itself); with raw heatmaps a large
  ``beta`` (e.g. 20 for ``sigma = 3``) makes the background negligible.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "image_to_heatmap",
    "heatmap_to_image",
    "encode_gaussian",
    "encode_delta",
    "decode_argmax",
    "soft_argmax",
]


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (H, W) with two positive ints, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be (H, W) with two positive ints, got {size!r}")
    return h, w


def _points_tensor(points: Any, name: str = "points") -> torch.Tensor:
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(np.ascontiguousarray(points))
    elif not isinstance(points, torch.Tensor):
        points = torch.as_tensor(points)
    if not points.is_floating_point():
        points = points.to(torch.float32)
    if points.ndim < 1 or points.shape[-1] != 2:
        raise ValueError(f"{name} must have a last axis of size 2 (x, y), got shape {tuple(points.shape)}")
    return points


def _rescale(points: Any, src: tuple[int, int], dst: tuple[int, int]) -> Any:
    (sh, sw), (dh, dw) = src, dst
    factor = np.array([dw / sw, dh / sh])
    if isinstance(points, torch.Tensor):
        f = torch.as_tensor(factor, dtype=points.dtype if points.is_floating_point() else torch.float32,
                            device=points.device)
        return (points + 0.5) * f - 0.5
    arr = np.asarray(points, dtype=np.result_type(np.asarray(points).dtype, np.float32))
    if arr.shape[-1:] != (2,):
        raise ValueError(f"points must have a last axis of size 2 (x, y), got shape {arr.shape}")
    return ((arr + 0.5) * factor - 0.5).astype(arr.dtype)


def image_to_heatmap(points: Any, image_size: Sequence[int], heatmap_size: Sequence[int]) -> Any:
    """Image px -> heatmap px, ``x_h = (x + 0.5) * w / W - 0.5``. Sizes are ``(H, W)``/``(h, w)``.

    Torch in -> torch out (differentiable), numpy in -> numpy out.
    """
    src, dst = _check_size(image_size, "image_size"), _check_size(heatmap_size, "heatmap_size")
    if isinstance(points, torch.Tensor) and points.shape[-1:] != (2,):
        raise ValueError(f"points must have a last axis of size 2 (x, y), got shape {tuple(points.shape)}")
    return _rescale(points, src, dst)


def heatmap_to_image(points: Any, image_size: Sequence[int], heatmap_size: Sequence[int]) -> Any:
    """Heatmap px -> image px, the exact inverse of :func:`image_to_heatmap`."""
    src, dst = _check_size(heatmap_size, "heatmap_size"), _check_size(image_size, "image_size")
    if isinstance(points, torch.Tensor) and points.shape[-1:] != (2,):
        raise ValueError(f"points must have a last axis of size 2 (x, y), got shape {tuple(points.shape)}")
    return _rescale(points, src, dst)


def _weights(points: torch.Tensor, visibility: Any) -> torch.Tensor:
    lead = tuple(points.shape[:-1])
    if visibility is None:
        vis = torch.ones(lead, dtype=torch.float32, device=points.device)
    else:
        if isinstance(visibility, np.ndarray):
            visibility = torch.from_numpy(np.ascontiguousarray(visibility))
        vis = torch.as_tensor(visibility, device=points.device).to(torch.float32)
        if tuple(vis.shape) != lead:
            raise ValueError(f"visibility must have shape {lead} to match points {tuple(points.shape)}, "
                             f"got {tuple(vis.shape)}")
    finite = torch.isfinite(points).all(dim=-1)
    return torch.where(finite, vis, torch.zeros_like(vis))


def encode_gaussian(
    points: Any,
    size: Sequence[int],
    sigma: float,
    visibility: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one Gaussian per joint: ``exp(-|p - point|^2 / (2 sigma^2))``.

    ``points (..., K, 2)`` in heatmap pixels (sub-pixel allowed), ``size = (h, w)``.
    Returns ``(heatmaps (..., K, h, w) float32, weights (..., K) float32)``: the
    continuous peak is 1 at the point; ``weights`` is ``visibility`` (1 where
    ``None``). Joints with zero visibility or non-finite coordinates get an all-zero
    map (and weight 0 when non-finite). Points outside the map keep their weight and
    render their tail; mark them invisible first (``geometry.warp_keypoints``) if the
    loss should ignore them. Differentiable in ``points``.
    """
    points = _points_tensor(points)
    h, w = _check_size(size, "size")
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    weights = _weights(points, visibility)
    keep = (weights > 0)[..., None, None]
    p = torch.where(torch.isfinite(points), points, torch.zeros_like(points)).to(torch.float32)
    xs = torch.arange(w, dtype=torch.float32, device=p.device)
    ys = torch.arange(h, dtype=torch.float32, device=p.device)
    gx = torch.exp(-((xs - p[..., 0:1]) ** 2) / (2 * sigma**2))  # (..., K, w)
    gy = torch.exp(-((ys - p[..., 1:2]) ** 2) / (2 * sigma**2))  # (..., K, h)
    maps = gy[..., :, None] * gx[..., None, :]
    maps = torch.where(keep, maps, torch.zeros_like(maps))
    return maps, weights


def encode_delta(points: Any, size: Sequence[int], visibility: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one delta map per joint: 1 at the nearest pixel, 0 elsewhere.

    The nearest pixel is ``floor(x + 0.5), floor(y + 0.5)`` (pixel ``i`` covers
    ``[i - 0.5, i + 0.5)``). Invisible, non-finite or out-of-map points give an
    all-zero map. Returns ``(maps (..., K, h, w) float32, weights (..., K))`` with
    ``weights`` as in :func:`encode_gaussian`. Used for Mallis et al.'s detector
    targets (sum or max over ``K`` for a single-channel target).
    """
    points = _points_tensor(points)
    h, w = _check_size(size, "size")
    weights = _weights(points, visibility)
    p = torch.where(torch.isfinite(points), points, torch.full_like(points, -1e9)).detach()
    ix = torch.floor(p[..., 0] + 0.5)
    iy = torch.floor(p[..., 1] + 0.5)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (weights > 0)
    flat_idx = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long()
    maps = torch.zeros(tuple(points.shape[:-1]) + (h * w,), dtype=torch.float32, device=points.device)
    maps.scatter_(-1, flat_idx[..., None], inside[..., None].to(torch.float32))
    return maps.reshape(tuple(points.shape[:-1]) + (h, w)), weights


def _check_maps(heatmaps: Any, name: str = "heatmaps") -> torch.Tensor:
    if isinstance(heatmaps, np.ndarray):
        heatmaps = torch.from_numpy(np.ascontiguousarray(heatmaps))
    if not isinstance(heatmaps, torch.Tensor) or heatmaps.ndim < 3:
        shape = tuple(heatmaps.shape) if hasattr(heatmaps, "shape") else type(heatmaps).__name__
        raise ValueError(f"{name} must be a (..., K, h, w) tensor, got {shape}")
    if not heatmaps.is_floating_point():
        heatmaps = heatmaps.to(torch.float32)
    return heatmaps


def decode_argmax(
    heatmaps: Any, subpixel: bool = True, refine: bool = False, eps: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``(..., K, h, w)`` heatmaps by argmax; returns ``(points (..., K, 2), maxvals (..., K))``.

    ``subpixel=True`` adds the classic shift of 0.25 px toward the higher neighbour
    along each axis (where both neighbours exist), which bounds the error on a
    sampled Gaussian by 0.25 px. ``refine=True`` instead takes one Newton step on
    ``log(max(heatmap, eps))`` at the argmax pixel (DARK, Zhang et al. 2020; without
    their blur modulation), exact up to rounding for an uncut Gaussian; it falls back
    to the quarter shift where the argmax touches the border, the local Hessian is
    not negative definite or the step exceeds one pixel. Ties go to the first
    maximum in row-major order; an all-zero map decodes to its argmax pixel with
    ``maxval = 0``. Not differentiable (use :func:`soft_argmax`).
    """
    heatmaps = _check_maps(heatmaps).detach()
    *lead, h, w = heatmaps.shape
    flat = heatmaps.reshape(-1, h * w)
    maxvals, idx = flat.max(dim=-1)
    px, py = idx % w, idx // w
    pts = torch.stack([px, py], dim=-1).to(heatmaps.dtype)
    if subpixel or refine:
        maps = heatmaps.reshape(-1, h, w)
        n = torch.arange(maps.shape[0], device=maps.device)

        def at(dy: int, dx: int) -> torch.Tensor:
            return maps[n, (py + dy).clamp(0, h - 1), (px + dx).clamp(0, w - 1)]

        has_x = (px > 0) & (px < w - 1)
        has_y = (py > 0) & (py < h - 1)
        shift = torch.stack(
            [torch.where(has_x, 0.25 * torch.sign(at(0, 1) - at(0, -1)), torch.zeros_like(maxvals)),
             torch.where(has_y, 0.25 * torch.sign(at(1, 0) - at(-1, 0)), torch.zeros_like(maxvals))],
            dim=-1,
        )
        if refine:
            def lg(dy: int, dx: int) -> torch.Tensor:
                return torch.log(at(dy, dx).to(torch.float64).clamp_min(eps))

            c = lg(0, 0)
            gx = 0.5 * (lg(0, 1) - lg(0, -1))
            gy = 0.5 * (lg(1, 0) - lg(-1, 0))
            hxx = lg(0, 1) - 2 * c + lg(0, -1)
            hyy = lg(1, 0) - 2 * c + lg(-1, 0)
            hxy = 0.25 * (lg(1, 1) - lg(1, -1) - lg(-1, 1) + lg(-1, -1))
            det = hxx * hyy - hxy**2
            safe_det = torch.where(det > 0, det, torch.ones_like(det))
            ox = -(hyy * gx - hxy * gy) / safe_det
            oy = -(-hxy * gx + hxx * gy) / safe_det
            ok = (has_x & has_y & (det > 0) & (hxx < 0) & (ox.abs() <= 1) & (oy.abs() <= 1)
                  & (maxvals > eps) & torch.isfinite(ox) & torch.isfinite(oy))
            newton = torch.stack([ox, oy], dim=-1).to(heatmaps.dtype)
            shift = torch.where(ok[:, None], newton, shift)
        pts = pts + shift
    return pts.reshape(*lead, 2), maxvals.reshape(*lead)


def soft_argmax(heatmaps: Any, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Differentiable soft-argmax (Honari et al. 2018, Eq. 1): ``(..., K, h, w) -> (..., K, 2)``.

    ``p = softmax(beta * M)`` over the ``h * w`` pixels (max subtracted first, so any
    finite input is safe), then ``(x, y) = sum_ij p_ij (j, i)`` in heatmap pixels.
    See the module docstring for the pull toward the map centre at small ``beta``.
    """
    heatmaps = _check_maps(heatmaps)
    *lead, h, w = heatmaps.shape
    logits = (beta * heatmaps).reshape(*lead, h * w)
    logits = logits - logits.amax(dim=-1, keepdim=True).detach()
    prob = torch.softmax(logits, dim=-1).reshape(*lead, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    x = (prob.sum(dim=-2) * xs).sum(dim=-1)
    y = (prob.sum(dim=-1) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)
