from __future__ import annotations

import math

import pytest
import torch

from landmark_study import losses as L


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _seeded(module: torch.nn.Module, g: torch.Generator) -> torch.nn.Module:
    """Re-initialise every parameter of ``module`` from ``g`` (no global RNG)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return module


# ----------------------------------------------------------------------------
# heatmap MSE
# ----------------------------------------------------------------------------

def test_heatmap_mse_known_difference():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    pred[:, 0] = 2.0  # only joint 0 differs, by 2 everywhere
    # 0.5 * mean over joints of (mean over pixels) = 0.5 * (4 + 0 + 0) / 3
    assert L.heatmap_mse(pred, target).item() == pytest.approx(0.5 * 4 / 3)
    w = torch.tensor([[0.5, 1.0, 1.0], [0.0, 1.0, 1.0]])
    # weights multiply the difference: sample 0 -> (0.5*2)^2 = 1, sample 1 -> 0
    assert L.heatmap_mse(pred, target, w).item() == pytest.approx(0.5 * (1 + 0) / 2 / 3)
    # (K,) weights broadcast over the batch
    assert L.heatmap_mse(pred, target, torch.tensor([0.0, 1.0, 1.0])).item() == 0.0


def test_heatmap_mse_errors_name_argument():
    with pytest.raises(ValueError, match="target"):
        L.heatmap_mse(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 3))
    with pytest.raises(ValueError, match="pred"):
        L.heatmap_mse(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        L.heatmap_mse(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 3))


# ----------------------------------------------------------------------------
# ELT
# ----------------------------------------------------------------------------

def _rot_matrices(b: int, g: torch.Generator) -> torch.Tensor:
    ang = torch.rand(b, generator=g) * 2 * math.pi
    s = 0.8 + 0.4 * torch.rand(b, generator=g)
    t = torch.rand(b, 2, generator=g) * 10
    M = torch.zeros(b, 3, 3)
    M[:, 0, 0] = s * torch.cos(ang)
    M[:, 0, 1] = -s * torch.sin(ang)
    M[:, 1, 0] = s * torch.sin(ang)
    M[:, 1, 1] = s * torch.cos(ang)
    M[:, :2, 2] = t
    M[:, 2, 2] = 1
    return M


def test_elt_zero_when_equivariant_and_known_offset():
    g = _gen(1)
    pts = torch.rand(3, 5, 2, generator=g) * 60
    M = _rot_matrices(3, g)
    R, t = M[:, :2, :2], M[:, :2, 2]
    on_t = pts @ R.transpose(1, 2) + t[:, None]
    assert L.elt_loss(on_t, pts, M).item() == pytest.approx(0.0, abs=1e-8)
    # a (3, 4) offset on every landmark: squared distance 25
    assert L.elt_loss(on_t + torch.tensor([3.0, 4.0]), pts, M).item() == pytest.approx(25.0, rel=1e-5)
    assert L.elt_loss(on_t + torch.tensor([3.0, 4.0]), pts, M, reduction="sum").item() == pytest.approx(125.0, rel=1e-5)
    # normaliser divides the squared distance; weights mask landmarks (still / K)
    nrm = torch.tensor([5.0, 5.0, 5.0])
    assert L.elt_loss(on_t + torch.tensor([3.0, 4.0]), pts, M, normaliser=nrm).item() == pytest.approx(1.0, rel=1e-5)
    w = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    assert L.elt_loss(on_t + torch.tensor([3.0, 4.0]), pts, M, weights=w).item() == pytest.approx(10.0, rel=1e-5)


def test_elt_homography_divide():
    pts = torch.tensor([[[2.0, 4.0]]])
    M = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]]])  # scales by 1/2
    assert L.elt_loss(torch.tensor([[[1.0, 2.0]]]), pts, M).item() == pytest.approx(0.0)


def test_elt_gradients_and_errors():
    g = _gen(2)
    pts = (torch.rand(2, 4, 2, generator=g) * 50).requires_grad_()
    on_t = (torch.rand(2, 4, 2, generator=g) * 50).requires_grad_()
    loss = L.elt_loss(on_t, pts, _rot_matrices(2, g))
    loss.backward()
    assert torch.isfinite(pts.grad).all() and torch.isfinite(on_t.grad).all()
    assert pts.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="M"):
        L.elt_loss(on_t, pts, torch.eye(3).expand(3, 3, 3))
    with pytest.raises(ValueError, match="points_original"):
        L.elt_loss(on_t, pts[:, :3], torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="reduction"):
        L.elt_loss(on_t, pts, torch.eye(3).expand(2, 3, 3), reduction="max")


# ----------------------------------------------------------------------------
# TE / TI / SC (Moskvyak)
# ----------------------------------------------------------------------------

def test_te_zero_for_pointwise_net_and_integer_shift():
    g = _gen(3)
    net = _seeded(torch.nn.Conv2d(3, 4, kernel_size=1), g)
    x = torch.randn(2, 3, 16, 16, generator=g)

    def shift(t):
        return torch.roll(t, shifts=(3, -2), dims=(2, 3))

    f_gx = net(shift(x))
    g_fx = shift(net(x))
    assert L.te_loss(f_gx, g_fx).item() == pytest.approx(0.0, abs=1e-10)
    # a 3x3 conv is not pointwise: zero padding breaks equivariance at the wrap-around border
    conv = _seeded(torch.nn.Conv2d(3, 4, kernel_size=3, padding=1), g)
    assert L.te_loss(conv(shift(x)), shift(conv(x))).item() > 1e-4


def test_te_known_value_and_mask():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.zeros(1, 2, 2, 2)
    a[0, 0, 0, 0] = 2.0
    assert L.te_loss(a, b).item() == pytest.approx(4.0 / 8)
    mask = torch.zeros(1, 1, 2, 2)
    mask[..., 0, 0] = 1
    assert L.te_loss(a, b, mask).item() == pytest.approx(4.0 / 2)
    with pytest.raises(ValueError, match="mask"):
        L.te_loss(a, b, torch.ones(1, 3, 2, 2))
    with pytest.raises(ValueError, match="transformed_heatmaps"):
        L.te_loss(a, b[:, :1])


def test_ti_loss_known_value():
    z = torch.zeros(2, 3, 4)
    zt = torch.zeros(2, 3, 4)
    zt[0, 1, 2] = 3.0
    zt[1, 0, 0] = 1.0
    zt[1, 2, 3] = 1.0
    assert L.ti_loss(z, zt).item() == pytest.approx((9 + 2) / 2)
    with pytest.raises(ValueError, match="z_t"):
        L.ti_loss(z, zt[:, :2])


def test_sc_loss_uniform_and_confident():
    k = 5
    assert L.sc_loss(torch.zeros(3, k, k)).item() == pytest.approx(math.log(k), rel=1e-6)
    confident = 50.0 * torch.eye(k).expand(3, k, k)
    assert L.sc_loss(confident).item() < 1e-10
    wrong = 50.0 * torch.eye(k)[torch.roll(torch.arange(k), 1)].expand(3, k, k)
    assert L.sc_loss(wrong).item() == pytest.approx(50.0, rel=1e-4)
    # weights: only the confident rows count -> ~0; mixed rows give a weighted mean
    mixed = confident.clone()
    mixed[:, 0] = 0.0  # row 0 uniform -> CE log(k)
    w = torch.tensor([0.0, 1, 1, 1, 1])
    assert L.sc_loss(mixed, w).item() < 1e-10
    assert L.sc_loss(mixed).item() == pytest.approx(math.log(k) / k, rel=1e-5)
    with pytest.raises(ValueError, match="logits"):
        L.sc_loss(torch.zeros(2, 3, 4))


def test_keypoint_representations_global_max_pool():
    feats = torch.zeros(1, 2, 4, 4)
    feats[0, 0, 1, 1] = 5.0
    feats[0, 0, 3, 3] = 7.0
    feats[0, 1] = 1.0
    hm = torch.zeros(1, 2, 4, 4)
    hm[0, 0, 1, 1] = 1.0   # keypoint 0 at (1, 1)
    hm[0, 1, 3, 3] = 0.5   # keypoint 1 at (3, 3), peak 0.5
    z = L.keypoint_representations(feats, hm)
    assert z.shape == (1, 2, 2)
    torch.testing.assert_close(z, torch.tensor([[[5.0, 1.0], [3.5, 0.5]]]))
    # heatmaps at twice the feature resolution are resized first
    z2 = L.keypoint_representations(feats, torch.ones(1, 2, 8, 8))
    torch.testing.assert_close(z2, torch.tensor([[[7.0, 1.0], [7.0, 1.0]]]))
    with pytest.raises(ValueError, match="heatmaps"):
        L.keypoint_representations(feats, torch.ones(2, 2, 4, 4))


def test_moskvyak_losses_have_finite_gradients():
    g = _gen(4)
    feats = torch.randn(2, 6, 8, 8, generator=g, requires_grad=True)
    hm = torch.rand(2, 3, 8, 8, generator=g, requires_grad=True)
    z = L.keypoint_representations(feats, hm)
    kcn = _seeded(torch.nn.Linear(6, 3), g)
    loss = L.sc_loss(kcn(z)) + L.ti_loss(z, z.detach() + 1.0) + L.te_loss(hm, hm.detach().flip(-1))
    loss.backward()
    assert torch.isfinite(feats.grad).all() and torch.isfinite(hm.grad).all()
    assert hm.grad.abs().sum() > 0


# ----------------------------------------------------------------------------
# consistency
# ----------------------------------------------------------------------------

def test_consistency_value_and_stop_gradient():
    g = _gen(5)
    s = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    loss = L.consistency_loss(s, t)
    assert loss.item() == pytest.approx(((s - t) ** 2).mean().item())
    loss.backward()
    assert t.grad is None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    s.grad = None
    L.consistency_loss(s, t, stop_gradient=False).backward()
    assert t.grad is not None
    torch.testing.assert_close(t.grad, -s.grad)
    w = torch.tensor([1.0, 0.0, 0.0])
    lw = L.consistency_loss(s, t, weights=w)
    assert lw.item() == pytest.approx(((s - t)[:, 0] ** 2).mean().item() / 3, rel=1e-6)
    with pytest.raises(ValueError, match="teacher"):
        L.consistency_loss(s, t[:, :2])


# ----------------------------------------------------------------------------
# contrastive (Mallis)
# ----------------------------------------------------------------------------

def test_contrastive_known_values():
    a = torch.zeros(4, 2)
    b = torch.tensor([[0.0, 0.0], [0.3, 0.4], [0.0, 0.0], [1.0, 0.0]])
    pos = torch.tensor([True, True, False, False])
    r = L.contrastive_terms(a, b, pos, margin=0.8)
    # positives: d^2 = 0 and 0.25; negatives: d=0 -> (0.8 - sqrt(1e-9))^2, d=1 > m -> 0
    expect_neg0 = (0.8 - math.sqrt(1e-9)) ** 2
    torch.testing.assert_close(r["per_pair"], torch.tensor([0.0, 0.25, expect_neg0, 0.0]))
    assert r["pos"].item() == pytest.approx(0.25)
    assert r["neg"].item() == pytest.approx(expect_neg0, rel=1e-6)
    assert L.contrastive_loss(a, b, pos).item() == pytest.approx((0.25 + expect_neg0) / 4, rel=1e-6)


def test_contrastive_gradients_finite_at_zero_distance():
    a = torch.zeros(3, 4, requires_grad=True)
    b = torch.zeros(3, 4)
    L.contrastive_loss(a, b, torch.tensor([False, True, False])).backward()
    assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match="positive"):
        L.contrastive_loss(a, b, torch.tensor([True]))
    with pytest.raises(ValueError, match="desc_b"):
        L.contrastive_loss(a, b[:, :2], torch.tensor([True, True, True]))
