"""Tests for landmark_study.heatmaps: the encode/decode codec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landmark_study import heatmaps as Hm


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _subpixel_points(n: int, size: int, margin: float, seed: int) -> torch.Tensor:
    return margin + torch.rand(1, n, 2, generator=_gen(seed)) * (size - 1 - 2 * margin)


# ----------------------------------------------------------------- coordinates


def test_image_heatmap_coordinates_analytic_and_round_trip():
    image, heat = (256, 192), (64, 48)
    # the outer edges coincide, and a heatmap pixel centre sits at the centre of its 4x4 block
    edges = torch.tensor([[-0.5, -0.5], [191.5, 255.5], [1.5, 1.5]])
    assert torch.allclose(Hm.image_to_heatmap(edges, image, heat), torch.tensor([[-0.5, -0.5], [47.5, 63.5], [0, 0]]))
    p = torch.rand(3, 5, 2, generator=_gen(0), dtype=torch.float64) * 200
    assert torch.allclose(Hm.heatmap_to_image(Hm.image_to_heatmap(p, image, heat), image, heat), p)
    pn = p.numpy()
    back = Hm.heatmap_to_image(Hm.image_to_heatmap(pn, image, heat), image, heat)
    assert isinstance(back, np.ndarray) and np.allclose(back, pn)
    assert np.allclose(Hm.image_to_heatmap(edges.numpy(), image, heat), [[-0.5, -0.5], [47.5, 63.5], [0, 0]])
    with pytest.raises(ValueError, match="last axis"):
        Hm.image_to_heatmap(torch.zeros(3, 3), image, heat)
    with pytest.raises(ValueError, match="heatmap_size"):
        Hm.image_to_heatmap(p, image, (64,))


# ----------------------------------------------------------------- encoders


def test_encode_gaussian_values_shapes_and_weights():
    pts = torch.tensor([[[5.0, 3.0], [2.5, 4.0], [6.0, 6.0]]])
    vis = torch.tensor([[1.0, 1.0, 0.0]])
    maps, wts = Hm.encode_gaussian(pts, (8, 10), sigma=2.0, visibility=vis)
    assert maps.shape == (1, 3, 8, 10) and maps.dtype == torch.float32 and wts.shape == (1, 3)
    assert maps[0, 0, 3, 5] == 1.0 and maps[0, 0].max() == 1.0
    assert math.isclose(float(maps[0, 0, 3, 6]), math.exp(-1 / 8), rel_tol=1e-6)
    assert math.isclose(float(maps[0, 0, 4, 6]), math.exp(-2 / 8), rel_tol=1e-6)
    # sub-pixel point between two pixels: symmetric pair of equal maxima below 1
    assert maps[0, 1, 4, 2] == maps[0, 1, 4, 3] and maps[0, 1].max() < 1.0
    # invisible joint: all-zero map, weight 0
    assert maps[0, 2].abs().sum() == 0 and wts.tolist() == [[1.0, 1.0, 0.0]]
    # visibility None -> weights 1; numpy input accepted; extra leading axes kept
    m2, w2 = Hm.encode_gaussian(np.zeros((2, 4, 3, 2)), (5, 6), 1.0)
    assert m2.shape == (2, 4, 3, 5, 6) and torch.equal(w2, torch.ones(2, 4, 3))
    # non-finite coordinates are treated as missing
    m3, w3 = Hm.encode_gaussian(torch.tensor([[float("nan"), 1.0]]), (5, 6), 1.0)
    assert torch.isfinite(m3).all() and m3.sum() == 0 and w3.tolist() == [0.0]


def test_encode_gaussian_errors():
    with pytest.raises(ValueError, match="sigma"):
        Hm.encode_gaussian(torch.zeros(1, 2), (4, 4), 0.0)
    with pytest.raises(ValueError, match="visibility"):
        Hm.encode_gaussian(torch.zeros(2, 3, 2), (4, 4), 1.0, visibility=torch.ones(2, 4))
    with pytest.raises(ValueError, match="last axis"):
        Hm.encode_gaussian(torch.zeros(2, 3), (4, 4), 1.0)


def test_encode_delta_nearest_pixel_and_outside():
    pts = torch.tensor([[[2.4, 1.6], [2.5, 0.0], [-0.6, 1.0], [7.0, 3.0], [1.0, 1.0]]])
    vis = torch.tensor([[1, 1, 1, 1, 0]])
    maps, wts = Hm.encode_delta(pts, (4, 6), visibility=vis)
    assert maps.shape == (1, 5, 4, 6)
    assert maps[0, 0, 2, 2] == 1 and maps[0, 0].sum() == 1
    assert maps[0, 1, 0, 3] == 1 and maps[0, 1].sum() == 1  # ties round up
    assert maps[0, 2].sum() == 0 and maps[0, 3].sum() == 0  # outside the map
    assert maps[0, 4].sum() == 0 and wts.tolist() == [[1, 1, 1, 1, 0]]
    # -0.5 and w-0.5-eps are still inside (pixel i covers [i-0.5, i+0.5))
    edge, _ = Hm.encode_delta(torch.tensor([[-0.5, -0.5], [5.49, 3.49]]), (4, 6))
    assert edge[0, 0, 0] == 1 and edge[1, 3, 5] == 1


# ----------------------------------------------------------------- argmax decoding


def test_decode_argmax_integer_points_exact():
    pts = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [15.0, 11.0], [7.0, 2.0]]])
    maps, _ = Hm.encode_gaussian(pts, (12, 16), 2.0)
    for refine in (False, True):
        dec, maxvals = Hm.decode_argmax(maps, refine=refine)
        assert torch.equal(dec, pts)
        assert torch.allclose(maxvals, torch.ones(1, 4))


def test_decode_argmax_subpixel_bounds():
    pts = _subpixel_points(200, 32, 3.0, seed=1)
    maps, _ = Hm.encode_gaussian(pts, (32, 32), 2.0)
    raw, _ = Hm.decode_argmax(maps, subpixel=False)
    assert (raw - pts).abs().max() <= 0.5 + 1e-5
    quarter, _ = Hm.decode_argmax(maps)
    err = (quarter - pts).abs()
    assert err.max() <= 0.25 + 1e-5  # classic quarter-offset bound per axis
    assert err.mean() < (raw - pts).abs().mean()  # and it does help on average
    refined, _ = Hm.decode_argmax(maps, refine=True)
    assert (refined - pts).norm(dim=-1).max() < 0.1
    # near the border (no neighbours) the refinement falls back gracefully
    edge = torch.tensor([[[0.3, 0.2], [31.0, 15.4]]])
    dec, _ = Hm.decode_argmax(Hm.encode_gaussian(edge, (32, 32), 2.0)[0], refine=True)
    assert (dec - edge).abs().max() <= 0.3


def test_decode_argmax_zero_map_and_ties():
    maps = torch.zeros(2, 1, 5, 7)
    maps[1, 0, 2, 3] = maps[1, 0, 2, 5] = 0.7  # tie: first in row-major order wins
    dec, maxvals = Hm.decode_argmax(maps, subpixel=False)
    assert dec.tolist() == [[[0.0, 0.0]], [[3.0, 2.0]]] and maxvals.tolist() == [[0.0], [pytest.approx(0.7)]]
    with pytest.raises(ValueError, match="heatmaps"):
        Hm.decode_argmax(torch.zeros(5, 7))


# ----------------------------------------------------------------- soft-argmax


def test_soft_argmax_one_hot_analytic():
    h, w, v, beta = 5, 7, 3.0, 2.0
    maps = torch.zeros(1, 1, h, w, dtype=torch.float64)
    maps[0, 0, 1, 4] = v
    # peak weight e^{beta v}, every other pixel weight 1
    n = h * w
    sx, sy = h * sum(range(w)), w * sum(range(h))
    e = math.exp(beta * v)
    want = [(e * 4 + sx - 4) / (e + n - 1), (e * 1 + sy - 1) / (e + n - 1)]
    assert torch.allclose(Hm.soft_argmax(maps, beta)[0, 0], torch.tensor(want, dtype=torch.float64))
    # a very sharp one-hot decodes to its pixel
    assert torch.allclose(Hm.soft_argmax(maps * 100, beta=1.0)[0, 0], torch.tensor([4.0, 1.0], dtype=torch.float64))


def test_soft_argmax_two_pixel_midpoint_and_centre():
    maps = torch.full((1, 1, 6, 8), -1e4)
    maps[0, 0, 2, 3] = maps[0, 0, 4, 6] = 5.0
    assert torch.allclose(Hm.soft_argmax(maps), torch.tensor([[[4.5, 3.0]]]))
    # a Gaussian at the exact centre of the map decodes to the centre for any beta
    centre = torch.tensor([[7.0, 5.0]])
    g, _ = Hm.encode_gaussian(centre, (11, 15), 2.0)
    for beta in (0.1, 1.0, 20.0):
        assert torch.allclose(Hm.soft_argmax(g, beta), centre, atol=1e-4)


def test_soft_argmax_gaussian_bias_and_unbiased_regimes():
    size = 32
    pts = _subpixel_points(50, size, 8.0, seed=2)
    maps, _ = Hm.encode_gaussian(pts, (size, size), 3.0)
    centre = torch.tensor([(size - 1) / 2, (size - 1) / 2])
    # beta = 1 on a peak-1 Gaussian: the background pulls estimates well toward the centre
    biased = Hm.soft_argmax(maps, beta=1.0)
    to_centre = (pts - centre).norm(dim=-1)
    assert ((biased - centre).norm(dim=-1) < 0.5 * to_centre).all()
    # high beta: background negligible, sub-pixel accurate
    assert (Hm.soft_argmax(maps, beta=20.0) - pts).norm(dim=-1).max() < 0.1
    # on the log-heatmap the softmax is the normalised Gaussian itself: essentially exact
    # once the Gaussian is not cut by the border (margin 8 px = 4 sigma here)
    maps2, _ = Hm.encode_gaussian(pts, (size, size), 2.0)
    logmaps = torch.log(maps2.clamp_min(1e-30))
    assert (Hm.soft_argmax(logmaps, beta=1.0) - pts).norm(dim=-1).max() < 0.01


def test_soft_argmax_gradients_finite():
    # large values (would overflow exp without the max subtraction)
    big = (torch.rand(2, 3, 8, 8, generator=_gen(3)) * 1e4).requires_grad_(True)
    out = Hm.soft_argmax(big, beta=10.0)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(big.grad).all()
    # points far from the grid: the encoded maps underflow to ~0 everywhere
    p = torch.tensor([[[-50.0, -60.0], [100.0, 4.0], [3.3, 2.7]]], requires_grad=True)
    maps, _ = Hm.encode_gaussian(p, (8, 8), 1.5)
    dec = Hm.soft_argmax(maps, beta=30.0)
    assert torch.isfinite(dec).all()
    dec.sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad[0, 2].abs().sum() > 0


def test_soft_argmax_gradcheck():
    maps = torch.rand(1, 2, 4, 5, dtype=torch.float64, generator=_gen(4), requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: Hm.soft_argmax(m, beta=3.0), (maps,))
