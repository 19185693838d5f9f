"""Honari et al. (2018) toy datasets: *Shapes* and *Blocks*.

Both are 60x60 white-on-black images (Honari, Sec. 4.1 and 4.2). The paper gives
no code; every choice it leaves open is made here and documented.

Shapes (Sec. 4.1)
    One white triangle (equilateral) and one white square, random size, location
    and orientation, not overlapping (at least one black pixel between them).
    ``label`` says which shape is nearer the upper-left corner: the Euclidean
    distances of the two shape *centres* (triangle centroid, square centre) to the
    point ``(0, 0)`` (the centre of the upper-left pixel) are compared;
    ``0`` = the triangle is nearer, ``1`` = the square is nearer. Samples whose two
    distances differ by less than ``label_margin * size`` pixels are redrawn, so
    the label is never decided by a sub-pixel difference. Keypoints are the two
    centres ``(triangle, square)``; they are meant for checking where unsupervised
    landmarks land, not for training. ``meta`` holds ``triangle_mask`` and
    ``square_mask`` ``(N, H, W)`` bool and the vertices ``triangle_vertices``
    ``(N, 3, 2)`` and ``square_vertices`` ``(N, 4, 2)``.

Blocks (Sec. 4.2)
    Fifteen base figures (:data:`BLOCK_CLASSES`), each a head-to-tail chain of six
    grid cells: cell 0 holds a triangle (the head, pointing away from the body),
    cells 1..5 hold squares. Consecutive cells are 4-neighbours on the grid and no
    two non-consecutive cells are 4-neighbours, so the head-to-tail order can be
    read off the picture. A class is the string of turns (``S`` straight, ``L``
    counter-clockwise on screen, ``R`` clockwise) taken before steps 2..5; the
    fifteen strings give figures that are distinct under every rotation (mirror
    images are distinct classes: no rotation maps one onto the other). Squares and
    the triangle fill ``block_fill`` (0.75) of the cell pitch, leaving visible
    gaps. Each image applies a random rotation (uniform in [0, 360) degrees), a
    random scale (cell pitch uniform in ``scale_range * size`` pixels) and a random
    translation keeping every vertex inside the frame. Keypoints: the triangle's
    centroid then the five square centres, head to tail. ``label`` = class index.
    ``meta`` holds ``angle`` (degrees, direction from the head cell to the first
    square cell) and ``pitch`` (pixels). The paper's split is 3200/3200/3200.

Rendering is exact and binary: a pixel is white when its centre (integer
coordinates, package convention) lies inside a polygon.
"""

from __future__ import annotations

import math

import numpy as np

from ..sample import ArrayDataset, DatasetSpec

VERSION = 1
"""Bumped whenever the output of a generator in this module changes."""

DEFAULT_SIZE = 60

DEFAULT_SPLIT_SIZES = {
    # Honari et al. 2018, Sec. 4.2: "train, validation, and test sets, each having 3200 images".
    "blocks": {"train": 3200, "val": 3200, "test": 3200},
    # Not stated for Shapes; the same sizes are used.
    "shapes": {"train": 3200, "val": 3200, "test": 3200},
}

SHAPES_SPEC = DatasetSpec(
    name="shapes",
    keypoint_names=("triangle", "square"),
    normaliser="bbox",
    num_classes=2,
    class_names=("triangle_nearer", "square_nearer"),
)

BLOCK_CLASSES: tuple[str, ...] = (
    "SSSS",  # 0  straight bar
    "LSSS",  # 1  bent right behind the head
    "SLSS",  # 2
    "SSLS",  # 3
    "SSSL",  # 4  hook at the tail
    "RSSS",  # 5  mirror of 1
    "SSSR",  # 6  mirror of 4
    "LRSS",  # 7  step near the head
    "SLRS",  # 8  step in the middle
    "SSLR",  # 9  step near the tail
    "LSLS",  # 10 wide U
    "LSRS",  # 11 Z
    "LRLR",  # 12 staircase
    "SLSL",  # 13 U near the tail
    "LSSR",  # 14 long S
)
"""Turn strings of the 15 Blocks classes (label = index)."""

BLOCKS_SPEC = DatasetSpec(
    name="blocks",
    keypoint_names=("triangle", "square1", "square2", "square3", "square4", "square5"),
    skeleton=((0, 1), (1, 2), (2, 3), (3, 4), (4, 5)),
    normaliser="bbox",
    num_classes=len(BLOCK_CLASSES),
    class_names=BLOCK_CLASSES,
)

_MAX_TRIES = 10_000


# ----------------------------------------------------------------------------- geometry


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of pixels whose centre lies in a convex polygon.

    ``vertices`` is ``(V, 2)`` ``(x, y)`` in either winding order; pixel ``(r, c)``
    has its centre at ``(x, y) = (c, r)``. Points on an edge count as inside.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
        raise ValueError(f"polygon_mask: vertices must be (V>=3, 2), got {v.shape}")
    x0, y0 = v[:, 0], v[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    area2 = float(np.sum(x0 * y1 - x1 * y0))
    sign = 1.0 if area2 >= 0 else -1.0
    # Only scan the polygon's bounding box.
    c0 = max(int(math.ceil(x0.min() - 1e-9)), 0)
    c1 = min(int(math.floor(x0.max() + 1e-9)), width - 1)
    r0 = max(int(math.ceil(y0.min() - 1e-9)), 0)
    r1 = min(int(math.floor(y0.max() + 1e-9)), height - 1)
    mask = np.zeros((height, width), dtype=bool)
    if c1 < c0 or r1 < r0:
        return mask
    px = np.arange(c0, c1 + 1, dtype=np.float64)[None, :]
    py = np.arange(r0, r1 + 1, dtype=np.float64)[:, None]
    inside = np.ones((r1 - r0 + 1, c1 - c0 + 1), dtype=bool)
    for a in range(len(v)):
        cross = (x1[a] - x0[a]) * (py - y0[a]) - (y1[a] - y0[a]) * (px - x0[a])
        inside &= sign * cross >= -1e-9
    mask[r0 : r1 + 1, c0 : c1 + 1] = inside
    return mask


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation (8-neighbourhood) without scipy."""
    p = np.pad(mask, 1)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(3):
        for dx in range(3):
            out |= p[dy : dy + h, dx : dx + w]
    return out


def _check_common(n: int, seed: int, size: int, start: int, min_size: int, name: str) -> None:
    for key, val in (("n", n), ("seed", seed), ("size", size), ("start", start)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
            raise TypeError(f"{name}: {key} must be an int, got {val!r}")
    if n < 0:
        raise ValueError(f"{name}: n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"{name}: seed must be >= 0, got {seed}")
    if start < 0:
        raise ValueError(f"{name}: start must be >= 0, got {start}")
    if size < min_size:
        raise ValueError(f"{name}: size must be >= {min_size}, got {size}")


def _check_range(name: str, key: str, rng_: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
    a, b = (float(x) for x in rng_)
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name}: {key} must satisfy {lo} <= low <= high <= {hi}, got {rng_!r}")
    return a, b


def _to_image(mask: np.ndarray) -> np.ndarray:
    img = np.zeros(mask.shape + (3,), dtype=np.uint8)
    img[mask] = 255
    return img


# ----------------------------------------------------------------------------- Shapes


def _regular_polygon(centre: np.ndarray, circumradius: float, sides: int, theta: float) -> np.ndarray:
    ang = theta + 2 * np.pi * np.arange(sides) / sides
    return centre + circumradius * np.stack([np.cos(ang), np.sin(ang)], axis=1)


def generate_shapes(
    n: int,
    seed: int,
    size: int = DEFAULT_SIZE,
    *,
    square_side: tuple[float, float] = (0.15, 0.30),
    triangle_side: tuple[float, float] = (0.20, 0.40),
    label_margin: float = 0.02,
    start: int = 0,
) -> ArrayDataset:
    """Honari's *Shapes*: one white triangle and one white square per ``size`` x ``size`` image.

    Sample ``i`` is drawn from ``np.random.default_rng([seed, start + i])``, so any
    prefix or chunk is identical whatever ``n`` is. ``square_side`` and
    ``triangle_side`` are side-length ranges as fractions of ``size`` (the
    triangle is equilateral); ``label_margin`` (fraction of ``size``) is the
    smallest allowed difference between the two centre-to-(0, 0) distances.
    ``label`` is 0 when the triangle's centroid is nearer to (0, 0), 1 when the
    square's centre is. See the module docstring for everything else.
    """
    name = "generate_shapes"
    _check_common(n, seed, size, start, 16, name)
    sq_lo, sq_hi = _check_range(name, "square_side", square_side, 0.05, 0.45)
    tr_lo, tr_hi = _check_range(name, "triangle_side", triangle_side, 0.05, 0.6)
    if not (0.0 <= label_margin < 0.5):
        raise ValueError(f"{name}: label_margin must be in [0, 0.5), got {label_margin!r}")
    H = W = int(size)
    images = np.zeros((n, H, W, 3), np.uint8)
    kps = np.zeros((n, 2, 2), np.float32)
    bbox = np.zeros((n, 4), np.float32)
    labels = np.zeros(n, np.int64)
    tri_masks = np.zeros((n, H, W), bool)
    sq_masks = np.zeros((n, H, W), bool)
    tri_verts = np.zeros((n, 3, 2), np.float32)
    sq_verts = np.zeros((n, 4, 2), np.float32)
    for i in range(n):
        rng = np.random.default_rng([int(seed), int(start) + i])
        for _ in range(_MAX_TRIES):
            t_side = rng.uniform(tr_lo, tr_hi) * size
            s_side = rng.uniform(sq_lo, sq_hi) * size
            t_r = t_side / math.sqrt(3.0)
            s_r = s_side / math.sqrt(2.0)
            t_c = rng.uniform(t_r, size - 1 - t_r, size=2)
            s_c = rng.uniform(s_r, size - 1 - s_r, size=2)
            t_v = _regular_polygon(t_c, t_r, 3, rng.uniform(0, 2 * np.pi))
            s_v = _regular_polygon(s_c, s_r, 4, rng.uniform(0, 2 * np.pi))
            d_t, d_s = float(np.hypot(*t_c)), float(np.hypot(*s_c))
            if abs(d_t - d_s) < label_margin * size:
                continue
            if np.hypot(*(t_c - s_c)) < t_r + s_r + 2:  # bounding circles may overlap
                t_m = polygon_mask(t_v, H, W)
                s_m = polygon_mask(s_v, H, W)
                if np.any(_dilate(t_m) & s_m):
                    continue
            else:
                t_m = polygon_mask(t_v, H, W)
                s_m = polygon_mask(s_v, H, W)
            break
        else:  # pragma: no cover - the acceptance rate is far above 1/_MAX_TRIES
            raise RuntimeError(f"{name}: could not place shapes for sample {start + i} (seed {seed}, size {size})")
        tri_masks[i], sq_masks[i] = t_m, s_m
        images[i] = _to_image(t_m | s_m)
        kps[i, 0] = t_v.mean(axis=0)
        kps[i, 1] = s_v.mean(axis=0)
        both = np.concatenate([t_v, s_v])
        bbox[i] = (*both.min(axis=0), *both.max(axis=0))
        labels[i] = 0 if d_t < d_s else 1
        tri_verts[i], sq_verts[i] = t_v, s_v
    return ArrayDataset(
        spec=SHAPES_SPEC,
        images=images,
        keypoints=kps,
        visibility=np.ones((n, 2), np.float32),
        bbox=bbox,
        labels=labels,
        meta={
            "triangle_mask": tri_masks,
            "square_mask": sq_masks,
            "triangle_vertices": tri_verts,
            "square_vertices": sq_verts,
        },
    )


# ----------------------------------------------------------------------------- Blocks

_TURN = {
    "S": lambda d: d,
    "L": lambda d: (d[1], -d[0]),  # counter-clockwise on screen (y down): +x -> -y (up)
    "R": lambda d: (-d[1], d[0]),  # clockwise on screen: +x -> +y (down)
}


def block_cells(turns: str) -> np.ndarray:
    """Grid cells ``(6, 2)`` (x, y) of a Blocks figure, head (triangle) first.

    The head sits at (0, 0) and the first step goes to +x; ``turns`` (4 letters in
    ``S``/``L``/``R``) are applied before steps 2..5.
    """
    if len(turns) != 4 or any(t not in _TURN for t in turns):
        raise ValueError(f"block turns must be 4 letters from 'SLR', got {turns!r}")
    d = (1, 0)
    cells = [(0, 0), (1, 0)]
    for t in turns:
        d = _TURN[t](d)
        cells.append((cells[-1][0] + d[0], cells[-1][1] + d[1]))
    return np.array(cells, dtype=np.float64)


def _block_polygons(turns: str, fill: float) -> list[np.ndarray]:
    """Template polygons (unit pitch): triangle first, then the five squares."""
    cells = block_cells(turns)
    h = fill / 2
    d = cells[1] - cells[0]  # unit vector head -> body
    p = np.array([-d[1], d[0]])
    c = cells[0]
    polys = [np.stack([c - h * d, c + h * d + h * p, c + h * d - h * p])]
    for cell in cells[1:]:
        polys.append(cell + h * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64))
    return polys


def generate_blocks(
    n: int,
    seed: int,
    size: int = DEFAULT_SIZE,
    *,
    scale_range: tuple[float, float] = (0.12, 0.16),
    block_fill: float = 0.75,
    start: int = 0,
) -> ArrayDataset:
    """Honari's *Blocks*: one of 15 chains of five squares headed by a triangle.

    Sample ``i`` is drawn from ``np.random.default_rng([seed, start + i])``: class
    uniform over :data:`BLOCK_CLASSES`, rotation uniform in [0, 360) degrees, cell
    pitch uniform in ``scale_range * size`` pixels (capped so the figure fits),
    translation uniform over the positions keeping every vertex within
    ``[0.5, size - 1.5]``. ``block_fill`` is the side of each square (and the
    triangle's base and height) as a fraction of the pitch. Keypoints are the
    triangle's centroid followed by the five square centres, head to tail.
    """
    name = "generate_blocks"
    _check_common(n, seed, size, start, 16, name)
    sc_lo, sc_hi = _check_range(name, "scale_range", scale_range, 0.02, 0.16)
    if not (0.3 <= block_fill <= 0.9):
        raise ValueError(f"{name}: block_fill must be in [0.3, 0.9], got {block_fill!r}")
    H = W = int(size)
    margin = 0.5
    avail = size - 1 - 2 * margin
    templates = []
    for turns in BLOCK_CLASSES:
        polys = _block_polygons(turns, block_fill)
        allv = np.concatenate(polys)
        centre = (allv.min(axis=0) + allv.max(axis=0)) / 2
        templates.append([q - centre for q in polys])
    images = np.zeros((n, H, W, 3), np.uint8)
    kps = np.zeros((n, 6, 2), np.float32)
    bbox = np.zeros((n, 4), np.float32)
    labels = np.zeros(n, np.int64)
    angles = np.zeros(n, np.float32)
    pitches = np.zeros(n, np.float32)
    for i in range(n):
        rng = np.random.default_rng([int(seed), int(start) + i])
        cls = int(rng.integers(len(BLOCK_CLASSES)))
        theta = rng.uniform(0.0, 2 * np.pi)
        R = _rotation(theta)
        rot = [q @ R.T for q in templates[cls]]
        allv = np.concatenate(rot)
        ext = allv.max(axis=0) - allv.min(axis=0)  # at unit pitch
        p_fit = avail / float(ext.max())
        pitch = rng.uniform(sc_lo, sc_hi) * size
        pitch = min(pitch, p_fit)
        lo = allv.min(axis=0) * pitch
        hi = allv.max(axis=0) * pitch
        shift = np.array([rng.uniform(margin - lo[k], size - 1 - margin - hi[k]) for k in range(2)])
        polys = [q * pitch + shift for q in rot]
        mask = np.zeros((H, W), bool)
        for q in polys:
            mask |= polygon_mask(q, H, W)
        images[i] = _to_image(mask)
        kps[i] = np.stack([q.mean(axis=0) for q in polys])
        allp = np.concatenate(polys)
        bbox[i] = (*allp.min(axis=0), *allp.max(axis=0))
        labels[i] = cls
        angles[i] = math.degrees(theta)
        pitches[i] = pitch
    return ArrayDataset(
        spec=BLOCKS_SPEC,
        images=images,
        keypoints=kps,
        visibility=np.ones((n, 6), np.float32),
        bbox=bbox,
        labels=labels,
        meta={"angle": angles, "pitch": pitches},
    )
