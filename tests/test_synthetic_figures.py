"""Tests for the synthetic 'figures' generator (articulated people, LSP joints)."""

from __future__ import annotations

import numpy as np
import pytest

from landmark_study.data.sample import ArrayDataset
from landmark_study.data.synthetic import figures as F
from landmark_study.data.synthetic.figures import (
    ANGLE_NAMES,
    CLASS_FLIP,
    CLASS_NAMES,
    FIGURES_SPEC,
    classify_pose,
    generate_figures,
)

CLEAN = dict(distractors=(0, 0), occluder_prob=0.0, truncation_prob=0.0, noise=(0.0, 0.0), blur=(0.0, 0.0))


@pytest.fixture(scope="module")
def ds() -> ArrayDataset:
    return generate_figures(96, seed=5)


def test_module_contract():
    assert isinstance(F.VERSION, int)
    assert F.SPEC is FIGURES_SPEC
    assert F.DEFAULT_SPLIT_SIZES == {"train": 4000, "val": 500, "test": 500}
    assert FIGURES_SPEC.num_keypoints == 14
    assert FIGURES_SPEC.keypoint_names[0] == "r_ankle" and FIGURES_SPEC.keypoint_names[13] == "head_top"
    assert FIGURES_SPEC.normaliser == "bbox"
    assert FIGURES_SPEC.num_classes == len(CLASS_NAMES) == len(FIGURES_SPEC.class_names)
    # flip permutation is an involution that swaps R/L names
    perm = FIGURES_SPEC.flip_permutation()
    assert np.array_equal(perm[perm], np.arange(14))
    for a, b in FIGURES_SPEC.flip_pairs:
        na, nb = FIGURES_SPEC.keypoint_names[a], FIGURES_SPEC.keypoint_names[b]
        assert na.startswith("r_") and nb == "l_" + na[2:]


def test_shapes_and_dtypes(ds):
    n = len(ds)
    assert ds.images.shape == (n, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.keypoints.shape == (n, 14, 2) and ds.keypoints.dtype == np.float32
    assert ds.visibility.shape == (n, 14) and ds.visibility.dtype == np.float32
    assert set(np.unique(ds.visibility)) <= {0.0, 1.0}
    assert ds.bbox.shape == (n, 4) and ds.bbox.dtype == np.float32
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
    assert ds.meta["torso"].shape == (n,)
    assert ds.meta["angles"].shape == (n, len(ANGLE_NAMES))
    assert ds.meta["back_facing"].shape == (n,)
    assert ds.images.std() > 10  # not blank


def test_determinism_and_prefix():
    a = generate_figures(6, seed=11)
    b = generate_figures(6, seed=11)
    c = generate_figures(3, seed=11)
    d = generate_figures(3, seed=12)
    for key in ("images", "keypoints", "visibility", "bbox", "labels"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
        assert np.array_equal(getattr(a, key)[:3], getattr(c, key))
    assert not np.array_equal(a.images[:3], d.images)
    e = generate_figures(2, seed=11, start=3)  # chunked generation
    assert np.array_equal(a.images[3:5], e.images) and np.array_equal(a.keypoints[3:5], e.keypoints)


def test_keypoints_finite_and_visible_inside(ds):
    assert np.isfinite(ds.keypoints).all()
    vis = ds.visibility > 0
    k = ds.keypoints[vis]
    assert (k >= -0.5).all() and (k <= 63.5).all()
    assert vis.mean() > 0.8  # most joints visible by default


def test_bbox_is_padded_joint_box_and_torso(ds):
    lo, hi = ds.keypoints.min(axis=1), ds.keypoints.max(axis=1)
    pad = 0.05 * (hi - lo).max(axis=1)
    expect = np.concatenate([lo - pad[:, None], hi + pad[:, None]], axis=1)
    np.testing.assert_allclose(ds.bbox, expect, atol=1e-4)
    np.testing.assert_allclose(ds.normaliser_values(), 1.1 * (hi - lo).max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(ds.meta["torso"], np.linalg.norm(ds.keypoints[:, 9] - ds.keypoints[:, 2], axis=-1),
                               rtol=1e-5)
    # figures are a sizeable part of the frame (person height 55-80% of the side)
    side = (hi - lo).max(axis=1)
    assert side.min() > 0.3 * 64 and np.median(side) > 0.5 * 64


def test_labels_balanced_and_follow_the_rule(ds):
    assert np.array_equal(classify_pose(ds.meta["angles"]), ds.labels)
    counts = np.bincount(ds.labels, minlength=len(CLASS_NAMES))
    assert (counts > 0).all(), counts


def _angles(**kw) -> np.ndarray:
    a = np.zeros(len(ANGLE_NAMES))
    for k, v in kw.items():
        a[ANGLE_NAMES.index(k)] = v
    return a


def test_classify_pose_known_cases():
    cases = {
        "stand": _angles(),
        "arms_up": _angles(r_shoulder=160, l_shoulder=150),
        "t_pose": _angles(r_shoulder=90, l_shoulder=95),
        "right_arm_raised": _angles(r_shoulder=150, l_shoulder=10),
        "left_arm_raised": _angles(r_shoulder=10, l_shoulder=150),
        "hands_on_hips": _angles(r_shoulder=40, l_shoulder=40, r_elbow=110, l_elbow=120),
        "squat": _angles(r_hip=45, l_hip=50, r_knee=100, l_knee=90, r_shoulder=150),
        "stride": _angles(r_hip=25, l_hip=25, r_knee=50, l_shoulder=150),
    }
    got = classify_pose(np.stack(list(cases.values())))
    assert [CLASS_NAMES[i] for i in got] == list(cases)
    assert classify_pose(_angles(r_shoulder=90, l_shoulder=150)) == -1  # no rule: never sampled
    with pytest.raises(ValueError, match="angles"):
        classify_pose(np.zeros((3, 5)))


def test_flip_convention_and_class_flip():
    ds = generate_figures(40, seed=3, rotation=0.0, back_prob=0.5, **CLEAN)
    kp = ds.keypoints
    back = ds.meta["back_facing"]
    assert back.dtype == np.bool_ and 0 < back.sum() < len(back)
    # facing the viewer the person's right side is on the image's left; seen from the back, on the right
    front = ~back
    assert (kp[front, 8, 0] < kp[front, 9, 0]).all() and (kp[back, 8, 0] > kp[back, 9, 0]).all()  # shoulders
    assert (kp[front, 2, 0] < kp[front, 3, 0]).all() and (kp[back, 2, 0] > kp[back, 3, 0]).all()  # hips
    assert (kp[:, 13, 1] < kp[:, 12, 1]).all()  # head top above the neck
    # mirrored image + spec flip permutation keeps the same convention
    perm = FIGURES_SPEC.flip_permutation()
    flipped = kp.copy()
    flipped[..., 0] = 63 - flipped[..., 0]
    flipped = flipped[:, perm]
    assert (flipped[front, 8, 0] < flipped[front, 9, 0]).all()
    assert (flipped[back, 2, 0] > flipped[back, 3, 0]).all()
    # a flip swaps the R/L angle columns, and the class follows CLASS_FLIP
    ang = ds.meta["angles"].copy()
    swap = [1, 0, 3, 2, 5, 4, 7, 6, 8, 9, 10]
    assert np.array_equal(classify_pose(ang[:, swap]), np.array(CLASS_FLIP)[ds.labels])


def test_back_view_mirrors_the_same_pose():
    front = generate_figures(12, seed=6, back_prob=0.0, rotation=0.0, **CLEAN)
    back = generate_figures(12, seed=6, back_prob=1.0, rotation=0.0, **CLEAN)
    assert not front.meta["back_facing"].any() and back.meta["back_facing"].all()
    np.testing.assert_array_equal(front.labels, back.labels)
    # the same angles and proportions, with the person's right and left on swapped image sides
    assert (front.keypoints[:, 8, 0] < front.keypoints[:, 9, 0]).all()
    assert (back.keypoints[:, 8, 0] > back.keypoints[:, 9, 0]).all()
    # limb lengths agree (the hip-shoulder diagonals differ: the torso lean is not mirrored)
    edges = np.array([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (9, 10), (10, 11), (12, 13)])
    kf, kb = front.keypoints, back.keypoints
    len_f = np.linalg.norm(kf[:, edges[:, 0]] - kf[:, edges[:, 1]], axis=-1)
    len_b = np.linalg.norm(kb[:, edges[:, 0]] - kb[:, edges[:, 1]], axis=-1)
    np.testing.assert_allclose(len_f, len_b, rtol=1e-3, atol=1e-3)


def test_left_limbs_are_a_slightly_darker_shade():
    ds = generate_figures(60, seed=8, **CLEAN)
    ratios = []
    for i in np.flatnonzero(np.isin(ds.labels, [1, 2])):  # arms_up / t_pose: shins are unobstructed
        kp = ds.keypoints[i]
        r = np.rint(0.5 * (kp[1] + kp[0])).astype(int)  # R shin midpoint
        left = np.rint(0.5 * (kp[4] + kp[5])).astype(int)
        cr = ds.images[i, r[1], r[0]].astype(float).sum()
        cl = ds.images[i, left[1], left[0]].astype(float).sum()
        if cr > 60:
            ratios.append(cl / cr)
    assert len(ratios) >= 5
    assert 0.75 < np.median(ratios) < 0.95


def test_occluders_set_visibility_zero():
    clean = generate_figures(40, seed=2, **CLEAN)
    occ = generate_figures(40, seed=2, **{**CLEAN, "occluder_prob": 1.0})
    assert (clean.visibility == 1).all()
    np.testing.assert_array_equal(clean.keypoints, occ.keypoints)  # same figures, occluders on top
    hidden = occ.visibility == 0
    assert hidden.any(axis=1).mean() > 0.5  # most images lose at least one joint
    changed = []
    for i, k in zip(*np.nonzero(hidden)):
        x, y = np.rint(occ.keypoints[i, k]).astype(int)
        changed.append(np.abs(occ.images[i, y, x].astype(int) - clean.images[i, y, x].astype(int)).max() > 0)
    assert np.mean(changed) > 0.9
    # default rate is about 20% of the images
    d = generate_figures(200, seed=9, truncation_prob=0.0)
    assert 0.08 < (d.visibility == 0).any(axis=1).mean() < 0.3


def test_joints_outside_the_frame_are_invisible():
    ds = generate_figures(60, seed=4, truncation_prob=1.0, occluder_prob=0.0)
    outside = ((ds.keypoints < -0.5) | (ds.keypoints > 63.5)).any(axis=-1)
    assert outside.any()
    assert (ds.visibility[outside] == 0).all()
    assert (ds.visibility[~outside] == 1).all()


def test_size_128_scales_keypoints():
    a = generate_figures(4, seed=7, size=64)
    b = generate_figures(4, seed=7, size=128)
    assert b.images.shape == (4, 128, 128, 3)
    np.testing.assert_array_equal(a.labels, b.labels)
    # pixel-centre convention: x_128 = (x_64 + 0.5) * 2 - 0.5
    np.testing.assert_allclose(b.keypoints, 2 * a.keypoints + 0.5, atol=1e-3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="bogus"):
        generate_figures(2, 0, bogus=1)
    with pytest.raises(ValueError, match="size"):
        generate_figures(2, 0, size=8)
    with pytest.raises(ValueError, match="occluder_prob"):
        generate_figures(2, 0, occluder_prob=1.5)
    with pytest.raises(ValueError, match="person_height"):
        generate_figures(2, 0, person_height=(0.8, 0.5))
    with pytest.raises(ValueError, match="start"):
        generate_figures(2, 0, start=-1)
    assert len(generate_figures(0, 0)) == 0


# --- variety options (appearance and pose knobs beyond what augmentation synthesises) ---

VARIETY = dict(patchwork_prob=0.5, pattern_prob=0.5, background_pattern_prob=0.5, lighting=0.4,
               foreshorten=(0.5, 1.0), pose_freedom=1.0, proportion_jitter=0.25, outline_prob=0.3,
               prop_prob=0.5, hat_prob=0.5)


def test_variety_options_deterministic_and_prefix():
    a = generate_figures(8, seed=21, **VARIETY)
    b = generate_figures(8, seed=21, **VARIETY)
    c = generate_figures(3, seed=21, start=5, **VARIETY)
    for key in ("images", "keypoints", "visibility", "bbox", "labels"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
        assert np.array_equal(getattr(a, key)[5:], getattr(c, key))
    # the options change the images (and, through foreshortening, the joints) of the same seed
    plain = generate_figures(8, seed=21)
    assert not np.array_equal(a.images, plain.images) and not np.allclose(a.keypoints, plain.keypoints)


def test_options_at_their_neutral_values_change_nothing():
    neutral = dict(patchwork_prob=0.0, pattern_prob=0.0, background_pattern_prob=0.0, lighting=0.0,
                   foreshorten=(1.0, 1.0), pose_freedom=0.0, proportion_jitter=0.12, outline_prob=0.0,
                   prop_prob=0.0, hat_prob=0.0)
    a = generate_figures(6, seed=4, outline_prob=0.0)  # version 2 draws 30% as line art by default
    b = generate_figures(6, seed=4, **neutral)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.keypoints, b.keypoints)


def test_variety_keeps_labels_visibility_and_frame():
    ds = generate_figures(80, seed=13, **{**VARIETY, "occluder_prob": 0.0, "truncation_prob": 0.0})
    assert np.array_equal(classify_pose(ds.meta["angles"]), ds.labels)
    assert (ds.visibility == 1).all()  # no occluders, no truncation: every joint visible and in the frame
    assert (ds.keypoints >= -0.5).all() and (ds.keypoints <= 63.5).all()
    # free poses: squat/stride shoulders go beyond the class's default range (-10..120 / -15..45 degrees),
    # arms cross the body, elbows bend further than in the narrow ranges (at most 90 degrees)
    free = np.isin(ds.labels, [CLASS_NAMES.index("squat"), CLASS_NAMES.index("stride")])
    sh = ds.meta["angles"][free][:, :2]
    assert (sh > 125).any() and (sh < -15).any()
    assert (ds.meta["angles"][:, 2:4] > 100).any() and (ds.meta["angles"][:, :2] < -30).any()
    tr = generate_figures(40, seed=4, **{**VARIETY, "truncation_prob": 1.0, "occluder_prob": 0.0})
    outside = ((tr.keypoints < -0.5) | (tr.keypoints > 63.5)).any(axis=-1)
    assert outside.any() and (tr.visibility[outside] == 0).all() and (tr.visibility[~outside] == 1).all()


def test_foreshorten_scales_limb_segments():
    clean = dict(CLEAN, person_height=(0.3, 0.3))  # small: no frame-size clamp
    full = generate_figures(10, seed=3, **clean)
    half = generate_figures(10, seed=3, foreshorten=(0.5, 0.5), **clean)

    def seg(k, a, b):
        return np.linalg.norm(k[:, a] - k[:, b], axis=-1)

    torso_f, torso_h = seg(full.keypoints, 12, 2), seg(half.keypoints, 12, 2)
    np.testing.assert_allclose(torso_f, torso_h, rtol=1e-3)  # the torso is not foreshortened
    for a, b in ((0, 1), (1, 2), (6, 7), (7, 8), (3, 4), (4, 5), (9, 10), (10, 11)):  # shins, thighs, arms
        np.testing.assert_allclose(seg(half.keypoints, a, b), 0.5 * seg(full.keypoints, a, b), rtol=1e-3)


def test_keypoints_lie_on_the_drawn_figure_with_patterns():
    # draw only the person on a black canvas: every joint pixel must be painted
    rng = np.random.default_rng(0)
    opts = {**F.DEFAULT_OPTIONS, **VARIETY}
    for i in range(20):
        r = np.random.default_rng([1, i])
        ang = F._sample_pose(r, int(r.integers(0, 8)), 40.0, 1.0)
        j = F._pose_to_joints(ang, F._proportions(r, 0.25), False, r.uniform(0.5, 1.0, (2, 4))) * 40 + 32
        img = np.zeros((128, 128, 3), np.uint8)
        colours = {k: np.full(3, 60.0 + 20 * n) for n, k in enumerate(("upper", "lower", "skin"))}
        tex = {g: F.pattern_texture(rng, 128, colours[g], np.full(3, 200.0), 6.0) for g in ("upper", "lower")}
        patch = {k: rng.uniform(40, 240, 3) for k in F._PATCH_KEYS}
        props = {"r": ("stick", np.full(3, 90.0), 1.0, 0.3, 0.02), "l": ("bag", np.full(3, 70.0), 0.1, 0.1)}
        F._draw_figure(r, img, j, 40.0, 0.85, colours, float(opts["limb_thickness"][0]), skirt=False,
                       stripes=False, back=False, patch=patch if i % 2 else None, textures=tex,
                       props=props if i % 3 else None, hat=(np.full(3, 50.0), 2.0, 1.4) if i % 4 else None)
        p2 = np.clip(np.round(2 * j + 0.5).astype(int), 0, 127)
        assert (img[p2[:, 1], p2[:, 0]].max(axis=1) > 0).all(), i


def test_pattern_texture_two_colours():
    rng = np.random.default_rng(2)
    for _ in range(6):
        t = F.pattern_texture(rng, 64, (10, 20, 30), (200, 100, 50), 8.0)
        assert t.shape == (64, 64, 3) and t.dtype == np.uint8
        colours = {tuple(c) for c in t.reshape(-1, 3)}
        assert colours == {(10, 20, 30), (200, 100, 50)}


def test_lighting_is_a_linear_gain():
    base = dict(CLEAN, lighting=0.0)
    a = generate_figures(4, seed=9, **base)
    b = generate_figures(4, seed=9, **{**base, "lighting": 0.5})
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(4):
        x, y = a.images[i].astype(float).mean(axis=2), b.images[i].astype(float).mean(axis=2)
        ok = (x > 40) & (x < 200) & (y < 250)
        ratio = y[ok] / x[ok]
        design = np.stack([np.ones(ok.sum()), xx[ok] - 32, yy[ok] - 32], axis=1)
        coef, *_ = np.linalg.lstsq(design, ratio, rcond=None)
        assert abs(coef[0] - 1) < 0.03 and np.hypot(coef[1], coef[2]) <= 0.5 * 2 / 64 + 2e-3
        assert np.abs(design @ coef - ratio).mean() < 0.03  # a plane, up to uint8 rounding


def test_variety_options_validated():
    with pytest.raises(ValueError, match="foreshorten"):
        generate_figures(2, 0, foreshorten=(0.1, 1.0))
    with pytest.raises(ValueError, match="pattern_prob"):
        generate_figures(2, 0, pattern_prob=2.0)
    with pytest.raises(ValueError, match="lighting"):
        generate_figures(2, 0, lighting=1.5)
    with pytest.raises(ValueError, match="outline_prob"):
        generate_figures(2, 0, outline_prob=-0.1)
    with pytest.raises(ValueError, match="proportion_jitter"):
        generate_figures(2, 0, proportion_jitter=0.9)


def test_outline_figures_keep_joints_and_change_only_the_person():
    # line art draws the same person (same joints and labels) with its interior left as background
    a = generate_figures(12, seed=5, **{**CLEAN, "outline_prob": 0.0})
    b = generate_figures(12, seed=5, **{**CLEAN, "outline_prob": 1.0})
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (b.visibility == 1).all()
    diff = np.abs(a.images.astype(int) - b.images.astype(int)).max(axis=-1) > 0
    p = np.rint(a.keypoints).astype(int)
    n = np.arange(12)[:, None]
    assert diff[n, p[..., 1], p[..., 0]].mean() > 0.8  # the joints were on the (filled) person
    assert diff.mean() < 0.35  # the background is untouched
