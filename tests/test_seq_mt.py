"""Seq-MT, Comm-MT, Heatmap-MT (Honari et al. 2018): networks, losses, data preparation, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landmark_study import geometry
from landmark_study.config import ConfigError, RunConfig
from landmark_study.losses import elt_loss
from landmark_study.methods import get_method
from landmark_study.methods.base import Batch
from landmark_study.methods.seq_mt import (FullResLocaliser, HeatmapMTNet, SeqMTNet, balanced_labeled, heatmap_nll,
                                           landmark_loss, normalise_points, on_shape_fractions)

SMALL = {"width": 4, "dilations": [1, 2]}


def tiny(method="seq_mt", data="blocks", fraction=0.5, steps=4, **opts):
    o = dict(SMALL) if method != "comm_mt" else {"width": 4, "stages": 2, "fc": 16}
    o.update(opts)
    return RunConfig().with_overrides(**{
        "method": method, "data.name": data, "data.size": 32, "data.n_train": 30, "data.n_val": 8,
        "data.label_fraction": fraction, "model.width": 4, "train.steps": steps, "train.batch_size": 4,
        "train.unlabeled_batch_size": 4, "train.eval_every": steps, "train.checkpoint_every": steps,
        "train.eval_size": 8, "train.augment.rotation": 0.0, "train.augment.scale": [1.0, 1.0],
        "train.augment.translation": 0.0, "train.augment.flip": 0.0, "method_options": o})


def build(cfg):
    from landmark_study.train import load_run_data

    data = load_run_data(cfg.data)
    cls = get_method(cfg.method)
    data = cls.prepare_data(cfg, data, torch.device("cpu"))
    m = cls(cfg, data.labeled.spec, data.labeled.image_size, torch.device("cpu"), torch.Generator().manual_seed(0))
    return m, data


def batch(ds, idx):
    t = torch.from_numpy(ds.images[idx].transpose(0, 3, 1, 2).copy()).float() / 255
    return Batch(images=t, keypoints=torch.from_numpy(ds.keypoints[idx]).float(),
                 visibility=torch.from_numpy(ds.visibility[idx]).float(),
                 labels=torch.from_numpy(ds.labels[idx]).long(), index=torch.as_tensor(idx))


# ----------------------------------------------------------------------------- pieces


def test_localiser_keeps_the_input_resolution_for_both_strides():
    x = torch.rand(2, 3, 30, 30)
    for stride in (1, 2):
        out = FullResLocaliser(5, 4, 3, (1, 2, 4), stride)(x)
        assert out.shape == (2, 5, 30, 30)


def test_seq_mt_classifier_sees_only_the_points():
    """The bottleneck: two images whose soft-argmax points agree get the same logits."""
    torch.manual_seed(0)
    net = SeqMTNet(3, 4, 4, 3, (1,), 1, 1.0, (8,)).eval()
    x = torch.rand(2, 3, 16, 16)
    class Zero(torch.nn.Module):
        def forward(self, _x):
            return torch.zeros(2, 3, 16, 16)

    net.localiser = Zero()  # constant maps -> points at the centre
    centre = net(x)["points"]
    assert torch.allclose(centre, torch.full_like(centre, 7.5))
    direct = net.classifier(normalise_points(centre, (16, 16)).flatten(1))
    assert torch.allclose(net(x)["logits"], direct)


def test_gradient_of_the_class_loss_reaches_the_localiser():
    torch.manual_seed(0)
    net = SeqMTNet(2, 3, 4, 3, (1, 2), 2, 1.0, (8,))
    loss = torch.nn.functional.cross_entropy(net(torch.rand(4, 3, 16, 16))["logits"], torch.tensor([0, 1, 2, 0]))
    loss.backward()
    g = net.localiser.body[0].weight.grad
    assert g is not None and g.abs().sum() > 0


def test_normalise_points_centre_scale_is_translation_and_scale_invariant():
    p = torch.rand(3, 6, 2) * 40
    q = p * 1.7 + torch.tensor([5.0, -3.0])
    a, b = normalise_points(p, (60, 60), "centre_scale"), normalise_points(q, (60, 60), "centre_scale")
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.mean(1), torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(a.pow(2).sum(-1).mean(-1), torch.ones(3), atol=1e-5)
    c1, c2 = normalise_points(p, (60, 60), "centre"), normalise_points(p + 7.0, (60, 60), "centre")
    assert torch.allclose(c1, c2, atol=1e-5) and torch.allclose(c1, (p - p.mean(1, keepdim=True)) * 4 / 60)
    raw = normalise_points(torch.tensor([[[0.0, 0.0], [59.0, 59.0]]]), (60, 60))
    assert torch.allclose(raw, torch.tensor([[[-1.0, -1.0], [1.0, 1.0]]]))


def test_landmark_loss_is_mean_squared_pixel_distance():
    pred = torch.zeros(2, 3, 2)
    target = torch.tensor([[[3.0, 4.0]] * 3, [[0.0, 0.0]] * 3])
    assert landmark_loss(pred, target).item() == pytest.approx(25.0 / 2)  # (3 * 25 + 0) / 6
    vis = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert landmark_loss(pred, target, vis).item() == pytest.approx(25.0 / 6)


def test_heatmap_nll_analytic():
    maps = torch.zeros(1, 1, 4, 5)
    assert heatmap_nll(maps, torch.tensor([[[2.2, 1.6]]])).item() == pytest.approx(np.log(20))
    maps[0, 0, 2, 2] = 100.0  # all the mass at (x=2, y=2)
    assert heatmap_nll(maps, torch.tensor([[[2.2, 1.6]]])).item() == pytest.approx(0.0, abs=1e-6)


def test_elt_is_zero_for_an_equivariant_predictor():
    """Points that move with the image (here: the ground truth) give zero ELT."""
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("blocks", "val", n=4, seed=0, size=60)
    M = geometry.sample_affine(4, (60, 60), rotation=20, scale=(0.9, 1.1), translation=0.05,
                               generator=torch.Generator().manual_seed(0))
    kp = torch.from_numpy(ds.keypoints)
    assert elt_loss(geometry.warp_points(kp, M), kp, M).item() == pytest.approx(0.0, abs=1e-6)
    assert elt_loss(kp, kp, M).item() > 1.0


def test_balanced_labeled_spreads_over_classes():
    labels = np.repeat(np.arange(5), [50, 40, 30, 3, 20])
    idx = balanced_labeled(labels, 20, seed=0)
    counts = np.bincount(labels[idx], minlength=5)
    assert counts.sum() == 20 and len(np.unique(idx)) == 20
    assert counts.tolist() == [4, 4, 4, 3, 5] or (counts.max() - counts[counts < 3].size <= 5 and counts[3] == 3)
    assert np.array_equal(idx, balanced_labeled(labels, 20, seed=0))
    idx7 = balanced_labeled(labels, 7, seed=1)
    assert np.bincount(labels[idx7], minlength=5).max() - np.bincount(labels[idx7], minlength=5).min() <= 1


def test_on_shape_fractions_finds_the_assignment():
    tri = np.zeros((2, 10, 10), bool)
    sq = np.zeros((2, 10, 10), bool)
    tri[:, 1:3, 1:3] = True
    sq[:, 6:9, 6:9] = True
    pts = np.array([[[7.0, 7.0], [2.0, 2.0]], [[7.0, 7.0], [9.0, 1.0]]])  # landmark 0 on the square
    r = on_shape_fractions(pts, tri, sq, near_px=0.0)
    assert r["swapped"] == 1.0
    assert r["on_shape_square"] == 1.0 and r["on_shape_triangle"] == 0.5 and r["on_shape_both"] == 0.5
    r2 = on_shape_fractions(pts, tri, sq, near_px=8.0)
    assert r2["on_shape_triangle"] == 1.0


# ----------------------------------------------------------------------------- methods


def test_prepare_data_is_class_balanced_and_keeps_the_pool():
    cfg = tiny(fraction=0.5)
    m, data = build(cfg)
    counts = np.bincount(data.labeled.labels, minlength=15)
    assert len(data.labeled) == 15 and len(data.unlabeled) == 15
    assert counts.max() == 1  # 15 labels over 15 classes (where each class exists)
    before = {tuple(k.ravel()) for k in np.concatenate([data.labeled.keypoints, data.unlabeled.keypoints])}
    assert len(before) == 30


def test_uses_unlabeled_follows_the_losses():
    assert not build(tiny(attribute=False, elt=False))[0].uses_unlabeled
    assert build(tiny(attribute=True))[0].uses_unlabeled
    assert build(tiny(elt=True))[0].uses_unlabeled
    assert not build(tiny(fraction=1.0, attribute=True))[0].uses_unlabeled


@pytest.mark.parametrize("method,opts,losses", [
    ("seq_mt", {"attribute": True, "elt": True}, {"lm", "attr", "elt"}),
    ("seq_mt", {}, {"lm"}),
    ("comm_mt", {"attribute": True}, {"lm", "attr"}),
    ("heatmap_mt", {"attribute": True}, {"lm", "attr"}),
])
def test_training_step_returns_the_switched_on_losses_and_learns(method, opts, losses):
    torch.manual_seed(0)
    m, data = build(tiny(method, **opts))
    lb, ub = batch(data.labeled, np.arange(4)), batch(data.unlabeled, np.arange(4))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(10):
        out = m.training_step(lb, ub if m.uses_unlabeled else None, 0)
        assert set(out) == losses
        total = sum(out.values())
        first = float(total.detach()) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    m.generator.manual_seed(0)
    with torch.no_grad():
        last = float(sum(m.training_step(lb, ub if m.uses_unlabeled else None, 0).values()))
    assert last < first


def test_elt_uses_only_unlabeled_images():
    """With no unlabeled batch there is no ELT term (the 100% column)."""
    m, data = build(tiny(elt=True))
    out = m.training_step(batch(data.labeled, np.arange(4)), None, 0)
    assert set(out) == {"lm"}


def test_heatmap_mt_points_are_on_the_pixel_grid():
    m, data = build(tiny("heatmap_mt"))
    pts, conf = m.predict(batch(data.val, np.arange(3)).images)
    assert torch.equal(pts, pts.round()) and pts.shape == (3, 6, 2)
    assert torch.all((conf > 0) & (conf <= 1))


def test_evaluate_reports_pixel_error_accuracy_and_shapes_fractions():
    m, data = build(tiny(attribute=True))
    ev = m.evaluate(data.val, torch.device("cpu"))
    assert {"err_px", "err_px_triangle", "acc", "pck@0.1"} <= set(ev)
    pts, _ = m.predict(batch(data.val, np.arange(len(data.val))).images)
    err = np.linalg.norm(pts.numpy() - data.val.keypoints, axis=-1).mean()
    assert ev["err_px"] == pytest.approx(err, rel=1e-5)
    ms, sdata = build(tiny(data="shapes", fraction=1.0, landmarks=False, attribute=True))
    ev2 = ms.evaluate(sdata.val, torch.device("cpu"))
    assert {"on_shape_triangle", "on_shape_square", "on_shape_both", "swapped"} <= set(ev2)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="kernel"):
        tiny(kernel=4)
    with pytest.raises(ConfigError, match="point_norm"):
        tiny(point_norm="rotate")
    with pytest.raises(ConfigError, match="elt"):
        tiny("comm_mt", elt=True)
    with pytest.raises(ConfigError, match="loss_weights"):
        tiny("heatmap_mt").with_overrides(loss_weights={"elt": 1.0})


def test_a_short_run_trains_end_to_end(tmp_path):
    from landmark_study.runs import ResultsStore, run

    r = run(tiny(attribute=True, elt=True, steps=2), ResultsStore(tmp_path))
    assert np.isfinite(r.final["err_px"]) and 0.0 <= r.final["acc"] <= 1.0
    assert any("loss/elt" in h for h in r.history)
