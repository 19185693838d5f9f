"""Tests for landmark_study.geometry: transforms move images, points and heatmaps together."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landmark_study import geometry as G
from landmark_study import heatmaps as Hm

H, W = 48, 64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _centroid(img: torch.Tensor, guess: torch.Tensor, radius: float = 8.0) -> torch.Tensor:
    """Intensity centroid of a 2-D image inside a disc around ``guess``."""
    ys, xs = torch.meshgrid(
        torch.arange(img.shape[0], dtype=torch.float64), torch.arange(img.shape[1], dtype=torch.float64), indexing="ij"
    )
    mask = ((xs - guess[0]) ** 2 + (ys - guess[1]) ** 2) < radius**2
    wgt = img.double() * mask
    return torch.stack([(wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()])


def _dot_error(M: torch.Tensor, point: tuple[float, float]) -> float:
    """Render a Gaussian dot, warp it as an image and as a point, return the distance (px)."""
    pts = torch.tensor([[point]], dtype=torch.float32)
    img, _ = Hm.encode_gaussian(pts, (H, W), sigma=2.0)
    out = G.warp_images(img, M)
    q = G.warp_points(pts, M)[0, 0].double()
    return float((_centroid(out[0, 0], q) - q).norm())


# ----------------------------------------------------------------- image vs point agreement


@pytest.mark.parametrize("seed", range(4))
def test_dot_affine_image_and_point_agree(seed):
    M = G.sample_affine(1, (H, W), rotation=45, scale=(0.7, 1.4), translation=0.1, shear=10, generator=_gen(seed))
    assert _dot_error(M, (30.3, 20.7)) < 0.05


@pytest.mark.parametrize("seed", range(4))
def test_dot_perspective_image_and_point_agree(seed):
    M = G.sample_perspective(1, (H, W), distortion=0.2, generator=_gen(seed))
    # a perspective warp skews the dot, so its centroid moves a little off the mapped centre
    assert _dot_error(M, (30.3, 20.7)) < 0.25


def test_dot_pure_translation_is_exact_and_half_pixel_matters():
    M = G.affine_matrix((H, W), translation=(3.0, -2.0))
    assert _dot_error(M, (20.0, 25.0)) < 1e-3
    # a half-pixel mistake in the convention would be seen: shift the point by 0.5 px
    pts = torch.tensor([[[20.0, 25.0]]])
    img, _ = Hm.encode_gaussian(pts, (H, W), 2.0)
    out = G.warp_images(img, M)
    c = _centroid(out[0, 0], torch.tensor([23.0, 23.0]))
    assert float((c - torch.tensor([23.5, 23.0], dtype=torch.float64)).norm()) > 0.45


def test_warp_images_identity_and_out_size():
    img = torch.rand(2, 3, H, W, generator=_gen(0))
    out = G.warp_images(img, G.identity(2))
    assert torch.allclose(out, img, atol=1e-5)
    small = G.warp_images(img, G.identity(2), out_size=(10, 12))
    assert small.shape == (2, 3, 10, 12)
    assert torch.allclose(small, img[..., :10, :12], atol=1e-5)


def test_flip_image_matches_torch_flip():
    img = torch.rand(1, 2, H, W, generator=_gen(1))
    M, _ = G.sample_flip(1, (H, W), p=1.0)
    assert torch.allclose(G.warp_images(img, M), torch.flip(img, dims=[-1]), atol=1e-5)


# ----------------------------------------------------------------- heatmaps


@pytest.mark.parametrize("seed", range(3))
def test_warp_heatmaps_commutes_with_decoding(seed):
    h, w = 12, 16
    b = 4
    M = G.sample_affine(b, (H, W), rotation=30, scale=(0.8, 1.2), translation=0.05, generator=_gen(seed))
    p_img = torch.tensor([[30.3, 20.7], [20.0, 25.0], [40.2, 18.9]]).expand(b, 3, 2)
    maps, _ = Hm.encode_gaussian(Hm.image_to_heatmap(p_img, (H, W), (h, w)), (h, w), sigma=1.5)
    warped_then_decoded, _ = Hm.decode_argmax(G.warp_heatmaps(maps, M, (H, W)), refine=True)
    decoded, _ = Hm.decode_argmax(maps, refine=True)
    decoded_then_warped = G.warp_points(decoded, G.to_heatmap_matrix(M, (H, W), (h, w)))
    assert (warped_then_decoded - decoded_then_warped).norm(dim=-1).max() < 0.5
    # plain quarter-offset decoding also agrees within 0.5 px per axis
    plain, _ = Hm.decode_argmax(G.warp_heatmaps(maps, M, (H, W)))
    assert (plain - decoded_then_warped).abs().max() < 0.5


def test_to_heatmap_matrix_conjugation_and_wrong_convention_detected():
    h, w = 12, 16
    M = G.sample_perspective(3, (H, W), distortion=0.2, generator=_gen(5))
    p = torch.rand(3, 7, 2, generator=_gen(6)) * torch.tensor([W - 1.0, H - 1.0])
    M_h = G.to_heatmap_matrix(M, (H, W), (h, w))
    lhs = Hm.image_to_heatmap(G.warp_points(p, M), (H, W), (h, w))
    rhs = G.warp_points(Hm.image_to_heatmap(p, (H, W), (h, w)), M_h)
    assert torch.allclose(lhs, rhs, atol=1e-4)

    # a fixed large transform: decoding the warped heatmap finds the conjugated point,
    # and the naive scaling x_h = x * w / W (no half-pixel terms) would be > 0.5 px off
    M = G.affine_matrix((H, W), angle=90.0, scale=2.0)
    p_img = torch.tensor([[[30.0, 22.0]]])
    maps, _ = Hm.encode_gaussian(Hm.image_to_heatmap(p_img, (H, W), (h, w)), (h, w), sigma=1.0)
    found, _ = Hm.decode_argmax(G.warp_heatmaps(maps, M, (H, W)), refine=True)
    want = Hm.image_to_heatmap(G.warp_points(p_img, M), (H, W), (h, w))
    D = torch.diag(torch.tensor([w / W, h / H, 1.0]))[None]
    naive = G.warp_points(Hm.image_to_heatmap(p_img, (H, W), (h, w)), D @ M @ torch.linalg.inv(D))
    assert (found - want).norm() < 0.2
    assert (naive - want).norm() > 0.5


# ----------------------------------------------------------------- algebra


def test_compose_invert_relative_round_trips():
    Ma = G.sample_affine(3, (H, W), rotation=40, scale=(0.8, 1.2), translation=0.1, shear=5, generator=_gen(0))
    Mb = G.sample_perspective(3, (H, W), distortion=0.15, generator=_gen(1))
    eye = G.identity(3)
    assert torch.allclose(Ma @ G.invert(Ma), eye, atol=1e-5)
    assert torch.allclose(G.compose(Mb, G.invert(Mb)), eye, atol=1e-5)
    p = torch.rand(3, 5, 2, generator=_gen(2)) * torch.tensor([W - 1.0, H - 1.0])
    # compose order: "apply first, then second"
    assert torch.allclose(G.warp_points(p, G.compose(Ma, Mb)), G.warp_points(G.warp_points(p, Ma), Mb), atol=1e-3)
    Mc = G.sample_flip(3, (H, W), p=0.5, generator=_gen(3))[0]
    assert torch.allclose(G.compose(Ma, Mb, Mc), Mc @ Mb @ Ma)
    # relative maps view A onto view B
    R = G.relative(Ma, Mb)
    assert torch.allclose(G.warp_points(G.warp_points(p, Ma), R), G.warp_points(p, Mb), atol=1e-3)


def test_flip_matrix_twice_is_identity_and_maps_x():
    M, flipped = G.sample_flip(6, (H, W), p=0.5, generator=_gen(4))
    assert flipped.dtype == torch.bool and flipped.any() and not flipped.all()
    assert torch.allclose(G.compose(M, M), G.identity(6))
    p = torch.tensor([[[0.0, 3.0], [10.25, 7.0], [W - 1.0, 0.0]]]).expand(6, 3, 2)
    q = G.warp_points(p, M)
    expect = torch.where(flipped[:, None, None], torch.stack([W - 1 - p[..., 0], p[..., 1]], -1), p)
    assert torch.allclose(q, expect)
    assert not G.sample_flip(5, (H, W), p=0.0)[1].any()
    assert G.sample_flip(5, (H, W), p=1.0)[1].all()


def test_flip_keypoint_order():
    perm = np.array([0, 2, 1, 4, 3])
    p = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    v = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0, 1.0]])
    flipped = torch.tensor([True, False])
    p1, v1 = G.flip_keypoint_order(p, v, perm, flipped)
    assert torch.equal(p1[0], p[0, perm]) and torch.equal(v1[0], v[0, perm])
    assert torch.equal(p1[1], p[1]) and torch.equal(v1[1], v[1])
    p2, v2 = G.flip_keypoint_order(p1, v1, perm, flipped)
    assert torch.equal(p2, p) and torch.equal(v2, v)
    with pytest.raises(ValueError, match="permutation"):
        G.flip_keypoint_order(p, v, [0, 0, 1, 2, 3], flipped)
    with pytest.raises(ValueError, match="flipped"):
        G.flip_keypoint_order(p, v, perm, [True])


def test_warp_keypoints_visibility_leaves_frame():
    M = G.affine_matrix((H, W), translation=(10.0, 0.0))
    p = torch.tensor([[[5.0, 5.0], [W - 10.5, 5.0], [W - 10.4, 5.0], [W - 10.6, 5.0], [20.0, 20.0]]])
    v = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    q, v2 = G.warp_keypoints(p, v, M, (H, W))
    assert torch.allclose(q, p + torch.tensor([10.0, 0.0]))
    # lands at W-0.5 (edge, closed frame): kept; W-0.4: dropped; W-0.6: kept; invisible stays invisible
    assert v2.tolist() == [[1.0, 1.0, 0.0, 1.0, 0.0]]
    up = G.affine_matrix((H, W), translation=(0.0, -8.0))
    _, v3 = G.warp_keypoints(torch.tensor([[[3.0, 7.0], [3.0, 7.6]]]), torch.ones(1, 2), up, (H, W))
    assert v3.tolist() == [[0.0, 1.0]]


# ----------------------------------------------------------------- gradients


def test_gradcheck_warp_images_and_heatmaps():
    img = torch.rand(1, 1, 5, 6, dtype=torch.float64, generator=_gen(0), requires_grad=True)
    M = G.affine_matrix((5, 6), angle=17.0, scale=1.1, translation=(0.3, -0.2)).double()
    M = M + 1e-3 * torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, -2.0, 0.0]], dtype=torch.float64)
    M.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, m: G.warp_images(a, m), (img, M), eps=1e-6, atol=1e-4)
    assert torch.autograd.gradcheck(lambda a, m: G.warp_heatmaps(a, m, (10, 12)), (img, M), eps=1e-6, atol=1e-4)


def test_gradients_flow_through_points_and_matrix():
    M = G.sample_affine(2, (H, W), rotation=20, generator=_gen(2)).requires_grad_(True)
    p = (torch.rand(2, 4, 2, generator=_gen(3)) * 40).requires_grad_(True)
    G.warp_points(p, M).sum().backward()
    assert torch.isfinite(M.grad).all() and M.grad.abs().sum() > 0
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    maps = torch.rand(2, 3, 12, 16, generator=_gen(4), requires_grad=True)
    M2 = G.sample_perspective(2, (H, W), generator=_gen(5)).requires_grad_(True)
    (G.warp_heatmaps(maps, M2, (H, W)) ** 2).sum().backward()
    assert torch.isfinite(maps.grad).all() and maps.grad.abs().sum() > 0
    assert torch.isfinite(M2.grad).all() and M2.grad.abs().sum() > 0


# ----------------------------------------------------------------- samplers


def _decompose(M: torch.Tensor, size=(H, W)):
    """Angle (deg), scale and translation of a shear-free similarity about the centre."""
    A = M[:, :2, :2].double()
    angle = torch.rad2deg(torch.atan2(A[:, 0, 1], A[:, 0, 0]))
    scale = torch.sqrt(torch.det(A))
    c = torch.tensor([(size[1] - 1) / 2, (size[0] - 1) / 2], dtype=torch.float64)
    t = (A @ c[:, None])[..., 0] + M[:, :2, 2].double() - c
    return angle, scale, t


def test_sample_affine_deterministic_and_ranges():
    kw = dict(rotation=25.0, scale=(0.8, 1.3), translation=0.1, generator=None)
    M1, params = G.sample_affine(500, (H, W), **{**kw, "generator": _gen(7)}, return_params=True)
    M2 = G.sample_affine(500, (H, W), **{**kw, "generator": _gen(7)})
    M3 = G.sample_affine(500, (H, W), **{**kw, "generator": _gen(8)})
    assert M1.shape == (500, 3, 3) and M1.dtype == torch.float32
    assert torch.equal(M1, M2) and not torch.equal(M1, M3)
    angle, scale, t = _decompose(M1)
    assert angle.abs().max() <= 25.0 + 1e-3 and angle.abs().max() > 20.0
    assert scale.min() >= 0.8 - 1e-4 and scale.max() <= 1.3 + 1e-4
    assert t[:, 0].abs().max() <= 0.1 * W + 1e-3 and t[:, 1].abs().max() <= 0.1 * H + 1e-3
    assert torch.allclose(angle, params["angle"], atol=1e-3)
    assert torch.allclose(scale, params["scale"], atol=1e-4)
    assert torch.allclose(t, params["translation"], atol=1e-3)


def test_sample_affine_rotation_probability_and_shear():
    _, params = G.sample_affine(4000, (H, W), rotation=30.0, rotation_p=0.6, generator=_gen(9), return_params=True)
    frac = float((params["angle"] != 0).double().mean())
    assert abs(frac - 0.6) < 4 * math.sqrt(0.6 * 0.4 / 4000)
    M = G.sample_affine(50, (H, W), rotation=30.0, rotation_p=0.0, generator=_gen(9))
    assert torch.allclose(M, G.identity(50), atol=1e-6)
    Ms = G.sample_affine(200, (H, W), shear=10.0, generator=_gen(10))
    sx = torch.rad2deg(torch.atan(Ms[:, 0, 1]))
    assert sx.abs().max() <= 10 + 1e-3 and sx.abs().max() > 5
    centre = torch.tensor([[[(W - 1) / 2, (H - 1) / 2]]]).expand(200, 1, 2)
    assert torch.allclose(G.warp_points(centre, Ms), centre, atol=1e-4)  # pivot stays put


def test_sample_affine_normal_law():
    M, params = G.sample_affine_normal(4000, (H, W), generator=_gen(11), return_params=True)
    s, a = params["scale"], params["angle"]
    assert s.min() >= 0.75 - 1e-9 and s.max() <= 1.25 + 1e-9
    assert (s == 1.25).any() and (s == 0.75).any()  # clipping happens at 1 +- 0.25 (1 sigma)
    assert a.abs().max() <= 60.0 + 1e-9 and (a.abs() == 60.0).any()
    assert abs(float((a == 0).double().mean()) - 0.4) < 4 * math.sqrt(0.24 / 4000)
    rotated = a[a != 0]
    assert abs(float(rotated.std()) - 30.0) < 3.0  # sd of clip(30 N, +-60) is about 28
    angle, scale, _ = _decompose(M)
    assert torch.allclose(angle, a, atol=1e-3) and torch.allclose(scale, s, atol=1e-4)
    assert torch.equal(M, G.sample_affine_normal(4000, (H, W), generator=_gen(11)))


def test_sample_perspective_corner_jitter_bounded():
    d = 0.2
    M = G.sample_perspective(64, (H, W), distortion=d, generator=_gen(12))
    assert torch.equal(M, G.sample_perspective(64, (H, W), distortion=d, generator=_gen(12)))
    corners = torch.tensor([[[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]]]).expand(64, 4, 2)
    moved = G.warp_points(corners, M) - corners
    assert moved[..., 0].abs().max() <= d * W + 1e-3 and moved[..., 1].abs().max() <= d * H + 1e-3
    assert moved[..., 0].abs().max() > 0.5 * d * W  # really perspective, not identity
    assert (M[:, 2, :2].abs().sum(-1) > 0).all()
    # all image corners in front of the projection (w > 0)
    wgt = (corners * M[:, None, 2, :2]).sum(-1) + M[:, None, 2, 2]
    assert (wgt > 0).all()
    assert torch.allclose(G.sample_perspective(3, (H, W), distortion=0.0, generator=_gen(1)), G.identity(3), atol=1e-5)


# ----------------------------------------------------------------- errors


def test_clear_errors():
    img = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, 3, 3\)"):
        G.warp_images(img, torch.eye(3)[None, :2].expand(2, 2, 3))
    with pytest.raises(ValueError, match="batch size"):
        G.warp_images(img, G.identity(3))
    with pytest.raises(ValueError, match="floating"):
        G.warp_images(img.to(torch.uint8), G.identity(2))
    with pytest.raises(ValueError, match="batch size"):
        G.compose(G.identity(2), G.identity(3))
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        G.warp_points(torch.zeros(2, 3), G.identity(2))
    with pytest.raises(ValueError, match="distortion"):
        G.sample_perspective(1, (8, 8), distortion=0.3)
    with pytest.raises(ValueError, match="scale"):
        G.sample_affine(1, (8, 8), scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="rotation_p"):
        G.sample_affine(1, (8, 8), rotation_p=1.5)
    with pytest.raises(ValueError, match="size"):
        G.sample_flip(1, (8,))
    with pytest.raises(ValueError, match="visibility"):
        G.warp_keypoints(torch.zeros(2, 3, 2), torch.ones(2, 4), G.identity(2), (8, 8))
