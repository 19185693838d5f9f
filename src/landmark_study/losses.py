"""Loss functions of the studied papers, as pure functions on torch tensors.

No config reading and no module state: each function takes tensors (and a few
plain numbers) and returns a scalar tensor. Shape errors raise ``ValueError``
naming the argument.

* :func:`heatmap_mse` -- supervised JointsMSE (Xie et al.'s code).
* :func:`elt_loss` -- Honari et al. 2018 equivariant landmark transformation.
* :func:`te_loss`, :func:`ti_loss`, :func:`sc_loss`,
  :func:`keypoint_representations` -- Moskvyak et al. 2021 (Eqs. 1, 2, 4).
* :func:`consistency_loss` -- Xie et al. 2021 teacher/student heatmap MSE.
* :func:`contrastive_loss` -- Mallis et al. descriptor loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "consistency_loss",
    "contrastive_loss",
    "contrastive_terms",
    "elt_loss",
    "heatmap_mse",
    "keypoint_representations",
    "sc_loss",
    "te_loss",
    "ti_loss",
]


def _check_ndim(name: str, t: torch.Tensor, ndim: int, desc: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {desc}, got {type(t).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have shape {desc}, got {tuple(t.shape)}")


def _check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")


def _joint_weights(weights: torch.Tensor | None, b: int, k: int, ref: torch.Tensor,
                   name: str = "weights") -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=ref.dtype, device=ref.device)
    if w.shape == (k,):
        w = w.expand(b, k)
    if w.shape != (b, k):
        raise ValueError(f"{name} must have shape ({b}, {k}) or ({k},), got {tuple(w.shape)}")
    return w


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """JointsMSE: ``0.5 * mean over (b, k, pixels) of (w_bk * (pred - target))^2``.

    This is Xie et al.'s (and SimpleBaseline's) ``JointsMSELoss`` with
    ``use_target_weight``: for each joint, ``0.5 * MSE(w * pred_k, w * target_k)``
    (mean over batch and pixels), averaged over joints. ``weights`` (B, K) or
    (K,) are per-joint visibility weights (None = all ones); note that the
    weight multiplies the difference, so it enters squared.
    """
    _check_ndim("pred", pred, 4, "(B, K, h, w)")
    _check_same("pred", pred, "target", target)
    diff = pred - target
    w = _joint_weights(weights, pred.shape[0], pred.shape[1], pred)
    if w is not None:
        diff = diff * w[:, :, None, None]
    return 0.5 * diff.pow(2).mean()


def _apply_homography(points: torch.Tensor, M: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Apply (B, 3, 3) homographies to (B, K, 2) points with a homogeneous divide."""
    ones = torch.ones_like(points[..., :1])
    hom = torch.cat([points, ones], dim=-1) @ M.transpose(1, 2)  # (B, K, 3)
    z = hom[..., 2:]
    z = torch.where(z.abs() < eps, torch.full_like(z, eps) * torch.where(z < 0, -1.0, 1.0), z)
    return hom[..., :2] / z


def elt_loss(points_on_transformed: torch.Tensor, points_original: torch.Tensor, M: torch.Tensor,
             weights: torch.Tensor | None = None, normaliser: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:
    """Honari et al.'s ELT cost ``|| T(L(I)) - L(T(I)) ||^2`` (their Eq. 2, second term).

    Parameters
    ----------
    points_on_transformed : (B, K, 2) landmarks predicted on the transformed image ``L(T(I))``.
    points_original : (B, K, 2) landmarks predicted on the original image ``L(I)``.
    M : (B, 3, 3) the transform ``T`` in image pixel coordinates (original -> transformed).
    weights : optional (B, K) or (K,) per-landmark weights (e.g. a mask).
    normaliser : optional (B,) lengths; squared distances are divided by ``normaliser^2``.
    reduction : ``"mean"`` over landmarks (``1/K * sum_k``, Eq. 2, default) or
        ``"sum"`` over landmarks. Always averaged over the batch. With weights the
        weighted sum is still divided by K for ``"mean"`` (so a mask does not
        rescale the remaining terms).

    Gradients flow into both predictions; detach one yourself if wanted.
    """
    _check_ndim("points_on_transformed", points_on_transformed, 3, "(B, K, 2)")
    if points_on_transformed.shape[-1] != 2:
        raise ValueError(f"points_on_transformed must have shape (B, K, 2), got {tuple(points_on_transformed.shape)}")
    _check_same("points_on_transformed", points_on_transformed, "points_original", points_original)
    b, k, _ = points_original.shape
    if not isinstance(M, torch.Tensor) or M.shape != (b, 3, 3):
        raise ValueError(f"M must have shape ({b}, 3, 3), got {tuple(getattr(M, 'shape', ()))}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    warped = _apply_homography(points_original, M.to(points_original.dtype))
    d2 = (warped - points_on_transformed).pow(2).sum(-1)  # (B, K)
    if normaliser is not None:
        nrm = torch.as_tensor(normaliser, dtype=d2.dtype, device=d2.device)
        if nrm.shape != (b,):
            raise ValueError(f"normaliser must have shape ({b},), got {tuple(nrm.shape)}")
        d2 = d2 / nrm.pow(2)[:, None]
    w = _joint_weights(weights, b, k, d2)
    if w is not None:
        d2 = d2 * w
    per_image = d2.sum(-1)
    if reduction == "mean":
        per_image = per_image / k
    return per_image.mean()


def te_loss(heatmaps_of_transformed: torch.Tensor, transformed_heatmaps: torch.Tensor,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Moskvyak et al.'s transformation equivariance loss (Eq. 2).

    ``MSE(f(g(x)), g(f(x)))``: ``heatmaps_of_transformed`` = f(g(x)), the
    network's heatmaps of the transformed image; ``transformed_heatmaps`` =
    g(f(x)), the heatmaps of the original image warped by the same transform
    (the caller does the warping; the public code does no inverse warp).
    Mean over all elements, as the public TF code's MSE. ``mask``
    (broadcastable to (B, K, h, w), e.g. (B, 1, h, w)) restricts the mean to
    valid pixels (e.g. inside the warped frame).
    """
    _check_ndim("heatmaps_of_transformed", heatmaps_of_transformed, 4, "(B, K, h, w)")
    _check_same("heatmaps_of_transformed", heatmaps_of_transformed, "transformed_heatmaps", transformed_heatmaps)
    d2 = (heatmaps_of_transformed - transformed_heatmaps).pow(2)
    if mask is None:
        return d2.mean()
    try:
        m = torch.broadcast_to(mask.to(d2.dtype), d2.shape)
    except RuntimeError as err:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not broadcast to {tuple(d2.shape)}") from err
    return (d2 * m).sum() / m.sum().clamp_min(1e-12)


def ti_loss(z: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """Moskvyak et al.'s transformation invariance loss (Eq. 4).

    ``mean over batch of || [z_1..z_K] - [z'_1..z'_K] ||^2`` with ``z``, ``z_t``
    (B, K, C) keypoint representations of an image and of its transformed
    copy (the squared L2 distance of the concatenated vectors).
    """
    _check_ndim("z", z, 3, "(B, K, C)")
    _check_same("z", z, "z_t", z_t)
    return (z - z_t).pow(2).flatten(1).sum(-1).mean()


def sc_loss(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Moskvyak et al.'s semantic consistency loss (Eq. 1).

    ``logits`` (B, K, K): the keypoint classifier's scores for the
    representation of keypoint k (row k); the target of row k is class k
    (the heatmap order is fixed). Returns ``1/K sum_k CE(logits[:, k], k)``
    averaged over the batch. ``weights`` (B, K) or (K,) weight/mask the rows;
    the result is then the weighted mean ``sum(w * CE) / sum(w)`` (0 if all
    weights are 0).
    """
    _check_ndim("logits", logits, 3, "(B, K, K)")
    b, k, c = logits.shape
    if c != k:
        raise ValueError(f"logits must have shape (B, K, K), got {tuple(logits.shape)}")
    target = torch.arange(k, device=logits.device).expand(b, k)
    ce = F.cross_entropy(logits.reshape(b * k, k), target.reshape(-1), reduction="none").reshape(b, k)
    w = _joint_weights(weights, b, k, ce)
    if w is None:
        return ce.mean()
    return (ce * w).sum() / w.sum().clamp_min(1e-12)


def keypoint_representations(features: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
    """Moskvyak et al.'s semantic keypoint representations ``z_k = GMP(F * h_k)``, (B, K, C).

    ``features`` (B, C, h, w), ``heatmaps`` (B, K, h', w'); heatmaps of another
    size are resized bilinearly (``align_corners=False``) to ``(h, w)``.
    Global max pooling over pixels of the feature map masked by each heatmap.
    Memory is O(B*K*C*h*w).
    """
    _check_ndim("features", features, 4, "(B, C, h, w)")
    _check_ndim("heatmaps", heatmaps, 4, "(B, K, h, w)")
    if heatmaps.shape[0] != features.shape[0]:
        raise ValueError(f"heatmaps batch {heatmaps.shape[0]} != features batch {features.shape[0]}")
    if heatmaps.shape[-2:] != features.shape[-2:]:
        heatmaps = F.interpolate(heatmaps, size=features.shape[-2:], mode="bilinear", align_corners=False)
    prod = features[:, None] * heatmaps[:, :, None]  # (B, K, C, h, w)
    return prod.flatten(3).amax(-1)


def consistency_loss(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor | None = None,
                     stop_gradient: bool = True, pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-student heatmap MSE (Xie et al.): ``mean((w * (student - teacher))^2)``.

    ``teacher`` is detached when ``stop_gradient`` (the default, as the
    paper's easy branch). ``weights`` (B, K) or (K,) multiply the difference
    per joint (None = plain MSE, the paper's unsupervised term).
    ``pixel_weights`` (B, K, h, w), optional, multiply the squared difference
    pixel by pixel (foreground re-weighting; always detached).
    """
    _check_ndim("student", student, 4, "(B, K, h, w)")
    _check_same("student", student, "teacher", teacher)
    if stop_gradient:
        teacher = teacher.detach()
    diff = student - teacher
    w = _joint_weights(weights, student.shape[0], student.shape[1], student)
    if w is not None:
        diff = diff * w[:, :, None, None]
    sq = diff.pow(2)
    if pixel_weights is not None:
        _check_same("student", student, "pixel_weights", pixel_weights)
        sq = sq * pixel_weights.detach()
    return sq.mean()


def contrastive_terms(desc_a: torch.Tensor, desc_b: torch.Tensor, positive: torch.Tensor,
                      margin: float = 0.8, eps: float = 1e-9) -> dict[str, torch.Tensor]:
    """Per-pair terms of :func:`contrastive_loss`.

    Returns dict ``loss`` (the scalar), ``pos`` (sum of positive terms),
    ``neg`` (sum of negative terms), ``per_pair`` (N,), ``d2`` (N,) squared distances.
    """
    _check_ndim("desc_a", desc_a, 2, "(N, d)")
    _check_same("desc_a", desc_a, "desc_b", desc_b)
    positive = torch.as_tensor(positive, device=desc_a.device)
    if positive.shape != desc_a.shape[:1]:
        raise ValueError(f"positive must have shape ({desc_a.shape[0]},), got {tuple(positive.shape)}")
    if desc_a.shape[0] == 0:
        raise ValueError("desc_a is empty: no pairs")
    positive = positive.bool()
    d2 = (desc_a - desc_b).pow(2).sum(-1)
    neg = F.relu(margin - (d2 + eps).sqrt()).pow(2)
    per_pair = torch.where(positive, d2, neg)
    return {"loss": per_pair.mean(), "pos": (d2 * positive).sum(), "neg": (neg * ~positive).sum(),
            "per_pair": per_pair, "d2": d2}


def contrastive_loss(desc_a: torch.Tensor, desc_b: torch.Tensor, positive: torch.Tensor,
                     margin: float = 0.8, eps: float = 1e-9) -> torch.Tensor:
    """Mallis et al.'s descriptor loss, averaged over all pairs.

    ``d2 = ||a - b||^2``; a positive pair costs ``d2``, a negative pair
    ``relu(margin - sqrt(d2 + eps))^2``; the result is
    ``(sum of positive terms + sum of negative terms) / N`` as in the authors'
    code (one mean over positives and negatives together).
    """
    return contrastive_terms(desc_a, desc_b, positive, margin, eps)["loss"]
