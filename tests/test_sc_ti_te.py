"""Moskvyak et al. 2021 method and its baselines (methods/sc_ti_te.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from landmark_study import geometry, heatmaps
from landmark_study.config import ConfigError
from landmark_study.losses import keypoint_representations
from landmark_study.methods import Batch, get_method
from landmark_study.methods.sc_ti_te import (PseudoLabel, SemanticConsistency, _nested_subset,
                                             keypoint_representations_fast, representation_metrics)

from conftest import tiny_config

NO_AUG = {"train.augment.rotation": 0.0, "train.augment.scale": [1.0, 1.0], "train.augment.translation": 0.0,
          "train.augment.flip": 0.0}


def _method(method="sc_ti_te", options=None, **overrides):
    cfg = tiny_config(**{"method": method, "method_options": options or {}, "train.unlabeled_batch_size": 4,
                         **overrides})
    from landmark_study.data.synthetic import get_dataset

    spec = get_dataset("figures", "val", n=2, seed=0, size=32).spec
    cls = get_method(cfg.method)
    return cls(cfg, spec, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0)), cfg


def _batches(n_lab=4, n_unl=4, seed=0):
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("figures", "train", n=n_lab + n_unl, seed=0, size=32)
    img = torch.from_numpy(ds.images.transpose(0, 3, 1, 2).copy()).float() / 255
    kp = torch.from_numpy(ds.keypoints.astype(np.float32))
    vis = torch.from_numpy(ds.visibility.astype(np.float32))
    lab = Batch(images=img[:n_lab], keypoints=kp[:n_lab], visibility=vis[:n_lab])
    unl = Batch(images=img[n_lab:], keypoints=kp[n_lab:], visibility=vis[n_lab:])
    return lab, unl


# -- keypoint representations ------------------------------------------------

def test_fast_representations_match_reference_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 5, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    maps = torch.randn(3, 4, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ref = keypoint_representations(feats, maps)
    fast = keypoint_representations_fast(feats, maps)
    assert fast.shape == (3, 4, 5)
    torch.testing.assert_close(fast, ref)
    w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((ref * w).sum(), (feats, maps))
    gb = torch.autograd.grad((fast * w).sum(), (feats, maps))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b)


def test_fast_representations_gradcheck_and_analytic_value():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    maps = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(keypoint_representations_fast, (feats, maps))
    # a delta heatmap at pixel (1, 2) picks the features there (where they are positive)
    f = torch.rand(1, 3, 4, 4, dtype=torch.float64) + 0.1
    h = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    h[0, 0, 1, 2] = 2.0
    torch.testing.assert_close(keypoint_representations_fast(f, h)[0, 0], 2.0 * f[0, :, 1, 2])
    with pytest.raises(ValueError):
        keypoint_representations_fast(f, torch.zeros(1, 1, 3, 3, dtype=torch.float64))


def test_representation_metrics_separated_and_random():
    rng = np.random.default_rng(0)
    k, c, n = 5, 8, 30
    centres = rng.normal(size=(k, c)) * 10
    z = centres[None] + 0.01 * rng.normal(size=(n, k, c))
    vis = np.ones((n, k))
    m = representation_metrics(z, vis)
    assert m["repr_knn"] == pytest.approx(1.0)
    assert m["repr_nmi"] == pytest.approx(1.0)
    m = representation_metrics(rng.normal(size=(n, k, c)), vis)
    assert m["repr_knn"] < 0.5 and m["repr_nmi"] < 0.3
    # invisible keypoints are ignored: corrupt them and nothing changes
    z2 = z.copy()
    z2[:, 0] = rng.normal(size=(n, c))
    vis2 = vis.copy()
    vis2[:, 0] = 0
    assert representation_metrics(z2, vis2)["repr_knn"] == pytest.approx(1.0)


# -- the method ---------------------------------------------------------------

def test_identity_transform_gives_zero_te_and_ti():
    """With g = identity and predicted heatmaps everywhere, f(g(x)) = g(f(x)) and z = z' exactly."""
    m, _ = _method(options={"distortion": 0.0, "gt_heatmaps": False})
    lab, unl = _batches()
    losses = m.training_step(lab, unl, 0)
    assert set(losses) == {"sup", "sc", "te", "ti"}
    assert float(losses["te"]) < 1e-10
    assert float(losses["ti"]) < 1e-8
    assert float(losses["sc"]) > 0.1  # log-loss of an untrained classifier


def test_gt_heatmaps_make_te_supervised_on_labeled_rows():
    """With ground-truth heatmaps and g = identity, TE compares f(x_l) with the targets: non-zero."""
    m, _ = _method(options={"distortion": 0.0, "gt_heatmaps": True}, **NO_AUG)
    lab, unl = _batches()
    assert float(m.training_step(lab, unl, 0)["te"]) > 1e-4


@pytest.mark.parametrize("switches,expected", [
    ({"sc": False}, {"sup", "te", "ti"}),
    ({"te": False, "ti": False}, {"sup", "sc"}),
    ({"te": False}, {"sup", "sc", "ti"}),
    ({"sc": False, "te": False}, {"sup", "ti"}),
])
def test_switches_select_losses(switches, expected):
    m, _ = _method(options=switches)
    lab, unl = _batches()
    assert set(m.training_step(lab, unl, 0)) == expected


def test_sc_loss_decreases_on_a_fixed_batch():
    m, _ = _method(options={"te": False, "ti": False}, **NO_AUG)
    lab, unl = _batches()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(10):
        losses = m.training_step(lab, unl, 0)
        total = 1e3 * losses["sup"] + 0.5 * losses["sc"]
        first = float(total) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert float(total) < 0.8 * first


def test_evaluate_reports_representation_metrics():
    from landmark_study.data.synthetic import get_dataset

    m, _ = _method(options={"repr_images": 6})
    ds = get_dataset("figures", "val", n=8, seed=0, size=32)
    out = m.evaluate(ds, torch.device("cpu"))
    for key in ("pck@0.1", "kcn_acc", "repr_knn", "repr_nmi"):
        assert 0.0 <= out[key] <= 1.0


def test_options_are_validated():
    with pytest.raises(ConfigError, match="distortion"):
        tiny_config(method="sc_ti_te", method_options={"distortion": 0.3})
    with pytest.raises(ConfigError, match="unknown key"):
        tiny_config(method="sc_ti_te", method_options={"tee": False})
    with pytest.raises(ConfigError, match="unlabeled_fraction"):
        tiny_config(method="sc_ti_te", method_options={"unlabeled_fraction": 0.0})
    with pytest.raises(ConfigError, match="beta"):
        tiny_config(method="elt_heatmap", method_options={"beta": -1.0})


def test_unlabeled_fraction_keeps_a_nested_share():
    a = _nested_subset(100, 0.1, 5)
    b = _nested_subset(100, 0.5, 5)
    assert len(a) == 10 and len(b) == 50 and set(a) <= set(b)
    from landmark_study.train import load_run_data

    cfg = tiny_config(method="sc_ti_te", method_options={"unlabeled_fraction": 0.25},
                      **{"data.label_fraction": 0.1})
    data = load_run_data(cfg.data)
    out = SemanticConsistency.prepare_data(cfg, data, torch.device("cpu"))
    assert len(out.unlabeled) == int(np.ceil(0.25 * len(data.unlabeled)))
    assert len(out.labeled) == len(data.labeled)


def test_tiny_training_run(tmp_path):
    from landmark_study.train import train

    cfg = tiny_config(method="sc_ti_te", method_options={"repr_images": 8},
                      **{"data.label_fraction": 0.25, "train.unlabeled_batch_size": 4})
    out = train(cfg, progress=False)
    assert {"loss/sup", "loss/sc", "loss/te", "loss/ti", "val/repr_knn"} <= set(out["history"][-1])


# -- baselines ----------------------------------------------------------------

def test_elt_is_zero_for_identity_transform():
    m, _ = _method(method="elt_heatmap", options={"distortion": 0.0})
    lab, unl = _batches()
    losses = m.training_step(lab, unl, 0)
    assert set(losses) == {"sup", "elt"}
    assert float(losses["elt"]) < 1e-10


class _BlobTeacher(torch.nn.Module):
    """Every keypoint channel = image channel 0 resized to the heatmap grid."""

    def forward(self, x):
        return {"heatmaps": torch.nn.functional.interpolate(x[:, :1], scale_factor=0.5, mode="bilinear",
                                                            align_corners=False).expand(-1, 14, -1, -1)}


def test_pseudo_labels_map_every_transform_back():
    """Multi-transform inference: heatmaps of scaled/flipped copies land back on the original point."""
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("figures", "val", n=3, seed=0, size=32)
    pts = np.array([[10.0, 12.0], [20.0, 8.0], [16.0, 22.0]], dtype=np.float32)
    blob, _ = heatmaps.encode_gaussian(torch.from_numpy(pts)[:, None], (32, 32), 2.0)
    images = np.zeros_like(ds.images)
    images[..., 0] = (255 * blob[:, 0].numpy()).astype(np.uint8)
    ds = dataclasses.replace(ds, images=images)
    teacher = type("T", (), {"module": _BlobTeacher(), "image_size": (32, 32), "spec": ds.spec})()
    out, conf = PseudoLabel.pseudo_labels(teacher, ds, (0.85, 1.0, 1.15), torch.device("cpu"))
    assert out.shape == (3, 14, 2) and conf.shape == (3, 14)
    err = np.linalg.norm(out - pts[:, None], axis=-1)
    assert err.max() < 1.0  # within one image pixel (heatmaps are at half resolution)


def test_pseudo_label_teacher_is_the_supervised_run():
    from landmark_study.runs import run_key

    cfg = tiny_config(method="pseudo_label")
    teacher = PseudoLabel.teacher_config(cfg)
    assert teacher.method == "supervised" and teacher.method_options == {}
    assert run_key(teacher) == run_key(cfg.with_overrides(method="supervised", method_options={}))
