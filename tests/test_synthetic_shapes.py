"""Honari's Shapes and Blocks generators: determinism, geometry, labels."""

from __future__ import annotations

import numpy as np
import pytest

from landmark_study.data.sample import ArrayDataset
from landmark_study.data.synthetic import shapes as S


def _assert_same(a: ArrayDataset, b: ArrayDataset) -> None:
    assert a.spec == b.spec
    for key in ("images", "keypoints", "visibility", "bbox", "labels"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.meta.keys() == b.meta.keys()
    for k in a.meta:
        np.testing.assert_array_equal(a.meta[k], b.meta[k], err_msg=k)


@pytest.fixture(scope="module")
def shapes_ds() -> ArrayDataset:
    return S.generate_shapes(400, seed=3)


@pytest.fixture(scope="module")
def blocks_ds() -> ArrayDataset:
    return S.generate_blocks(600, seed=5)


GENERATORS = [S.generate_shapes, S.generate_blocks]


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("gen", GENERATORS)
def test_same_seed_same_bytes_different_seed_differs(gen):
    a, b, c = gen(12, 7), gen(12, 7), gen(12, 8)
    _assert_same(a, b)
    assert a.images.tobytes() == b.images.tobytes()
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.keypoints, c.keypoints)


@pytest.mark.parametrize("gen", GENERATORS)
def test_prefix_and_chunk_property(gen):
    full = gen(20, 4)
    _assert_same(gen(10, 4), full.subset(range(10)))
    _assert_same(gen(7, 4, start=13), full.subset(range(13, 20)))


@pytest.mark.parametrize("gen", GENERATORS)
def test_dtypes_shapes_and_size_option(gen):
    ds = gen(5, 0, size=40)
    assert ds.images.shape == (5, 40, 40, 3) and ds.images.dtype == np.uint8
    assert ds.keypoints.dtype == np.float32 and ds.labels.dtype == np.int64
    assert set(np.unique(ds.images)) <= {0, 255}
    # grey: the three channels are equal
    assert np.array_equal(ds.images[..., 0], ds.images[..., 2])
    assert np.all(ds.visibility == 1)
    assert gen(0, 0).images.shape == (0, 60, 60, 3)


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1, seed=0), "n must be >= 0"),
    (dict(n=2, seed=-3), "seed must be >= 0"),
    (dict(n=2, seed=0, size=8), "size must be >= 16"),
])
def test_bad_arguments(gen, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gen(**kwargs)


def test_bad_options():
    with pytest.raises(ValueError, match="square_side"):
        S.generate_shapes(2, 0, square_side=(0.3, 0.1))
    with pytest.raises(ValueError, match="scale_range"):
        S.generate_blocks(2, 0, scale_range=(0.1, 0.5))


def test_polygon_mask_analytic():
    sq = np.array([[1.5, 1.5], [4.5, 1.5], [4.5, 4.5], [1.5, 4.5]])
    m = S.polygon_mask(sq, 8, 8)
    expected = np.zeros((8, 8), bool)
    expected[2:5, 2:5] = True
    np.testing.assert_array_equal(m, expected)
    np.testing.assert_array_equal(S.polygon_mask(sq[::-1], 8, 8), expected)  # winding order
    # triangle x >= 0, y >= 0, x + y <= 3 (edges inclusive): 10 pixel centres
    tri = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    ys, xs = np.nonzero(S.polygon_mask(tri, 6, 6))
    assert len(xs) == 10 and np.all(xs + ys <= 3)
    with pytest.raises(ValueError, match="vertices"):
        S.polygon_mask(np.zeros((2, 2)), 4, 4)


# ----------------------------------------------------------------------------- Shapes


def _nearest_pixel(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.rint(kp).astype(int)
    return c[..., 0], c[..., 1]


def test_shapes_spec():
    assert S.SHAPES_SPEC.num_keypoints == 2 and S.SHAPES_SPEC.num_classes == 2
    assert S.SHAPES_SPEC.flip_pairs == ()


def test_shapes_masks_images_and_keypoints(shapes_ds):
    ds = shapes_ds
    n, H, W = len(ds), 60, 60
    tri, sq = ds.meta["triangle_mask"], ds.meta["square_mask"]
    assert tri.shape == (n, H, W) and tri.dtype == bool
    # the image is exactly the union of the two masks
    np.testing.assert_array_equal(ds.images[..., 0] == 255, tri | sq)
    # non-overlapping, with at least one black pixel between them (8-neighbourhood)
    for i in range(n):
        p = np.pad(tri[i], 1)
        grown = np.zeros_like(tri[i])
        for dy in range(3):
            for dx in range(3):
                grown |= p[dy:dy + H, dx:dx + W]
        assert not np.any(grown & sq[i]), i
    # keypoints inside the image and on the white pixel of their own shape
    assert np.all((ds.keypoints >= 0) & (ds.keypoints <= 59))
    idx = np.arange(n)
    x, y = _nearest_pixel(ds.keypoints)
    assert np.all(tri[idx, y[:, 0], x[:, 0]])
    assert np.all(sq[idx, y[:, 1], x[:, 1]])
    # keypoints are close to the mask centroids
    for i in range(0, n, 20):
        for k, m in enumerate((tri[i], sq[i])):
            yy, xx = np.nonzero(m)
            assert np.hypot(xx.mean() - ds.keypoints[i, k, 0], yy.mean() - ds.keypoints[i, k, 1]) < 0.6


def test_shapes_geometry_is_a_triangle_and_a_square(shapes_ds):
    tv = shapes_ds.meta["triangle_vertices"].astype(np.float64)
    sv = shapes_ds.meta["square_vertices"].astype(np.float64)
    t_sides = np.linalg.norm(tv - np.roll(tv, -1, axis=1), axis=-1)
    s_sides = np.linalg.norm(sv - np.roll(sv, -1, axis=1), axis=-1)
    np.testing.assert_allclose(t_sides, t_sides[:, :1].repeat(3, 1), rtol=1e-4)  # equilateral
    np.testing.assert_allclose(s_sides, s_sides[:, :1].repeat(4, 1), rtol=1e-4)
    diag = np.linalg.norm(sv[:, 0] - sv[:, 2], axis=-1)
    np.testing.assert_allclose(diag, s_sides[:, 0] * np.sqrt(2), rtol=1e-4)  # right angles
    # sizes follow the default ranges (fractions of 60 px)
    assert s_sides.min() >= 0.15 * 60 - 1e-3 and s_sides.max() <= 0.30 * 60 + 1e-3
    assert t_sides.min() >= 0.20 * 60 - 1e-3 and t_sides.max() <= 0.40 * 60 + 1e-3
    # mask area ~ polygon area (binary rasterisation error ~ perimeter / 2)
    def area(v):
        x, y = v[..., 0], v[..., 1]
        return 0.5 * np.abs(np.sum(x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y, axis=1))
    for v, key, sides in ((tv, "triangle_mask", t_sides), (sv, "square_mask", s_sides)):
        px = shapes_ds.meta[key].sum(axis=(1, 2))
        assert np.all(np.abs(px - area(v)) <= sides.sum(1) / 2 + 2)
    # orientations vary over the full range (square angle mod 90 degrees)
    ang = np.degrees(np.arctan2(*(sv[:, 1] - sv[:, 0])[:, ::-1].T)) % 90
    assert np.histogram(ang, bins=6, range=(0, 90))[0].min() > 20


def test_shapes_label_rule_recomputed_from_masks(shapes_ds):
    ds = shapes_ds
    rec = []
    for i in range(len(ds)):
        d = []
        for key in ("triangle_mask", "square_mask"):
            yy, xx = np.nonzero(ds.meta[key][i])
            d.append(np.hypot(xx.mean(), yy.mean()))
        rec.append(0 if d[0] < d[1] else 1)
    np.testing.assert_array_equal(np.array(rec), ds.labels)
    # and exactly from the keypoints
    dist = np.linalg.norm(ds.keypoints.astype(np.float64), axis=-1)
    np.testing.assert_array_equal((dist[:, 1] < dist[:, 0]).astype(int), ds.labels)
    assert np.all(np.abs(dist[:, 0] - dist[:, 1]) >= 0.02 * 60 - 1e-4)  # label margin
    frac = ds.labels.mean()
    assert 0.3 < frac < 0.7


def test_shapes_bbox_is_tight(shapes_ds):
    ds = shapes_ds
    union = ds.meta["triangle_mask"] | ds.meta["square_mask"]
    allv = np.concatenate([ds.meta["triangle_vertices"], ds.meta["square_vertices"]], axis=1)
    np.testing.assert_allclose(ds.bbox[:, :2], allv.min(1), atol=1e-5)
    np.testing.assert_allclose(ds.bbox[:, 2:], allv.max(1), atol=1e-5)
    for i in range(0, len(ds), 10):
        yy, xx = np.nonzero(union[i])
        b = ds.bbox[i]
        assert b[0] <= xx.min() and xx.max() <= b[2] and b[1] <= yy.min() and yy.max() <= b[3]
        # a 60-degree tip may hold no pixel centre for up to 1 / sin(30 deg) = 2 px
        gaps = np.array([xx.min() - b[0], b[2] - xx.max(), yy.min() - b[1], b[3] - yy.max()])
        assert np.all(gaps < 2.0), gaps
    assert np.all(ds.bbox[:, :2] >= 0) and np.all(ds.bbox[:, 2:] <= 59)


# ----------------------------------------------------------------------------- Blocks


def _rotations(cells: np.ndarray):
    for k in range(4):
        c = cells.copy()
        for _ in range(k):
            c = np.stack([-c[:, 1], c[:, 0]], axis=1)
        yield c - c[0]


def test_block_templates_distinct_and_readable():
    assert len(S.BLOCK_CLASSES) == 15 == S.BLOCKS_SPEC.num_classes
    seen = []
    for turns in S.BLOCK_CLASSES:
        cells = S.block_cells(turns).astype(int)
        # chain: consecutive cells are 4-neighbours, no other pair is, no cell repeats
        dist = np.abs(cells[:, None] - cells[None]).sum(-1)
        adj = dist == 1
        expected = np.abs(np.arange(6)[:, None] - np.arange(6)[None]) == 1
        np.testing.assert_array_equal(adj, expected, err_msg=turns)
        assert len({tuple(c) for c in cells}) == 6
        # distinct from every earlier class under all four grid rotations
        # (only multiples of 90 degrees can map a grid chain onto a grid chain)
        for other in seen:
            for rot in _rotations(cells):
                assert not np.array_equal(rot, other - other[0]), turns
        seen.append(cells)
    with pytest.raises(ValueError, match="SLR"):
        S.block_cells("SSX")


def test_blocks_spec():
    spec = S.BLOCKS_SPEC
    assert spec.num_keypoints == 6 and spec.normaliser == "bbox" and spec.flip_pairs == ()
    assert spec.skeleton == tuple((k, k + 1) for k in range(5))


def _decode_turns(kp: np.ndarray) -> str:
    """Recover the class's turn string from the six keypoints alone."""
    kp = kp.astype(np.float64)
    pitch = np.linalg.norm(kp[2] - kp[1])
    u = (kp[1] - kp[0]) / np.linalg.norm(kp[1] - kp[0])
    v = np.array([-u[1], u[0]])
    steps = [np.rint([(kp[k + 1] - kp[k]) @ u / pitch, (kp[k + 1] - kp[k]) @ v / pitch]).astype(int)
             for k in range(1, 5)]
    out, prev = "", (1, 0)
    for s in steps:
        s = tuple(int(t) for t in s)
        out += {prev: "S", (prev[1], -prev[0]): "L", (-prev[1], prev[0]): "R"}[s]
        prev = s
    return out


def test_blocks_labels_recomputed_from_keypoints(blocks_ds):
    ds = blocks_ds
    decoded = [_decode_turns(k) for k in ds.keypoints]
    assert decoded == [S.BLOCK_CLASSES[c] for c in ds.labels]
    assert set(ds.labels.tolist()) == set(range(15))  # all classes appear
    counts = np.bincount(ds.labels, minlength=15)
    assert counts.min() >= 20


def test_blocks_keypoint_geometry(blocks_ds):
    ds = blocks_ds
    kp = ds.keypoints.astype(np.float64)
    pitch = ds.meta["pitch"].astype(np.float64)
    step = np.linalg.norm(np.diff(kp[:, 1:], axis=1), axis=-1)
    np.testing.assert_allclose(step, pitch[:, None].repeat(4, 1), rtol=1e-4)
    # triangle centroid sits (fill/2)/3 of a pitch from its cell centre, towards the body
    head = np.linalg.norm(kp[:, 1] - kp[:, 0], axis=-1)
    np.testing.assert_allclose(head, pitch * (1 - 0.375 / 3), rtol=1e-4)
    assert pitch.min() >= 0.12 * 60 - 1e-3 and pitch.max() <= 0.16 * 60 + 1e-3
    # keypoints inside the image and on white pixels
    assert np.all((kp >= 0) & (kp <= 59))
    x, y = _nearest_pixel(ds.keypoints)
    n = len(ds)
    assert np.all(ds.images[np.arange(n)[:, None], y, x, 0] == 255)
    # the whole figure is inside the frame: white area ~ 5 squares + 1 triangle
    area = (0.75 * pitch) ** 2 * 5.5
    white = (ds.images[..., 0] == 255).sum(axis=(1, 2))
    assert np.all(np.abs(white - area) < 0.35 * area)
    # bbox is inside the frame and contains every white pixel
    assert np.all(ds.bbox[:, :2] >= 0.5 - 1e-4) and np.all(ds.bbox[:, 2:] <= 58.5 + 1e-4)
    for i in range(0, n, 25):
        yy, xx = np.nonzero(ds.images[i, ..., 0])
        b = ds.bbox[i]
        assert b[0] <= xx.min() and xx.max() <= b[2] and b[1] <= yy.min() and yy.max() <= b[3]


def test_blocks_rotation_covers_full_circle(blocks_ds):
    kp = blocks_ds.keypoints.astype(np.float64)
    d = kp[:, 1] - kp[:, 0]
    ang = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 360
    meta = blocks_ds.meta["angle"].astype(np.float64)
    diff = (ang - meta + 180) % 360 - 180
    assert np.all(np.abs(diff) < 1e-2)
    hist = np.histogram(ang, bins=12, range=(0, 360))[0]
    assert hist.min() >= 20  # every 30-degree sector, including beyond 180 degrees
