"""Random geometric transforms that move images, points and heatmaps together.

Every transform is a batch of 3x3 homogeneous matrices ``M`` of shape ``(B, 3, 3)``
acting on *image pixel* coordinates ``(x, y, 1)`` (pixel centres at integers, the
image of width ``W`` spans ``x in [-0.5, W - 0.5]``; see :mod:`landmark_study`).
``M`` maps a point of the source image to its place in the warped image, so

* ``warp_points(p, M)`` moves points, and
* ``warp_images(img, M)`` resamples the image so that the content at ``p`` lands on
  ``warp_points(p, M)`` (kornia's ``warp_perspective`` with ``align_corners=True``,
  whose normalisation maps pixel centre ``0`` to ``-1`` and ``W - 1`` to ``+1``,
  which is exactly our integer-pixel-centre convention; the tests check it with a
  rendered dot).

Heatmaps of size ``(h, w)`` live in their own pixel frame,
``x_h = (x + 0.5) * w / W - 0.5``; :func:`to_heatmap_matrix` conjugates an
image-pixel matrix into that frame and :func:`warp_heatmaps` uses it.

Samplers take an explicit :class:`torch.Generator`; they draw every random number on
the generator's device (CPU by default) in a fixed order whatever the ranges are, so
changing one range does not change the other parameters drawn for the same seed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from kornia.geometry.transform import get_perspective_transform, warp_perspective

__all__ = [
    "as_tensor",
    "sample_affine",
    "sample_affine_normal",
    "sample_perspective",
    "sample_flip",
    "identity",
    "affine_matrix",
    "flip_matrix",
    "compose",
    "invert",
    "relative",
    "warp_images",
    "warp_points",
    "warp_keypoints",
    "inside_frame",
    "flip_keypoint_order",
    "to_heatmap_matrix",
    "warp_heatmaps",
]

_EPS_W = 1e-8  # smallest |w| allowed in the homogeneous divide


# --------------------------------------------------------------------------- helpers


def as_tensor(
    x: Any, *, dtype: torch.dtype | None = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return ``x`` (tensor, numpy array, list or number) as a torch tensor.

    Tensors keep their autograd graph (only cast/moved when ``dtype``/``device`` ask
    for it); ``dtype=None`` keeps a tensor's dtype and lets torch infer others.
    """
    if isinstance(x, torch.Tensor):
        return x.to(device=device if device is not None else x.device, dtype=dtype or x.dtype)
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.to(device=device, dtype=dtype) if (dtype or device) else t
    return torch.as_tensor(x, dtype=dtype, device=device)


def _check_size(size: Sequence[int], name: str = "size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (H, W) with two positive ints, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be (H, W) with two positive ints, got {size!r}")
    return h, w


def _check_matrix(M: Any, name: str = "M", batch: int | None = None) -> torch.Tensor:
    """Validate a ``(B, 3, 3)`` batch of matrices (numpy accepted, float32 if not float)."""
    if not isinstance(M, torch.Tensor):
        M = as_tensor(M, dtype=None)
    if not M.is_floating_point():
        M = M.to(torch.float32)
    if M.ndim != 3 or tuple(M.shape[-2:]) != (3, 3):
        raise ValueError(f"{name} must have shape (B, 3, 3), got {tuple(M.shape)}")
    if batch is not None and M.shape[0] != batch:
        raise ValueError(f"{name} has batch size {M.shape[0]} but the data has batch size {batch}")
    return M


def _check_batch(batch: int) -> int:
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return int(batch)


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=_gen_device(generator), dtype=torch.float64)
    return lo + (hi - lo) * u


def _normal(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(n, generator=generator, device=_gen_device(generator), dtype=torch.float64)


def _nonneg(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _probability(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    return p


# --------------------------------------------------------------------------- matrices


def identity(
    batch: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(B, 3, 3)`` identity matrices."""
    batch = _check_batch(batch)
    return torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3).clone()


def affine_matrix(
    size: Sequence[int],
    *,
    angle: Any = 0.0,
    scale: Any = 1.0,
    translation: Any = (0.0, 0.0),
    shear: Any = (0.0, 0.0),
) -> torch.Tensor:
    """Build affine matrices about the image centre from explicit parameters.

    ``angle`` (degrees, ``(B,)`` or scalar; positive = counter-clockwise on screen,
    as in OpenCV/kornia), ``scale`` (isotropic factor), ``translation`` (``(B, 2)``
    pixels, ``(tx, ty)``) and ``shear`` (``(B, 2)`` degrees, ``(sx, sy)``).
    The result is ``T(c + t) @ R @ Sh @ S @ T(-c)`` with ``c = ((W-1)/2, (H-1)/2)``:
    points are scaled, sheared and rotated about the centre, then shifted by ``t``.
    Returned as float32 ``(B, 3, 3)`` (B from the broadcast parameters).
    """
    h, w = _check_size(size)
    angle = torch.as_tensor(angle, dtype=torch.float64).reshape(-1)
    scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
    translation = torch.as_tensor(translation, dtype=torch.float64).reshape(-1, 2)
    shear = torch.as_tensor(shear, dtype=torch.float64).reshape(-1, 2)
    b = max(angle.shape[0], scale.shape[0], translation.shape[0], shear.shape[0])
    try:
        angle, scale = angle.expand(b), scale.expand(b)
        translation, shear = translation.expand(b, 2), shear.expand(b, 2)
    except RuntimeError:
        raise ValueError("affine_matrix: parameters have incompatible batch sizes") from None
    if torch.any(scale <= 0):
        raise ValueError(f"affine_matrix: scale must be > 0, got {scale.tolist()}")
    a = torch.deg2rad(angle)
    cos, sin = torch.cos(a), torch.sin(a)
    eye = torch.eye(3, dtype=torch.float64).expand(b, 3, 3)
    R = eye.clone()
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1] = cos, sin, -sin, cos
    Sh = eye.clone()
    Sh[:, 0, 1] = torch.tan(torch.deg2rad(shear[:, 0]))
    Sh[:, 1, 0] = torch.tan(torch.deg2rad(shear[:, 1]))
    S = eye.clone()
    S[:, 0, 0], S[:, 1, 1] = scale, scale
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    T_in = eye.clone()
    T_in[:, 0, 2], T_in[:, 1, 2] = -cx, -cy
    T_out = eye.clone()
    T_out[:, 0, 2], T_out[:, 1, 2] = cx + translation[:, 0], cy + translation[:, 1]
    return (T_out @ R @ Sh @ S @ T_in).to(torch.float32)


def flip_matrix(flipped: Any, size: Sequence[int]) -> torch.Tensor:
    """Horizontal-flip matrices (``x -> (W-1) - x``) where ``flipped`` is true, identity elsewhere."""
    _, w = _check_size(size)
    flipped = as_tensor(flipped, dtype=torch.bool).reshape(-1)
    M = identity(flipped.shape[0], device=flipped.device)
    M[flipped, 0, 0] = -1.0
    M[flipped, 0, 2] = float(w - 1)
    return M


def compose(*matrices: torch.Tensor) -> torch.Tensor:
    """Compose transforms in the order they are applied.

    ``compose(A, B)`` means "apply A, then B" and returns ``B @ A``;
    ``compose(A, B, C)`` returns ``C @ B @ A``. All must be ``(B, 3, 3)`` with the
    same batch size.
    """
    if len(matrices) == 0:
        raise ValueError("compose needs at least one matrix")
    mats = [_check_matrix(m, f"matrix #{i}") for i, m in enumerate(matrices)]
    batch = mats[0].shape[0]
    for i, m in enumerate(mats):
        if m.shape[0] != batch:
            raise ValueError(f"compose: matrix #{i} has batch size {m.shape[0]}, matrix #0 has {batch}")
    out = mats[0]
    for m in mats[1:]:
        dtype = torch.promote_types(out.dtype, m.dtype)
        out = m.to(dtype) @ out.to(dtype)
    return out


def invert(M: torch.Tensor) -> torch.Tensor:
    """Inverse transforms (differentiable ``torch.linalg.inv``)."""
    M = _check_matrix(M)
    return torch.linalg.inv(M)


def relative(M_a: torch.Tensor, M_b: torch.Tensor) -> torch.Tensor:
    """Map from view A to view B when both are warps of one original: ``M_b @ inv(M_a)``."""
    M_a, M_b = _check_matrix(M_a, "M_a"), _check_matrix(M_b, "M_b")
    if M_a.shape[0] != M_b.shape[0]:
        raise ValueError(f"relative: M_a has batch size {M_a.shape[0]}, M_b has {M_b.shape[0]}")
    return compose(invert(M_a), M_b)


# --------------------------------------------------------------------------- samplers


def sample_affine(
    batch: int,
    size: Sequence[int],
    *,
    rotation: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    translation: float = 0.0,
    shear: float = 0.0,
    rotation_p: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random affine transforms about the image centre, ``(B, 3, 3)`` float32.

    * ``rotation``: angle uniform in ``[-rotation, rotation]`` degrees, used with
      probability ``rotation_p`` and 0 otherwise (Xie et al. use ``p = 0.6``);
    * ``scale``: isotropic factor uniform in ``[lo, hi]``;
    * ``translation``: ``tx`` uniform in ``[-t W, t W]``, ``ty`` in ``[-t H, t H]``;
    * ``shear``: shear angles ``(sx, sy)`` each uniform in ``[-shear, shear]`` degrees.

    ``size`` is ``(H, W)``; the pivot is ``((W-1)/2, (H-1)/2)``. With
    ``return_params=True`` also returns the drawn parameters
    (``angle``, ``scale``, ``translation``, ``shear``) as float64 tensors.
    """
    batch = _check_batch(batch)
    h, w = _check_size(size)
    rotation = _nonneg(rotation, "rotation")
    translation = _nonneg(translation, "translation")
    shear = _nonneg(shear, "shear")
    if shear >= 90:
        raise ValueError(f"shear must be < 90 degrees, got {shear}")
    rotation_p = _probability(rotation_p, "rotation_p")
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a (lo, hi) pair, got {scale!r}") from None
    if not (0 < lo <= hi):
        raise ValueError(f"scale must satisfy 0 < lo <= hi, got {scale!r}")

    angle = _uniform(batch, -rotation, rotation, generator)
    use_rot = _uniform(batch, 0.0, 1.0, generator) < rotation_p
    angle = torch.where(use_rot, angle, torch.zeros_like(angle))
    s = _uniform(batch, lo, hi, generator)
    t = torch.stack(
        [_uniform(batch, -translation * w, translation * w, generator),
         _uniform(batch, -translation * h, translation * h, generator)],
        dim=-1,
    )
    sh = torch.stack([_uniform(batch, -shear, shear, generator), _uniform(batch, -shear, shear, generator)], dim=-1)
    params = {"angle": angle.cpu(), "scale": s.cpu(), "translation": t.cpu(), "shear": sh.cpu()}
    M = affine_matrix((h, w), **params).to(device=device)
    return (M, params) if return_params else M


def sample_affine_normal(
    batch: int,
    size: Sequence[int],
    *,
    rotation_sigma: float = 30.0,
    rotation_clip: float = 60.0,
    rotation_p: float = 0.6,
    scale_sigma: float = 0.25,
    scale_clip: float = 0.25,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random affine transforms with Xie et al.'s (SimpleBaselines) normal law.

    ``scale = clip(1 + scale_sigma * N, 1 - scale_clip, 1 + scale_clip)`` and
    ``angle = clip(rotation_sigma * N, -rotation_clip, rotation_clip)`` degrees with
    probability ``rotation_p`` (else 0). Defaults are the paper's: ``0.25``,
    ``0.25``, ``30``, ``60``, ``p = 0.6`` (use ``rotation_p=0.8`` for their hard
    augmentation). In SimpleBaselines the factor scales the crop box, i.e. the
    object by ``1/scale``; the law is near-symmetric so we apply it to the object
    directly. Pivot: the image centre. Returns float32 ``(B, 3, 3)``.
    """
    batch = _check_batch(batch)
    h, w = _check_size(size)
    rotation_sigma = _nonneg(rotation_sigma, "rotation_sigma")
    rotation_clip = _nonneg(rotation_clip, "rotation_clip")
    scale_sigma = _nonneg(scale_sigma, "scale_sigma")
    scale_clip = _nonneg(scale_clip, "scale_clip")
    if scale_clip >= 1:
        raise ValueError(f"scale_clip must be < 1 (scale stays positive), got {scale_clip}")
    rotation_p = _probability(rotation_p, "rotation_p")

    s = (1.0 + scale_sigma * _normal(batch, generator)).clamp(1.0 - scale_clip, 1.0 + scale_clip)
    angle = (rotation_sigma * _normal(batch, generator)).clamp(-rotation_clip, rotation_clip)
    use_rot = _uniform(batch, 0.0, 1.0, generator) < rotation_p
    angle = torch.where(use_rot, angle, torch.zeros_like(angle))
    params = {
        "angle": angle.cpu(),
        "scale": s.cpu(),
        "translation": torch.zeros(batch, 2, dtype=torch.float64),
        "shear": torch.zeros(batch, 2, dtype=torch.float64),
    }
    M = affine_matrix((h, w), **params).to(device=device)
    return (M, params) if return_params else M


def _corners(h: int, w: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]], dtype=torch.float64)


def sample_perspective(
    batch: int,
    size: Sequence[int],
    *,
    distortion: float = 0.2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random homographies from bounded corner jitter, ``(B, 3, 3)`` float32.

    Each corner pixel of the image (``(0,0)``, ``(W-1,0)``, ``(W-1,H-1)``,
    ``(0,H-1)``) moves by ``dx ~ U[-d W, d W]``, ``dy ~ U[-d H, d H]`` with
    ``d = distortion``; the homography maps the original corners onto the moved
    ones (kornia ``get_perspective_transform``). Bounding the jitter, as Moskvyak
    et al. do, avoids extreme warps: for ``d < 0.25`` each corner stays in its own
    quarter of the image, so the quadrilateral stays non-degenerate.
    """
    batch = _check_batch(batch)
    h, w = _check_size(size)
    distortion = _nonneg(distortion, "distortion")
    if distortion >= 0.25:
        raise ValueError(f"distortion must be in [0, 0.25) so corners cannot cross, got {distortion}")
    src = _corners(h, w).expand(batch, 4, 2)
    u = torch.rand(batch, 4, 2, generator=generator, device=_gen_device(generator), dtype=torch.float64).cpu()
    bound = torch.tensor([distortion * w, distortion * h], dtype=torch.float64)
    dst = src + (2.0 * u - 1.0) * bound
    M = get_perspective_transform(src, dst)
    M = M / M[:, 2:3, 2:3]
    return M.to(device=device, dtype=torch.float32)


def sample_flip(
    batch: int,
    size: Sequence[int],
    *,
    p: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips: ``(M (B,3,3), flipped (B,) bool)``.

    A flipped sample has ``x -> (W-1) - x``; remember to rename left/right joints
    with :func:`flip_keypoint_order`.
    """
    batch = _check_batch(batch)
    _check_size(size)
    p = _probability(p, "p")
    flipped = (_uniform(batch, 0.0, 1.0, generator) < p).cpu()
    return flip_matrix(flipped, size).to(device=device), flipped.to(device=device)


# --------------------------------------------------------------------------- applying


def warp_points(points: Any, M: torch.Tensor) -> torch.Tensor:
    """Apply ``M (B,3,3)`` to ``points (B,K,2)`` (homogeneous divide); returns ``(B,K,2)``."""
    points = as_tensor(points, dtype=None)
    if not points.is_floating_point():
        points = points.to(torch.float32)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, K, 2), got {tuple(points.shape)}")
    M = _check_matrix(M, batch=points.shape[0])
    dtype = torch.promote_types(points.dtype, M.dtype)
    points, M = points.to(dtype), M.to(device=points.device, dtype=dtype)
    hom = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)  # (B,K,3)
    out = hom @ M.transpose(1, 2)
    wgt = out[..., 2:3]
    safe = torch.where(wgt.abs() < _EPS_W, torch.where(wgt < 0, -_EPS_W, _EPS_W), wgt)
    return out[..., :2] / safe


def _homogeneous_w(points: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    M = M.to(device=points.device, dtype=points.dtype)
    return points[..., 0] * M[:, 2, None, 0] + points[..., 1] * M[:, 2, None, 1] + M[:, 2, None, 2]


def inside_frame(points: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Boolean mask of points inside ``[-0.5, W-0.5] x [-0.5, H-0.5]`` (closed)."""
    h, w = _check_size(size)
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5) & torch.isfinite(x) & torch.isfinite(y)


def warp_keypoints(
    points: Any, visibility: Any, M: torch.Tensor, size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp keypoints and turn off the visibility of those that leave the frame.

    ``size`` is the ``(H, W)`` of the *warped* image; a point is kept visible when
    it was visible, lands in ``[-0.5, W-0.5] x [-0.5, H-0.5]`` and is in front of
    the projection (``w > 0``). Returns ``(points (B,K,2), visibility (B,K))``
    with the visibility's dtype preserved.
    """
    points = as_tensor(points, dtype=None)
    if not points.is_floating_point():
        points = points.to(torch.float32)
    visibility = as_tensor(visibility, dtype=None, device=points.device)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, K, 2), got {tuple(points.shape)}")
    if tuple(visibility.shape) != tuple(points.shape[:2]):
        raise ValueError(f"visibility must have shape {tuple(points.shape[:2])}, got {tuple(visibility.shape)}")
    out = warp_points(points, M)
    keep = inside_frame(out, size) & (_homogeneous_w(points.to(out.dtype), M) > 0)
    vis = torch.where(keep, visibility, torch.zeros_like(visibility))
    return out, vis


def flip_keypoint_order(
    points: Any, visibility: Any, flip_perm: Any, flipped: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rename joints (left <-> right) for the flipped samples only.

    For a flipped sample ``new[k] = old[flip_perm[k]]`` (``DatasetSpec.flip_permutation``
    convention); other samples are returned unchanged. ``points (B,K,2)``,
    ``visibility (B,K)``, ``flip_perm (K,)`` a permutation, ``flipped (B,)`` bool.
    """
    points = as_tensor(points, dtype=None)
    visibility = as_tensor(visibility, dtype=None, device=points.device)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, K, 2), got {tuple(points.shape)}")
    b, k = points.shape[:2]
    if tuple(visibility.shape) != (b, k):
        raise ValueError(f"visibility must have shape {(b, k)}, got {tuple(visibility.shape)}")
    perm = as_tensor(flip_perm, dtype=torch.long, device=points.device).reshape(-1)
    if perm.shape[0] != k or not torch.equal(torch.sort(perm).values, torch.arange(k, device=perm.device)):
        raise ValueError(f"flip_perm must be a permutation of 0..{k - 1}, got {perm.tolist()}")
    flipped = as_tensor(flipped, dtype=torch.bool, device=points.device).reshape(-1)
    if flipped.shape[0] != b:
        raise ValueError(f"flipped must have shape ({b},), got {tuple(flipped.shape)}")
    new_points = torch.where(flipped[:, None, None], points[:, perm], points)
    new_vis = torch.where(flipped[:, None], visibility[:, perm], visibility)
    return new_points, new_vis


def warp_images(
    images: torch.Tensor,
    M: torch.Tensor,
    out_size: Sequence[int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Warp ``images (B,C,H,W)`` (float) by image-pixel matrices ``M (B,3,3)``.

    The content at source pixel ``p`` lands at ``warp_points(p, M)`` in an output of
    size ``out_size`` (default ``(H, W)``). Uses kornia's ``warp_perspective`` with
    ``align_corners=True`` (pixel centres at integers). Differentiable in
    ``images`` and ``M``.
    """
    if not isinstance(images, torch.Tensor):
        images = as_tensor(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating tensor, got dtype {images.dtype}")
    M = _check_matrix(M, batch=images.shape[0])
    size = tuple(images.shape[-2:]) if out_size is None else _check_size(out_size, "out_size")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
    M = M.to(device=images.device, dtype=images.dtype)
    return warp_perspective(images, M, dsize=size, mode=mode, padding_mode=padding_mode, align_corners=True)


def _scale_matrix(image_size: tuple[int, int], heatmap_size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    (H, W), (h, w) = image_size, heatmap_size
    sx, sy = w / W, h / H
    S = torch.tensor(
        [[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]],
        dtype=like.dtype,
        device=like.device,
    )
    return S


def to_heatmap_matrix(M: torch.Tensor, image_size: Sequence[int], heatmap_size: Sequence[int]) -> torch.Tensor:
    """Conjugate image-pixel matrices into heatmap pixels: ``S @ M @ inv(S)``.

    ``S`` maps image px to heatmap px, ``x_h = (x + 0.5) * w / W - 0.5`` (and the
    same for ``y``). Source and warped images are assumed to share ``image_size``.
    """
    M = _check_matrix(M)
    image_size = _check_size(image_size, "image_size")
    heatmap_size = _check_size(heatmap_size, "heatmap_size")
    S = _scale_matrix(image_size, heatmap_size, M)
    S_inv = _scale_matrix(heatmap_size, image_size, M)  # exact inverse of S
    return S @ M @ S_inv


def warp_heatmaps(heatmaps: torch.Tensor, M: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """Warp ``heatmaps (B,K,h,w)`` by the *image-pixel* matrices ``M`` (zero padding).

    The heatmap size is read from ``heatmaps``; ``image_size`` is the ``(H, W)`` of
    the images the heatmaps belong to. Differentiable in ``heatmaps`` and ``M``.
    """
    if not isinstance(heatmaps, torch.Tensor) or heatmaps.ndim != 4:
        shape = tuple(heatmaps.shape) if hasattr(heatmaps, "shape") else type(heatmaps).__name__
        raise ValueError(f"heatmaps must be a (B, K, h, w) tensor, got {shape}")
    M = _check_matrix(M, batch=heatmaps.shape[0])
    M_h = to_heatmap_matrix(M.to(device=heatmaps.device, dtype=heatmaps.dtype), image_size, heatmaps.shape[-2:])
    return warp_images(heatmaps, M_h, padding_mode="zeros")
