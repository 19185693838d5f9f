"""Tests for landmark_study.models: shapes, heads, registry, parameter counts, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landmark_study.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS,
    FeatureFusion,
    KeypointClassifier,
    build_model,
    count_parameters,
    gn_groups,
    keypoint_representations,
)

NAMES = sorted(MODELS)
K = 5

# Parameter counts stated in the docstrings (backbones.py and build_model).
BACKBONE_PARAMS = {
    "hrnet_small": 192_656,
    "hourglass": 72_944,
    "resnet_deconv": 406_032,
    "unet_small": 273_216,
}
TOTAL_PARAMS_K10 = {
    "hrnet_small": 192_826,
    "hourglass": 73_274,
    "resnet_deconv": 406_362,
    "unet_small": 273_346,
}
INPUT_MULTIPLE_STRIDE2 = {"hrnet_small": 8, "hourglass": 16, "resnet_deconv": 16, "unet_small": 16}


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches; avoids OpenMP oversubscription on the shared 2-core box
    yield
    torch.set_num_threads(old)


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g)


def _model(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, K, **kw)


# ------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_output_shapes_for_sizes_and_strides(name, stride):
    model = _model(name, heatmap_stride=stride).eval()
    sizes = [(64, 64), (96, 96), (128, 128), (64, 128)] if stride > 1 else [(64, 64), (64, 96)]
    for h, w in sizes:
        with torch.no_grad():
            out = model(_images(2, h, w))
        assert out["heatmaps"].shape == (2, K, h // stride, w // stride)
        assert model.heatmap_size(h, w) == (h // stride, w // stride)
        feats = out["features"]
        assert len(feats) >= 2
        assert feats[0].shape[-2:] == (h // stride, w // stride)
        for f, c in zip(feats, model.backbone.feature_channels, strict=True):
            assert f.shape[:2] == (2, c)
        for fine, coarse in zip(feats[:-1], feats[1:]):
            assert coarse.shape[-2] * 2 == fine.shape[-2] and coarse.shape[-1] * 2 == fine.shape[-1]
        assert set(out) == {"heatmaps", "features"}


@pytest.mark.parametrize("name", NAMES)
def test_input_multiple_documented_and_enforced(name):
    m2 = _model(name, heatmap_stride=2)
    m4 = _model(name, heatmap_stride=4)
    assert m2.input_multiple == INPUT_MULTIPLE_STRIDE2[name]
    assert m4.input_multiple == 2 * INPUT_MULTIPLE_STRIDE2[name]
    bad = 64 + m2.input_multiple // 2
    with pytest.raises(ValueError, match=rf"divisible by {m2.input_multiple}; got {bad}x64"):
        m2(_images(1, bad, 64))
    with pytest.raises(ValueError, match="divisible by"):
        m4.heatmap_size(64, 64 + m2.input_multiple)


def test_bad_inputs_give_clear_errors():
    model = _model("unet_small")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_hrnet_small_features_decrease_in_resolution():
    model = _model("hrnet_small").eval()
    with torch.no_grad():
        feats = model(_images(2, 64, 64))["features"]
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    two = _model("hrnet_small", num_branches=2, modules=(2,))
    assert two.input_multiple == 4
    assert [f.shape[-1] for f in two(_images(1, 64, 64))["features"]] == [32, 16]


def test_gpu_sized_configuration_shapes():
    model = build_model("hrnet_small", 15, width=32, heatmap_stride=4, fused_channels=64).eval()
    with torch.no_grad():
        out = model(_images(1, 256, 256))
    assert out["heatmaps"].shape == (1, 15, 64, 64)
    assert out["fused"].shape == (1, 64, 64, 64)
    assert sum(model.backbone.feature_channels) == 32 + 64 + 128


# -------------------------------------------------------------------------- heads


@pytest.mark.parametrize("name", NAMES)
def test_detector_descriptor_head(name):
    model = _model(name, head="detector_descriptor", descriptor_dim=24)
    out = model(_images(2, 64, 96))
    assert set(out) == {"detector", "detector_logits", "descriptors", "features"}
    assert out["detector"].shape == (2, 1, 32, 48)
    assert out["descriptors"].shape == (2, 24, 32, 48)
    assert torch.allclose(out["detector"], torch.sigmoid(out["detector_logits"]))
    assert bool(((out["detector"] > 0) & (out["detector"] < 1)).all())
    norms = out["descriptors"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_heatmap_head_starts_near_zero():
    out = _model("resnet_deconv")(_images(2, 64, 64))
    assert out["heatmaps"].abs().max() < 0.05


def test_fused_features_shape_and_definition():
    model = _model("hrnet_small", fused_channels=8).eval()
    with torch.no_grad():
        out = model(_images(2, 64, 64))
        assert out["fused"].shape == (2, 8, 32, 32)
        # Recompute by hand: upsample, concatenate, 1x1 conv.
        ups = [nn.functional.interpolate(f, size=(32, 32), mode="bilinear", align_corners=False)
               if f.shape[-1] != 32 else f for f in out["features"]]
        manual = nn.functional.conv2d(torch.cat(ups, 1), model.fusion.conv.weight, model.fusion.conv.bias)
    assert torch.allclose(out["fused"], manual, atol=1e-5)


def test_feature_fusion_constant_maps_analytic():
    fusion = FeatureFusion([1, 2], 1)
    with torch.no_grad():
        fusion.conv.weight.copy_(torch.tensor([1.0, 10.0, 100.0]).reshape(1, 3, 1, 1))
        fusion.conv.bias.fill_(0.5)
    feats = [torch.full((1, 1, 8, 8), 2.0), torch.stack([torch.full((4, 4), 3.0), torch.full((4, 4), 4.0)])[None]]
    out = fusion(feats)
    assert out.shape == (1, 1, 8, 8)
    assert torch.allclose(out, torch.full_like(out, 2.0 + 30.0 + 400.0 + 0.5))
    with pytest.raises(ValueError, match="expected 2 feature maps"):
        fusion(feats[:1])


def test_keypoint_representations_known_case():
    g = torch.Generator().manual_seed(1)
    fused = torch.randn(2, 3, 4, 5, generator=g)
    heat = torch.zeros(2, 2, 4, 5)
    heat[0, 0, 1, 2] = 1.0  # delta: z = F at that pixel where F>0, else max(0, ...) over the zeros
    heat[0, 1] = 2.0  # constant: z = 2 * global max
    heat[1] = torch.rand(2, 4, 5, generator=g)
    z = keypoint_representations(fused, heat)
    assert z.shape == (2, 2, 3)
    assert torch.allclose(z[0, 0], fused[0, :, 1, 2].clamp(min=0))
    assert torch.allclose(z[0, 1], 2 * fused[0].amax(dim=(1, 2)))
    loop = torch.stack([(fused[1] * heat[1, k]).amax(dim=(1, 2)) for k in range(2)])
    assert torch.allclose(z[1], loop)
    with pytest.raises(ValueError, match="share batch and spatial size"):
        keypoint_representations(fused, heat[:, :, :3])


def test_kcn_logits_shape_and_sc_loss():
    model = _model("unet_small", fused_channels=16)
    out = model(_images(3, 64, 64))
    z, logits = model.classify_keypoints(out)
    assert z.shape == (3, K, 16)
    assert logits.shape == (3, K, K)
    target = torch.arange(K).expand(3, K)
    loss = nn.functional.cross_entropy(logits.reshape(-1, K), target.reshape(-1))
    loss.backward()
    assert model.kcn.net.weight.grad is not None and model.kcn.net.weight.grad.abs().sum() > 0
    assert model.fusion.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="fused_channels"):
        _model("unet_small").classify_keypoints(out)


def test_kcn_sizes():
    # Moskvyak et al.: C=64 representation, 15 keypoints -> a single layer with < 1000 params.
    assert count_parameters(KeypointClassifier(64, 15)) == 65 * 15
    assert count_parameters(KeypointClassifier(64, 15, hidden=32)) == 65 * 32 + 33 * 15
    kcn = KeypointClassifier(8, 4, hidden=6)
    assert kcn(torch.zeros(2, 4, 8)).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="last dim 8"):
        kcn(torch.zeros(2, 4, 7))


# ----------------------------------------------------------------------- registry


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as info:
        build_model("resnet152", K)
    msg = str(info.value)
    assert "resnet152" in msg
    for name in MODELS:
        assert name in msg


def test_bad_options_raise():
    with pytest.raises(ValueError, match="unknown head 'points'.*heatmap"):
        build_model("hourglass", K, head="points")
    with pytest.raises(ValueError, match="unknown norm 'ln'.*bn, gn"):
        build_model("hourglass", K, norm="ln")
    with pytest.raises(ValueError, match="heatmap_stride must be one of"):
        build_model("hourglass", K, heatmap_stride=3)
    with pytest.raises(ValueError, match="unknown option.*'depht'.*accepted: depth"):
        build_model("hourglass", K, depht=2)
    with pytest.raises(ValueError, match="num_keypoints"):
        build_model("hourglass", 0)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model("hourglass", K, width=30)
    with pytest.raises(ValueError, match="modules must hold num_branches - 1 = 2"):
        build_model("hrnet_small", K, modules=(1,))
    with pytest.raises(ValueError, match="mean and std must have 3"):
        build_model("unet_small", K, mean=(0.5,), std=(0.5,))


# ------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_match_docstrings(name):
    model = build_model(name, 10)
    assert count_parameters(model.backbone) == BACKBONE_PARAMS[name]
    assert count_parameters(model) == TOTAL_PARAMS_K10[name]
    c = model.backbone.out_channels
    assert count_parameters(build_model(name, 17)) == BACKBONE_PARAMS[name] + (c + 1) * 17
    dd = build_model(name, 0, head="detector_descriptor", descriptor_dim=32)
    assert count_parameters(dd) == BACKBONE_PARAMS[name] + (c + 1) * 33
    fused = build_model(name, 10, fused_channels=8)
    extra = (sum(model.backbone.feature_channels) + 1) * 8 + (8 + 1) * 10
    assert count_parameters(fused) == TOTAL_PARAMS_K10[name] + extra
    assert str(f"{BACKBONE_PARAMS[name]:,}") in type(model.backbone).__doc__
    assert f"{name} {TOTAL_PARAMS_K10[name]:,}" in " ".join(build_model.__doc__.split())


def test_count_parameters_trainable_only():
    model = build_model("unet_small", 3)
    total = count_parameters(model)
    model.head.conv.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.head.conv.weight.numel()
    assert count_parameters(model, trainable_only=False) == total


# ------------------------------------------------------------- norms and inputs


def test_gn_groups_values():
    assert [gn_groups(c) for c in (256, 64, 32, 16, 24, 12, 3)] == [32, 16, 8, 4, 6, 3, 1]
    for c in range(1, 300):
        assert c % gn_groups(c) == 0


@pytest.mark.parametrize("name", NAMES)
def test_groupnorm_variant(name):
    model = _model(name, norm="gn")
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.num_channels % m.num_groups == 0 for m in norms)
    assert count_parameters(model.backbone) == BACKBONE_PARAMS[name]
    assert model(_images(2, 64, 64))["heatmaps"].shape == (2, K, 32, 32)


def test_normalisation_inside_model():
    model = _model("resnet_deconv").eval()
    assert torch.allclose(model.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(model.std.flatten(), torch.tensor(IMAGENET_STD))
    assert "mean" in model.state_dict() and "std" in model.state_dict()
    x = _images(2, 64, 64)
    with torch.no_grad():
        expected = model.backbone((x - model.mean) / model.std)[0]
        got = model(x)["features"][0]
        assert torch.allclose(got, expected)
        # a model whose normalisation is (x - 0.5) / 0.25 sees 0.5 + 0.25 * z as z
        other = build_model("resnet_deconv", K, mean=(0.5,) * 3, std=(0.25,) * 3).eval()
        other.load_state_dict({**model.state_dict(), "mean": other.mean, "std": other.std})
        z = (x - model.mean) / model.std
        assert torch.allclose(other(0.5 + 0.25 * z)["features"][0], got, atol=1e-5)


# ------------------------------------------------------ gradients & determinism


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_gradients_reach_input_side(name, norm):
    model = _model(name, norm=norm, fused_channels=4)
    x = _images(2, 64, 64).requires_grad_(True)
    out = model(x)
    loss = out["heatmaps"].square().mean() + out["fused"].square().mean()
    loss.backward()
    first = model.backbone.stem[0][0].weight
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None and not n.startswith("kcn.")]
    assert missing == []


@pytest.mark.parametrize("name", NAMES)
def test_eval_determinism_and_batch_independence(name):
    model = _model(name)
    model.train()
    model(_images(4, 64, 64, seed=3))  # move BN running statistics away from init
    model.eval()
    x = _images(3, 64, 64)
    with torch.no_grad():
        a = model(x)["features"][0]
        b = model(x)["features"][0]
        single = model(x[1:2])["features"][0]
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], single, atol=1e-4, rtol=1e-4)  # kernels may differ by batch size


@pytest.mark.parametrize("name", NAMES)
def test_init_is_deterministic_given_seed(name):
    torch.manual_seed(7)
    a = build_model(name, K, fused_channels=4).state_dict()
    torch.manual_seed(7)
    b = build_model(name, K, fused_channels=4).state_dict()
    torch.manual_seed(8)
    c = build_model(name, K, fused_channels=4).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_backbone_transfers_between_heads():
    torch.manual_seed(0)
    dd = build_model("hourglass", 0, head="detector_descriptor", norm="gn")
    hm = build_model("hourglass", 7, norm="gn")
    hm.backbone.load_state_dict(dd.backbone.state_dict())
    x = _images(1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(hm(x)["features"][0], dd(x)["features"][0])
    assert hm.config["name"] == "hourglass" and hm.config["norm"] == "gn"


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_fast_path_gives_same_values(name):
    fast = _model(name, fused_channels=4).eval()
    plain = _model(name, fused_channels=4, channels_last_on_cpu=False).eval()
    plain.load_state_dict(fast.state_dict())
    x = _images(2, 64, 64)
    with torch.no_grad():
        a, b = fast(x), plain(x)
    assert a["heatmaps"].is_contiguous() and a["fused"].is_contiguous()
    assert torch.allclose(a["features"][0], b["features"][0], atol=1e-5)
    assert torch.allclose(a["heatmaps"], b["heatmaps"], atol=1e-6)
    assert torch.allclose(a["fused"], b["fused"], atol=1e-5)
