"""Tests for the synthetic 'faces' generator (large-pose faces, 20 landmarks)."""

from __future__ import annotations

import numpy as np
import pytest

from landmark_study.data.sample import ArrayDataset
from landmark_study.data.synthetic import faces as FC
from landmark_study.data.synthetic.faces import FACES_SPEC, KEYPOINT_NAMES, generate_faces, rotation_matrix

IDX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
FRONTAL = dict(yaw=0.0, pitch=0.0, roll=0.0)


@pytest.fixture(scope="module")
def ds() -> ArrayDataset:
    return generate_faces(64, seed=5)


def test_module_contract():
    assert isinstance(FC.VERSION, int)
    assert FC.SPEC is FACES_SPEC
    assert FC.DEFAULT_SPLIT_SIZES == {"train": 4000, "val": 500, "test": 500}
    assert FACES_SPEC.num_keypoints == 20
    assert FACES_SPEC.normaliser == "inter_ocular"
    assert FACES_SPEC.normaliser_joints == (IDX["right_eye_outer"], IDX["left_eye_outer"])
    perm = FACES_SPEC.flip_permutation()
    assert np.array_equal(perm[perm], np.arange(20))
    for a, b in FACES_SPEC.flip_pairs:  # pairs are right/left counterparts
        na, nb = KEYPOINT_NAMES[a], KEYPOINT_NAMES[b]
        assert na.startswith("right_") and nb == "left_" + na[len("right_"):]
    unpaired = set(range(20)) - {i for p in FACES_SPEC.flip_pairs for i in p}
    assert {KEYPOINT_NAMES[i] for i in unpaired} == {"nose_tip", "upper_lip_centre", "lower_lip_centre", "chin"}


def test_shapes_and_dtypes(ds):
    n = len(ds)
    assert ds.images.shape == (n, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.keypoints.shape == (n, 20, 2) and ds.keypoints.dtype == np.float32
    assert ds.visibility.shape == (n, 20) and set(np.unique(ds.visibility)) <= {0.0, 1.0}
    assert ds.bbox.shape == (n, 4) and ds.bbox.dtype == np.float32
    assert ds.labels is None
    assert ds.meta["sqrt_wh"].shape == (n,) and ds.meta["pose"].shape == (n, 3)
    assert ds.images.std() > 10


def test_determinism_and_prefix():
    a = generate_faces(5, seed=21)
    b = generate_faces(5, seed=21)
    c = generate_faces(2, seed=21)
    d = generate_faces(2, seed=22)
    for key in ("images", "keypoints", "visibility", "bbox"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
        assert np.array_equal(getattr(a, key)[:2], getattr(c, key))
    assert np.array_equal(a.meta["pose"][:2], c.meta["pose"])
    assert not np.array_equal(a.images[:2], d.images)
    e = generate_faces(2, seed=21, start=3)  # chunked generation
    assert np.array_equal(a.images[3:5], e.images) and np.array_equal(a.keypoints[3:5], e.keypoints)


def test_keypoints_finite_visible_inside_and_boxes(ds):
    assert np.isfinite(ds.keypoints).all()
    k = ds.keypoints[ds.visibility > 0]
    assert (k >= -0.5).all() and (k <= 63.5).all()
    lo, hi = ds.keypoints.min(axis=1), ds.keypoints.max(axis=1)
    np.testing.assert_allclose(ds.bbox, np.concatenate([lo, hi], axis=1), atol=1e-5)
    w, h = (hi - lo).T
    np.testing.assert_allclose(ds.meta["sqrt_wh"], np.sqrt(w * h), rtol=1e-5)
    pose = ds.meta["pose"]
    assert np.abs(pose[:, 0]).max() <= 90 and np.abs(pose[:, 1:]).max() <= 30
    assert np.abs(pose[:, 0]).max() > 60  # large poses are drawn


def test_frontal_layout_and_flip_convention():
    ds = generate_faces(8, seed=1, **FRONTAL)
    kp = ds.keypoints
    x = {n: kp[:, i, 0] for n, i in IDX.items()}
    y = {n: kp[:, i, 1] for n, i in IDX.items()}
    assert (ds.visibility == 1).all()  # nothing self-occluded in a frontal view
    # the subject's right is on the image's left
    assert (x["right_eye_outer"] < x["right_eye_inner"]).all()
    assert (x["right_eye_inner"] < x["left_eye_inner"]).all()
    assert (x["left_eye_inner"] < x["left_eye_outer"]).all()
    assert (x["right_mouth_corner"] < x["left_mouth_corner"]).all()
    # vertical order: brows, eyes, nose tip, mouth, chin
    assert (y["right_brow_inner"] < y["right_eye_inner"]).all()
    assert (y["right_eye_inner"] < y["nose_tip"]).all()
    assert (y["nose_tip"] < y["upper_lip_centre"]).all()
    assert (y["upper_lip_centre"] < y["lower_lip_centre"]).all()
    assert (y["lower_lip_centre"] < y["chin"]).all()
    # mirrored image + spec flip permutation keeps the convention
    flipped = kp.copy()
    flipped[..., 0] = 63 - flipped[..., 0]
    flipped = flipped[:, FACES_SPEC.flip_permutation()]
    assert (flipped[:, IDX["right_eye_outer"], 0] < flipped[:, IDX["left_eye_outer"], 0]).all()
    # the normaliser is the outer-eye distance, sizeable in a frontal view
    iod = ds.normaliser_values()
    np.testing.assert_allclose(iod, x["left_eye_outer"] - x["right_eye_outer"], rtol=1e-3)
    assert iod.min() > 0.2 * 64


def test_large_yaw_hides_the_far_side():
    turned_right = generate_faces(10, seed=3, yaw=(75.0, 85.0), pitch=0.0, roll=0.0)
    far = [IDX[n] for n in ("left_eye_outer", "left_temple", "left_jaw", "left_brow_outer")]
    near = [IDX[n] for n in ("right_eye_outer", "right_temple", "right_mouth_corner", "nose_tip")]
    assert (turned_right.visibility[:, far] == 0).all()
    assert (turned_right.visibility[:, near] == 1).all()
    # positive yaw moves the nose tip towards the image's right of the face's centre line
    kp = turned_right.keypoints
    assert (kp[:, IDX["nose_tip"], 0] > kp[:, IDX["chin"], 0]).all()
    # the mirrored pose hides the mirrored landmarks
    turned_left = generate_faces(10, seed=3, yaw=(-85.0, -75.0), pitch=0.0, roll=0.0)
    perm = FACES_SPEC.flip_permutation()
    assert (turned_left.visibility[:, perm[far]] == 0).all()
    assert (turned_left.visibility[:, perm[near]] == 1).all()


def test_rotation_matrix_conventions():
    nose = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(rotation_matrix(90, 0, 0) @ nose, [1, 0, 0], atol=1e-12)  # yaw: nose to the right
    np.testing.assert_allclose(rotation_matrix(0, 90, 0) @ nose, [0, -1, 0], atol=1e-12)  # pitch: nose up
    np.testing.assert_allclose(rotation_matrix(0, 0, 90) @ np.array([1.0, 0, 0]), [0, 1, 0], atol=1e-12)  # clockwise
    r = rotation_matrix(33, -12, 50)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)


def test_eyes_are_drawn_between_the_eye_corners():
    ds = generate_faces(8, seed=4, size=128, noise=(0.0, 0.0), blur=(0.0, 0.0), **FRONTAL)
    for i in range(len(ds)):
        img = ds.images[i].astype(int)
        kp = ds.keypoints[i]
        for outer, inner in (("right_eye_outer", "right_eye_inner"), ("left_eye_outer", "left_eye_inner")):
            # a quarter of the way from the outer to the inner corner lies the white sclera
            # (no skin tone, hair or lid colour has all channels above 200)
            x, y = np.rint(kp[IDX[outer]] + 0.25 * (kp[IDX[inner]] - kp[IDX[outer]])).astype(int)
            assert img[y - 1:y + 2, x - 1:x + 2].min(axis=-1).max() > 200
        # while the mouth corner is not white
        x, y = np.rint(kp[IDX["right_mouth_corner"]]).astype(int)
        assert img[y, x].min() < 200


def test_size_128_scales_keypoints():
    a = generate_faces(3, seed=7, size=64)
    b = generate_faces(3, seed=7, size=128)
    assert b.images.shape == (3, 128, 128, 3)
    np.testing.assert_allclose(b.keypoints, 2 * a.keypoints + 0.5, atol=1e-3)
    np.testing.assert_array_equal(a.meta["pose"], b.meta["pose"])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="bogus"):
        generate_faces(2, 0, bogus=1)
    with pytest.raises(ValueError, match="yaw"):
        generate_faces(2, 0, yaw=120.0)
    with pytest.raises(ValueError, match="pitch"):
        generate_faces(2, 0, pitch=(10.0, -10.0))
    with pytest.raises(ValueError, match="size"):
        generate_faces(2, 0, size=300)
    with pytest.raises(ValueError, match="start"):
        generate_faces(2, 0, start=-1)
    assert len(generate_faces(0, 0)) == 0
