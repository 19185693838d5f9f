"""Easy-hard augmentation, Joint Cutout, dual networks, PseudoPose and DataDistill (Xie et al. 2021)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from landmark_study import geometry, heatmaps
from landmark_study.config import ConfigError
from landmark_study.losses import consistency_loss
from landmark_study.methods import Batch, get_method
from landmark_study.methods.consistency import IMAGENET_MEAN, ViewPair
from landmark_study.methods.easy_hard import (RA_OPS, apply_mask, distill_heatmaps, gaussian_targets,
                                              joint_cutout_mask, ra_op, ramp, rand_augment)

from conftest import tiny_config


def make(method="easy_hard", options=None, lam=1.0, **overrides):
    cfg = tiny_config(**{"method": method, "method_options": options or {},
                         "loss_weights": {"cons": lam}, "train.unlabeled_batch_size": 4, **overrides})
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("figures", "val", n=4, seed=0, size=32)
    cls = get_method(method)
    return cls(cfg, ds.spec, ds.image_size, torch.device("cpu"), torch.Generator().manual_seed(0)), ds


def batch_of(ds):
    imgs = torch.from_numpy(ds.images.transpose(0, 3, 1, 2).copy()).float() / 255.0
    return Batch(images=imgs, keypoints=torch.from_numpy(ds.keypoints).float(),
                 visibility=torch.from_numpy(ds.visibility).float())


# -- RandAugment colour operations --------------------------------------------

def test_ra_ops_at_zero_magnitude_are_identities():
    x = torch.rand(3, 3, 8, 8)
    for op in ("identity", "brightness", "color", "contrast", "sharpness", "posterize"):
        assert torch.allclose(ra_op(x, op, torch.zeros(3)), x if op != "posterize" else torch.round(x * 255) / 255,
                              atol=1e-6), op


def test_ra_ops_analytic():
    x = torch.rand(2, 3, 6, 6)
    # solarize at full strength inverts every pixel (threshold 0); brightness -1 -> factor 0.1
    assert torch.allclose(ra_op(x, "solarize", torch.ones(2)), 1 - x)
    assert torch.allclose(ra_op(x, "brightness", -torch.ones(2)), (0.1 * x).clamp(0, 1), atol=1e-6)
    # color -1 (factor 0.1) moves towards grey; a grey image is unchanged by color
    g = x.mean(1, keepdim=True).expand_as(x).contiguous()
    assert torch.allclose(ra_op(g, "color", torch.ones(2) * 0.7), g, atol=1e-5)
    # posterize at full strength keeps 4 bits: every value a multiple of 16/255
    p = ra_op(x, "posterize", torch.ones(2)) * 255
    assert torch.allclose(p, torch.round(p / 16) * 16, atol=1e-3)
    # autocontrast stretches each channel to [0, 1]
    a = ra_op(0.25 + 0.5 * x, "autocontrast", torch.zeros(2))
    assert torch.allclose(a.amin(dim=(2, 3)), torch.zeros(2, 3), atol=1e-6)
    assert torch.allclose(a.amax(dim=(2, 3)), torch.ones(2, 3), atol=1e-6)
    with pytest.raises(ValueError, match="unknown RandAugment"):
        ra_op(x, "rotate", torch.zeros(2))


def test_rand_augment_range_determinism_and_no_ops():
    x = torch.rand(6, 3, 8, 8)
    a = rand_augment(x, 2, 0.8, generator=torch.Generator().manual_seed(1))
    b = rand_augment(x, 2, 0.8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)
    assert torch.equal(rand_augment(x, 0, 0.8, generator=torch.Generator()), x)
    assert set(RA_OPS) >= {"brightness", "contrast", "solarize"}


# -- Joint Cutout ------------------------------------------------------------

def test_cutout_mask_is_the_box_around_the_joint():
    pts = torch.tensor([[[10.0, 12.0]]])
    mask, boxes = joint_cutout_mask(pts, (32, 32), 3, (2.0, 2.0), 0.0, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(32, 32)
    expected[10:15, 8:13] = 1  # y 12 +- 2, x 10 +- 2, inclusive
    assert torch.equal(mask[0, 0], expected)
    img = torch.rand(1, 3, 32, 32)
    out = apply_mask(img, mask)
    assert torch.allclose(out[0, :, 12, 10], torch.tensor(IMAGENET_MEAN))
    assert torch.equal(out[0, :, 0, 0], img[0, :, 0, 0])


def test_cutout_carried_by_a_transform_equals_cutout_at_mapped_points():
    """A mask drawn in view A and warped by M (here an integer translation) is the mask drawn
    at the mapped joints: the student's rectangles follow the teacher's joints."""
    m, _ = make(options={"hard": ["jc"], "jc_noise": 0.0, "jc_half_size": (3 / 32, 3 / 32), "jc_joints": 1})
    pts = torch.tensor([[[10.0, 12.0]]])
    M = geometry.affine_matrix(m.image_size, translation=(5.0, -3.0))
    m.generator.manual_seed(0)
    carried = m.cutout_mask(pts, M)
    m.generator.manual_seed(0)
    direct = m.cutout_mask(geometry.warp_points(pts, M))
    assert torch.equal(carried, direct) and carried.sum() == 49


def test_perturb_student_masks_around_the_teachers_peaks():
    m, _ = make(options={"hard": ["jc"], "jc_noise": 0.0, "jc_joints": 5, "student_aug": "none",
                         "teacher_aug": "none"})
    hs = m.heatmap_size
    p = torch.tensor([[[20.0, 8.0]] * m.spec.num_keypoints])  # every joint at one place
    h, _ = heatmaps.encode_gaussian(heatmaps.image_to_heatmap(p, m.image_size, hs), hs, 1.0)
    eye = geometry.identity(1)
    img = torch.rand(1, 3, 32, 32)
    v = m.perturb_student(ViewPair(img, img.clone(), eye, eye, {}), h)
    assert torch.allclose(v.student_images[0, :, 8, 20], torch.tensor(IMAGENET_MEAN))
    assert torch.equal(v.student_images[0, :, 25:, :], img[0, :, 25:, :])  # far away: untouched
    assert torch.equal(v.teacher_images, img)


def test_hard_labeled_augmentation_masks_ground_truth_joints():
    m, ds = make(options={"labeled_aug": "hard", "hard": ["jc"], "jc_noise": 0.0}, lam=0.0)
    b = batch_of(ds)
    img, kp, vis = m.augmented_labeled(b)
    fill = torch.tensor(IMAGENET_MEAN)
    hits = 0
    for i in range(img.shape[0]):
        for k in range(kp.shape[1]):
            x, y = kp[i, k].round().long().tolist()
            if vis[i, k] > 0 and 0 <= x < 32 and 0 <= y < 32 and torch.allclose(img[i, :, y, x], fill):
                hits += 1
    assert hits >= img.shape[0]  # each image has at least one masked joint (5 drawn among the visible)


# -- targets, ramp -----------------------------------------------------------

def test_gaussian_targets_peak_and_height():
    p = torch.tensor([[[9.5, 13.5]]])  # image px -> heatmap px (4.5, 6.5) at stride 2
    g = gaussian_targets(p, (32, 32), (16, 16), 1.0, height=torch.tensor([[0.5]]))
    assert float(g.max()) == pytest.approx(0.5 * math.exp(-0.25 / 2) ** 2, rel=1e-5)
    pts, _ = heatmaps.decode_argmax(g, subpixel=False)
    assert pts[0, 0].tolist() in ([4.0, 6.0], [5.0, 6.0], [4.0, 7.0], [5.0, 7.0])


def test_ramp():
    assert ramp(0, 100, 0.0) == 1.0
    assert ramp(0, 100, 0.5) == pytest.approx(math.exp(-5))
    assert ramp(50, 100, 0.5) == 1.0 and ramp(99, 100, 0.5) == 1.0
    assert ramp(10, 100, 0.5) < ramp(30, 100, 0.5) < 1.0


# -- options ----------------------------------------------------------------

def test_option_validation():
    with pytest.raises(ConfigError):
        tiny_config(method="easy_hard", method_options={"hard": ["cutmix"]}).options()
    with pytest.raises(ConfigError, match="jc_half_size"):
        tiny_config(method="easy_hard", method_options={"jc_half_size": (0.2, 0.1)}).options()
    with pytest.raises(ConfigError, match="teacher"):
        tiny_config(method="easy_hard_dual", method_options={"teacher": "ema"}).options()
    with pytest.raises(ConfigError, match="stop_gradient"):
        tiny_config(method="easy_hard_dual", method_options={"stop_gradient": False}).options()
    o = tiny_config(method="easy_hard").options()
    assert (o.teacher_aug, o.student_aug, o.stop_gradient, o.teacher) == ("easy", "hard", True, "same")
    assert o.jc_joints == 5 and o.jc_half_size == pytest.approx((10 / 256, 19 / 256))


# -- dual networks -------------------------------------------------------------

def test_dual_each_network_is_taught_by_the_other_and_only_through_its_hard_view():
    m, ds = make("easy_hard_dual", options={"flip": 0.0})
    b = batch_of(ds)
    imgs = b.images
    M_t = geometry.affine_matrix(m.image_size, angle=torch.tensor([10.0, -5, 0, 20]), scale=1.0)
    M_s = geometry.affine_matrix(m.image_size, angle=torch.tensor([-40.0, 30, 50, 0]), scale=1.3)
    views = ViewPair(geometry.warp_images(imgs, M_t), geometry.warp_images(imgs, M_s), M_t, M_s, {})
    m.make_views = lambda unlabeled: views
    losses = m.training_step(b, b, 0)
    with torch.no_grad():
        e1 = m.module(views.teacher_images)["heatmaps"]
        e2 = m.module2(views.teacher_images)["heatmaps"]
    T = views.teacher_to_student
    t1 = geometry.warp_heatmaps(e2, T, m.image_size)
    t2 = geometry.warp_heatmaps(e1, T, m.image_size)
    h1 = m.module(views.student_images)["heatmaps"]
    h2 = m.module2(views.student_images)["heatmaps"]
    expected = consistency_loss(h1, t1) + consistency_loss(h2, t2)
    assert losses["cons"].item() == pytest.approx(expected.item(), rel=1e-4)
    # gradient of L_cons on network 2 comes only from its own hard-view term (the teacher is detached)
    p2 = list(m.module2.parameters())
    g_got = torch.autograd.grad(losses["cons"], p2, allow_unused=True)
    g_exp = torch.autograd.grad(consistency_loss(h2, t2), p2, allow_unused=True)
    for a, e in zip(g_got, g_exp):
        if e is None:
            continue
        assert torch.allclose(a, e, atol=1e-6, rtol=1e-3)


def test_dual_updates_both_networks_in_one_step_and_reports_both():
    m, ds = make("easy_hard_dual", options={"hard": ["jc", "ra"], "partner_width": 12})
    assert sum(p.numel() for p in m.module2.parameters()) > sum(p.numel() for p in m.module.parameters())
    params = m.parameters()
    opt = torch.optim.Adam(params, lr=1e-2)
    before1 = [p.detach().clone() for p in m.module.parameters()]
    before2 = [p.detach().clone() for p in m.module2.parameters()]
    b = batch_of(ds)
    losses = m.training_step(b, b, 0)
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before1, m.module.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(before2, m.module2.parameters()))
    ev = m.evaluate(ds, torch.device("cpu"))
    assert ev["avg/pck@0.1"] == pytest.approx(0.5 * (ev["pck@0.1"] + ev["net2/pck@0.1"]))
    # state round trip keeps network 2
    s = m.state_dict()
    m2, _ = make("easy_hard_dual", options={"hard": ["jc", "ra"], "partner_width": 12})
    m2.load_state_dict(s)
    for a, p in zip(m.module2.parameters(), m2.module2.parameters()):
        assert torch.equal(a, p)


@pytest.mark.parametrize("method,options", [("easy_hard", {"hard": ["jc", "ra"]}),
                                            ("easy_hard_dual", {"hard": ["jc"]})])
def test_training_reduces_the_loss(method, options):
    torch.manual_seed(0)
    m, ds = make(method, options=options)
    b = batch_of(ds)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = last = None
    for step in range(10):
        losses = m.training_step(b, b, step)
        total = losses["sup"]
        opt.zero_grad()
        (total + losses["cons"]).backward()
        opt.step()
        first = float(total.detach()) if first is None else first
        last = float(total.detach())
    assert last < first


# -- DataDistill -------------------------------------------------------------

class _Pool(nn.Module):
    """A 'network' whose heatmap k is channel k of the image, average-pooled to stride 2:
    equivariant to any warp, so the ensemble must map every prediction back to the dot."""

    def forward(self, x):
        return {"heatmaps": torch.nn.functional.avg_pool2d(x[:, :2], 2)}


def test_distill_ensemble_maps_predictions_back_to_the_image():
    img = torch.zeros(1, 3, 32, 32)
    img[0, 0, 11:13, 19:21] = 1.0  # joint 0 near (19.5, 11.5)
    img[0, 1, 21:23, 7:9] = 1.0    # joint 1 near (7.5, 21.5)
    total = distill_heatmaps(_Pool(), img, (32, 32), (0.8, 1.0, 1.25), flip=False, flip_perm=np.array([0, 1]))
    pts, conf = heatmaps.decode_argmax(total, subpixel=True)
    pts = heatmaps.heatmap_to_image(pts, (32, 32), (16, 16))
    assert torch.allclose(pts[0], torch.tensor([[19.5, 11.5], [7.5, 21.5]]), atol=1.1)
    single = distill_heatmaps(_Pool(), img, (32, 32), (1.0,), flip=False, flip_perm=np.array([0, 1]))
    assert float(conf.min()) > 2 * float(single.amax())  # the three maps add up at the same place
    # the flipped pass is mapped back and its channels renamed by the flip permutation: this
    # (non-semantic) 'network' keeps channel k on image channel k, so after the renaming channel 0
    # holds joint 1's dot and channel 1 joint 0's
    both = distill_heatmaps(_Pool(), img, (32, 32), (1.0,), flip=True, flip_perm=np.array([1, 0]))
    plain = distill_heatmaps(_Pool(), img, (32, 32), (1.0,), flip=False, flip_perm=np.array([1, 0]))
    p2, _ = heatmaps.decode_argmax(both - plain, subpixel=True)
    p2 = heatmaps.heatmap_to_image(p2, (32, 32), (16, 16))
    assert torch.allclose(p2[0], torch.tensor([[7.5, 21.5], [19.5, 11.5]]), atol=1.1)


def test_datadistill_trains_on_gaussians_at_its_pseudo_keypoints():
    m, ds = make("data_distill", options={"student_aug": "none", "flip": 0.0})
    b = batch_of(ds)
    pseudo = b.keypoints.clone()
    unl = Batch(images=b.images, keypoints=pseudo, visibility=torch.ones(pseudo.shape[:2]))
    captured = {}
    orig = m.student_forward

    def spy(images, grad=True):
        out = orig(images, grad)
        captured["h"] = out
        return out
    m.student_forward = spy
    loss, _ = m.unsupervised_loss(unl, 0)
    target = gaussian_targets(pseudo, m.image_size, m.heatmap_size, m.config.train.sigma)
    assert loss.item() == pytest.approx(consistency_loss(captured["h"], target).item(), rel=1e-5)
    assert m.options.teacher == "fixed"
