"""Conditional generation through a keypoint bottleneck (methods/generation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landmark_study import heatmaps
from landmark_study.config import ConfigError
from landmark_study.methods import Batch, get_method

from conftest import tiny_config


def _method(options=None, **overrides):
    cfg = tiny_config(**{"method": "generation", "method_options": options or {},
                         "train.unlabeled_batch_size": 4, **overrides})
    from landmark_study.data.synthetic import get_dataset

    spec = get_dataset("figures", "val", n=2, seed=0, size=32).spec
    cls = get_method(cfg.method)
    return cls(cfg, spec, (32, 32), torch.device("cpu"), torch.Generator().manual_seed(0)), cfg


def _batches(n_lab=4, n_unl=4):
    from landmark_study.data.synthetic import get_dataset

    ds = get_dataset("figures", "train", n=n_lab + n_unl, seed=0, size=32)
    img = torch.from_numpy(ds.images.transpose(0, 3, 1, 2).copy()).float() / 255
    kp = torch.from_numpy(ds.keypoints.astype(np.float32))
    vis = torch.from_numpy(ds.visibility.astype(np.float32))
    return (Batch(images=img[:n_lab], keypoints=kp[:n_lab], visibility=vis[:n_lab]),
            Batch(images=img[n_lab:], keypoints=kp[n_lab:], visibility=vis[n_lab:]))


def test_bottleneck_renders_a_gaussian_at_the_heatmap_peak():
    m, _ = _method({"beta": 50.0, "render_sigma": 1.0})
    h, w = m.heatmap_size
    target = torch.tensor([[[3.0, 5.0], [10.0, 2.0]]])  # (1, K=2, 2) heatmap px
    hm, _ = heatmaps.encode_gaussian(target, (h, w), 0.7)
    maps = m.render(hm)
    assert maps.shape == (1, 2, h, w)
    for k, (x, y) in enumerate(target[0].tolist()):
        iy, ix = divmod(int(maps[0, k].argmax()), w)
        assert (ix, iy) == (int(x), int(y))
        assert float(maps[0, k].max()) == pytest.approx(1.0, abs=0.05)


def test_reconstruction_gradient_reaches_the_detector_through_the_points():
    m, _ = _method()
    lab, unl = _batches()
    losses = m.training_step(lab, unl, 0)
    assert set(losses) == {"sup", "rec"} and float(losses["rec"].detach()) > 0
    m.module.zero_grad()
    losses["rec"].backward()
    kp_grad = sum(float(p.grad.abs().sum()) for p in m.module.kp.parameters() if p.grad is not None)
    enc_grad = sum(float(p.grad.abs().sum()) for p in m.module.encoder.parameters() if p.grad is not None)
    assert kp_grad > 0 and enc_grad > 0
    # the bottleneck is the only path: with the detector's output detached no gradient reaches it
    m.module.zero_grad()
    with torch.no_grad():
        hm = m.module(unl.images)["heatmaps"]
    rec = m.module.reconstruct(unl.images, m.render(hm))
    rec.mean().backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in m.module.kp.parameters())


def test_prediction_is_the_detector_alone():
    m, _ = _method()
    lab, _ = _batches()
    out = m.module(lab.images)["heatmaps"]
    np.testing.assert_array_equal(out.detach().numpy(), m.module.kp(lab.images)["heatmaps"].detach().numpy())
    pts, _ = m.predict(lab.images)
    assert pts.shape == (4, 14, 2)


def test_options_validated_with_the_key_named():
    with pytest.raises(ConfigError, match="distortion"):
        tiny_config(method="generation", method_options={"distortion": 0.3})
    with pytest.raises(ConfigError, match="render_sigma"):
        tiny_config(method="generation", method_options={"render_sigma": 0.0})


def test_reconstruction_loss_falls_in_a_short_run():
    from landmark_study.train import train

    over = {"data.label_fraction": 0.25, "train.unlabeled_batch_size": 4, "train.steps": 60,
            "train.eval_every": 20, "train.lr": 3e-3}
    out = train(tiny_config(method="generation", **over), progress=False)
    assert np.isfinite(out["final"]["pck@0.1"])
    lab, unl = _batches()

    def rec_loss(weights=None):  # the same batch and the same warps, before and after training
        m, _ = _method(**over)
        if weights is not None:
            m.module.load_state_dict(weights)
        with torch.no_grad():
            return float(m.training_step(lab, unl, 0)["rec"])

    before, after = rec_loss(), rec_loss(out["weights"])
    assert after < 0.85 * before, (before, after)  # measured: about 0.2 -> 0.15 in 60 steps
