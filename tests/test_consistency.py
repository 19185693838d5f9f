"""The consistency method (Xie et al. 2021): targets, switches, diagnostics, collapse rule."""

from __future__ import annotations

import pytest
import torch

from landmark_study import geometry, heatmaps
from landmark_study.config import ConfigError
from landmark_study.losses import consistency_loss
from landmark_study.methods import Batch, get_method
from landmark_study.methods.consistency import (COLLAPSE_RATIO, Consistency, ViewPair, joint_cutout, perturb)

from conftest import tiny_config


def make(options=None, lam=1.0, **overrides):
    cfg = tiny_config(**{"method": "consistency", "method_options": options or {},
                         "loss_weights": {"cons": lam}, "train.unlabeled_batch_size": 4, **overrides})
    cls = get_method("consistency")
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("figures", "val", n=4, seed=0, size=32)
    return cls(cfg, ds.spec, ds.image_size, torch.device("cpu"), torch.Generator().manual_seed(0)), ds


def batch_of(ds):
    imgs = torch.from_numpy(ds.images.transpose(0, 3, 1, 2).copy()).float() / 255.0
    return Batch(images=imgs, keypoints=torch.from_numpy(ds.keypoints).float(),
                 visibility=torch.from_numpy(ds.visibility).float())


# -- loss -------------------------------------------------------------------

def test_pixel_weights_analytic_and_neutral():
    s = torch.zeros(1, 1, 2, 2)
    t = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]]]])
    assert consistency_loss(s, t).item() == pytest.approx((1 + 4) / 4)
    w = torch.tensor([[[[2.0, 0.5], [3.0, 3.0]]]])
    assert consistency_loss(s, t, pixel_weights=w).item() == pytest.approx((2 * 1 + 0.5 * 4) / 4)
    assert consistency_loss(s, t, pixel_weights=torch.ones_like(s)).item() == pytest.approx(consistency_loss(s, t).item())
    with pytest.raises(ValueError, match="pixel_weights"):
        consistency_loss(s, t, pixel_weights=torch.ones(1, 1, 3, 3))


# -- targets -----------------------------------------------------------------

def _views(m, M_t, M_s):
    n = M_t.shape[0]
    z = torch.zeros(n, 3, *m.image_size)
    return ViewPair(z, z, M_t, M_s, {})


def test_warped_target_peak_lands_at_mapped_point():
    m, _ = make()
    hs = m.heatmap_size
    p_img = torch.tensor([[[12.0, 10.0]]])  # teacher-view image px
    hm, _ = heatmaps.encode_gaussian(heatmaps.image_to_heatmap(p_img, m.image_size, hs), hs, 1.5)
    M_t = geometry.affine_matrix(m.image_size, angle=20.0, scale=1.1)
    M_s = geometry.affine_matrix(m.image_size, angle=-15.0, scale=0.9, translation=(1.0, -2.0))
    target, jw, pw = m.teacher_targets(hm, _views(m, M_t, M_s))
    assert jw is None and pw is None
    expect = geometry.warp_points(p_img, geometry.relative(M_t, M_s))
    got, _ = heatmaps.decode_argmax(target, subpixel=True)
    got = heatmaps.heatmap_to_image(got, m.image_size, hs)
    assert torch.dist(got, expect) < 2.0  # within one heatmap pixel (stride 2)


def test_identity_views_give_the_teacher_itself():
    m, _ = make({"teacher_aug": "none", "student_aug": "none", "flip": 0.0})
    M_t, M_s = m.view_matrices(3)
    assert torch.allclose(M_t, torch.eye(3).expand(3, 3, 3)) and torch.allclose(M_s, M_t)
    hm = torch.rand(3, m.spec.num_keypoints, *m.heatmap_size)
    target, _, _ = m.teacher_targets(hm, _views(m, M_t, M_s))
    assert torch.allclose(target, hm, atol=1e-5)


def test_shared_flip_cancels_between_views():
    m, _ = make({"teacher_aug": "none", "student_aug": "none", "flip": 1.0})
    M_t, M_s = m.view_matrices(2)
    assert not torch.allclose(M_t, torch.eye(3).expand(2, 3, 3))
    assert torch.allclose(geometry.relative(M_t, M_s), torch.eye(3).expand(2, 3, 3), atol=1e-6)


def test_gaussian_target_height_is_teacher_peak_and_rerendered():
    m, _ = make({"target": "gaussian"})
    hs = m.heatmap_size
    pt = torch.tensor([[[7.0, 9.0]]])
    wide, _ = heatmaps.encode_gaussian(pt, hs, 4.0)
    hm = 0.6 * wide
    eye = torch.eye(3)[None]
    target, _, _ = m.teacher_targets(hm, _views(m, eye, eye))
    assert target.max().item() == pytest.approx(0.6, abs=0.02)
    ref, _ = heatmaps.encode_gaussian(pt, hs, m.config.train.sigma)
    assert torch.allclose(target, 0.6 * ref, atol=0.05)  # narrow again: sigma of the config


def test_threshold_and_reweighting():
    m, _ = make({"confidence_threshold": 0.4, "reweight_gain": 10.0})
    k = m.spec.num_keypoints
    hm = torch.zeros(2, k, *m.heatmap_size)
    hm[0, 0, 5, 5] = 0.5
    hm[1, 1, 3, 3] = 0.3
    eye = torch.eye(3).expand(2, 3, 3)
    target, jw, pw = m.teacher_targets(hm, _views(m, eye, eye))
    assert jw[0, 0] == 1 and jw[1, 1] == 0 and jw.sum() == 1
    assert pw.shape == hm.shape and pw.min() >= 1.0
    assert pw[0, 0, 5, 5].item() == pytest.approx(1 + 10 * target[0, 0, 5, 5].item())


# -- switches ----------------------------------------------------------------

class _Spy(Consistency):
    name = "consistency"

    def teacher_forward(self, images, grad):
        out = super().teacher_forward(images, grad)
        self.seen = out.requires_grad
        return out


@pytest.mark.parametrize("sg", [True, False])
def test_stop_gradient_detaches_teacher_branch(sg):
    m, ds = make({"stop_gradient": sg})
    spy = _Spy(m.config, m.spec, m.image_size, m.device, torch.Generator().manual_seed(0))
    b = batch_of(ds)
    spy.training_step(b, b, 0)
    assert spy.seen is (not sg)


def test_ema_teacher_update_and_state_round_trip():
    m, _ = make({"teacher": "ema", "ema_decay": 0.9})
    with torch.no_grad():
        for p in m.module.parameters():
            p.add_(1.0)
    old = [p.clone() for p in m.teacher_module.parameters()]
    m.before_step(0)
    for pt, po, ps in zip(m.teacher_module.parameters(), old, m.module.parameters()):
        assert torch.allclose(pt, 0.9 * po + 0.1 * ps, atol=1e-6)
    assert not any(p.requires_grad for p in m.teacher_module.parameters())
    assert all(p.requires_grad for p in m.module.parameters())
    m._max_response, m._collapsed_at = 0.7, 30.0
    state = m.state_dict()
    m2, _ = make({"teacher": "ema", "ema_decay": 0.9})
    m2.load_state_dict(state)
    for a, b in zip(m2.teacher_module.parameters(), m.teacher_module.parameters()):
        assert torch.equal(a, b)
    assert m2._max_response == pytest.approx(0.7) and m2._collapsed_at == 30.0


def test_fixed_teacher_config_is_supervised_of_same_run():
    m, _ = make({"teacher": "fixed"})
    t = Consistency.fixed_teacher_config(m.config)
    assert t.method == "supervised" and t.data == m.config.data and t.model == m.config.model
    assert t.train.steps == m.config.train.steps and t.seed == m.config.seed


def test_option_validation():
    with pytest.raises(ConfigError, match="teacher"):
        tiny_config(method="consistency", method_options={"teacher": "student"})
    with pytest.raises(ConfigError, match="hard_scale"):
        tiny_config(method="consistency", method_options={"hard_scale": [1.5, 0.5]})
    with pytest.raises(ConfigError, match="perturbations"):
        tiny_config(method="consistency", method_options={"perturbations": ["blur"]})
    with pytest.raises(ConfigError, match="loss_weights"):
        tiny_config(method="consistency", loss_weights={"unsup": 1.0})


# -- collapse rule -----------------------------------------------------------

def test_collapse_ratio_and_first_collapse_step():
    m, _ = make(**{"train.steps": 10, "train.eval_every": 1})  # burn-in: first step only
    seq = [0.9, 0.3, 0.4, 0.6, 0.3, 0.14, 0.1, 0.5, 0.1, 0.1]
    ratios, at = [], []
    for i, r in enumerate(seq):
        m.after_step(i, {"peak_teacher": r, "peak_labeled": 0.5})
        ratios.append(m.diagnostics["collapse_ratio"])
        at.append(m.diagnostics["collapsed_at"])
    assert ratios[0] == 1.0  # burn-in = 10% of 10 steps: step 1 is already counted, max 0.9
    assert ratios[5] == pytest.approx(0.14 / 0.9)
    assert at[4] == 10 and at[5] == 6  # censored at train.steps until the first ratio < 0.25
    assert at[-1] == 6 and COLLAPSE_RATIO == 0.25


def test_diagnostics_average_over_the_log_window():
    m, _ = make(**{"train.steps": 6, "train.eval_every": 3, "method_options": {"collapse_burnin": 0.0}})
    for i, r in enumerate([0.1, 0.2, 0.3, 0.5, 0.5, 0.5]):
        m.after_step(i, {"peak_teacher": r})
        if i == 2:
            assert m.diagnostics["peak_teacher"] == pytest.approx(0.2)
    assert m.diagnostics["peak_teacher"] == pytest.approx(0.5)
    assert m.diagnostics["collapse_ratio"] == pytest.approx(1.0)


def test_training_logs_responses_for_every_variant_and_baseline():
    from landmark_study.train import train

    for opts, lam in (({"stop_gradient": False}, 1.0), ({}, 0.0),
                      ({"teacher": "ema", "confidence_threshold": 0.2, "reweight_gain": 5.0}, 1.0)):
        cfg = tiny_config(method="consistency", method_options=opts, loss_weights={"cons": lam},
                          **{"train.unlabeled_batch_size": 4, "data.num_labels": 8})
        out = train(cfg, progress=False)
        for e in out["history"]:
            for k in ("peak_labeled", "peak_teacher", "peak_student", "collapse_ratio", "collapsed_at"):
                assert f"diag/{k}" in e, (opts, k)
            assert "val/pck@0.1" in e
        assert ("loss/cons" in out["history"][-1]) == (lam > 0)


def test_a_few_steps_reduce_the_loss():
    m, ds = make({"teacher_aug": "none", "student_aug": "easy", "flip": 0.0},
                 **{"train.augment": {"rotation": 0.0, "scale": [1.0, 1.0], "translation": 0.0, "flip": 0.0}})
    b = batch_of(ds)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    totals = []
    for i in range(12):
        losses = m.training_step(b, b, i)
        total = losses["sup"] + losses["cons"]
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(losses["sup"].detach()))
    assert totals[-1] < totals[0]


# -- perturbations -----------------------------------------------------------

def test_joint_cutout_masks_only_around_chosen_joints():
    imgs = torch.ones(2, 3, 32, 32)
    pts = torch.tensor([[[8.0, 8.0], [24.0, 24.0]], [[16.0, 16.0], [16.0, 16.0]]])
    vis = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    out, boxes = joint_cutout(imgs, pts, 3, half_size=(2.0, 3.0), noise=0.0, fill=(0.0,), visibility=vis,
                              generator=torch.Generator().manual_seed(0))
    assert boxes.shape == (2, 3, 4)
    assert out[0, :, 8, 8].eq(0).all() and out[0, :, 24, 24].eq(1).all()  # invisible joint never chosen
    assert out[1, :, 16, 16].eq(0).all() and out[:, :, 0, 0].eq(1).all()
    assert imgs.eq(1).all()  # not in place
    same, _ = joint_cutout(imgs, pts, 0)
    assert torch.equal(same, imgs)


def test_affine_perturbation_moves_keypoints_with_the_image():
    img = torch.zeros(1, 3, 32, 32)
    img[0, :, 10, 20] = 1.0
    kp = torch.tensor([[[20.0, 10.0]]])
    out, kp2, vis2, scale = perturb(img, kp, torch.ones(1, 1), "affine30", torch.Generator().manual_seed(3))
    yx = divmod(int(out[0, 0].argmax()), 32)
    assert vis2.item() == 1.0 and 0.75 <= scale.item() <= 1.25
    assert abs(yx[0] - kp2[0, 0, 1].item()) <= 1 and abs(yx[1] - kp2[0, 0, 0].item()) <= 1
