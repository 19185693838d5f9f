"""Synthetic large-pose faces ("faces") with 20 landmarks from a 3-D template.

Each image shows one head: an ellipsoid (semi-axes ``a, b, c`` in head units)
carrying 20 landmarks at corner-like places, rotated by yaw (up to +-90
degrees), pitch and roll and projected orthographically. Identity varies the
template (head proportions, eye spacing and height, nose length, mouth width,
per-landmark jitter, skin/hair/lip colours); expression varies mouth opening,
smile and brow raise. The head is shaded per pixel (Lambertian, random light)
with a hair cap, ears, neck and shoulders; eyes, brows, nose and mouth are
drawn with enough contrast for generic corner detectors to fire on several
landmarks, and the background is cluttered with corner-rich shapes so that
detectors also fire off the face.

Conventions
-----------
* Head frame: ``X`` to the image right for a frontal face, ``Y`` down, ``Z``
  towards the camera. "Right"/"left" in :data:`KEYPOINT_NAMES` are the
  subject's own sides, so for a frontal, upright face the subject's right eye
  is on the image's LEFT: ``x[right_eye_outer] < x[left_eye_outer]``.
* ``yaw > 0`` turns the face towards the image's right (the subject's left
  side turns away from the camera); ``pitch > 0`` turns it upwards (the nose
  moves up in the image); ``roll > 0`` rotates it clockwise on screen. See
  :func:`rotation_matrix`.
* Visibility is 0 for landmarks whose surface normal faces away from the
  camera (camera-frame ``n_z <= 0``, normals of the ellipsoid; the nose tip and
  nostrils carry their own normals) -- so self-occlusion by the nose itself is
  not modelled -- and for landmarks outside the frame.
* ``bbox`` is the tight box around all 20 projected landmarks (visible or
  not); ``meta['sqrt_wh']`` is ``sqrt(w * h)`` of that box (the large-pose NME
  normaliser); ``meta['pose']`` holds ``(yaw, pitch, roll)`` in degrees. The
  spec's normaliser is ``'inter_ocular'`` (outer eye corners, 2-D distance,
  which shrinks at large yaw -- use ``sqrt_wh`` there). ``labels`` is None.

Sample ``i`` is generated from its own ``np.random.default_rng([seed, start + i])``.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from landmark_study.data.sample import ArrayDataset, DatasetSpec
from .common import check_generator_args
from landmark_study.data.synthetic.figures import add_pixel_noise, colour_noise_background

VERSION = 1

KEYPOINT_NAMES: tuple[str, ...] = (
    "right_brow_outer", "right_brow_inner", "left_brow_inner", "left_brow_outer",
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
    "nose_tip", "right_nostril", "left_nostril",
    "right_mouth_corner", "left_mouth_corner", "upper_lip_centre", "lower_lip_centre",
    "chin", "right_jaw", "left_jaw", "right_temple", "left_temple",
)
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 3), (1, 2), (4, 7), (5, 6), (9, 10), (11, 12), (16, 17), (18, 19),
)
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (8, 10), (11, 13), (13, 12), (12, 14), (14, 11),
    (18, 16), (16, 15), (15, 17), (17, 19),
)
FACES_SPEC = DatasetSpec(
    name="faces",
    keypoint_names=KEYPOINT_NAMES,
    flip_pairs=FLIP_PAIRS,
    skeleton=SKELETON,
    normaliser="inter_ocular",
    normaliser_joints=(4, 7),
)
SPEC = FACES_SPEC

DEFAULT_SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}

#: options accepted as ``**options`` by :func:`generate_faces`
DEFAULT_OPTIONS: dict[str, Any] = {
    "yaw": 90.0,  # max |yaw| in degrees (uniform in +-yaw), or a (low, high) range
    "pitch": 30.0,  # max |pitch| or (low, high)
    "roll": 30.0,  # max |roll| or (low, high)
    "head_width": (0.5, 0.68),  # 2a x scale / image side
    "clutter": (4, 9),  # inclusive range of background shapes
    "blur": (0.0, 0.6),  # Gaussian blur sigma at output resolution
    "noise": (1.0, 4.0),  # pixel noise std (0-255 scale)
}

_SKIN_TONES = np.array(
    [[241, 194, 160], [224, 172, 135], [198, 134, 96], [160, 105, 70], [110, 72, 48], [232, 190, 172]],
    dtype=np.float64,
)
_HAIR = np.array([[30, 22, 18], [70, 45, 25], [130, 90, 50], [200, 170, 110], [40, 40, 45], [150, 150, 150]],
                 dtype=np.float64)

# template (X, Y, protrusion beyond the ellipsoid surface); Z is put on the surface
_TEMPLATE = np.array([
    [-0.66, -0.36, 0.02], [-0.17, -0.38, 0.02], [0.17, -0.38, 0.02], [0.66, -0.36, 0.02],  # brows
    [-0.60, -0.12, 0.0], [-0.22, -0.12, 0.0], [0.22, -0.12, 0.0], [0.60, -0.12, 0.0],  # eyes
    [0.0, 0.36, 0.32], [-0.13, 0.45, 0.12], [0.13, 0.45, 0.12],  # nose
    [-0.34, 0.72, 0.06], [0.34, 0.72, 0.06], [0.0, 0.64, 0.08], [0.0, 0.82, 0.07],  # mouth
    [0.0, 1.20, 0.05], [-0.70, 0.78, 0.0], [0.70, 0.78, 0.0], [-0.90, -0.12, 0.0], [0.90, -0.12, 0.0],  # contour
])


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"generate_faces: unknown option(s) {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    for key, lim in (("yaw", 90.0), ("pitch", 60.0), ("roll", 180.0)):
        v = opts[key]
        lo_hi = (-float(v), float(v)) if np.isscalar(v) else tuple(float(x) for x in v)
        if len(lo_hi) != 2 or not -lim <= lo_hi[0] <= lo_hi[1] <= lim:
            raise ValueError(f"generate_faces: option {key!r} must be a max angle in [0, {lim}] or a (low, high) "
                             f"range inside [-{lim}, {lim}] degrees, got {v!r}")
        opts[key] = lo_hi
    for key in ("head_width", "clutter", "blur", "noise"):
        lo_hi = opts[key]
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1] or lo_hi[0] < 0:
            raise ValueError(f"generate_faces: option {key!r} must be a (low, high) pair with "
                             f"0 <= low <= high, got {lo_hi!r}")
    if not 0.1 <= opts["head_width"][0] <= opts["head_width"][1] <= 0.9:
        raise ValueError(f"generate_faces: head_width must lie in [0.1, 0.9], got {opts['head_width']!r}")
    return opts


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head-to-camera rotation ``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (degrees).

    With the head frame's Z towards the camera, ``Ry(yaw)`` maps the nose
    direction ``(0, 0, 1)`` to ``(sin yaw, 0, cos yaw)``: positive yaw moves the
    nose towards the image's right.
    """
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


_SHIFT = 4
_ONE = 1 << _SHIFT


def _pts(p: np.ndarray) -> np.ndarray:
    """Output-pixel points (N, 2) -> int32 fixed-point coordinates on the 2x canvas."""
    return np.rint((2.0 * np.asarray(p)[:, :2] + 0.5) * _ONE).astype(np.int32)


def _on_surface(xy: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Front-surface Z of the ellipsoid at head-frame (X, Y) (clipped just inside)."""
    a, b, c = axes
    q = 1.0 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2
    return c * np.sqrt(np.clip(q, 0.01, None))


def _normals(p: np.ndarray, axes: np.ndarray) -> np.ndarray:
    n = p / axes**2
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


_RING = np.stack([np.cos(np.linspace(0, 2 * math.pi, 10, endpoint=False)),
                  np.sin(np.linspace(0, 2 * math.pi, 10, endpoint=False))], axis=1)

# layout of the drawing points that follow the 20 landmarks (name -> slice)
_GROUPS: dict[str, slice] = {}
_sizes = (("eye_r", 6), ("eye_l", 6), ("iris_r", 10), ("iris_l", 10), ("brow_r", 3), ("brow_l", 3),
          ("lips", 8), ("mouth_in", 4), ("nose", 4))
_start = 20
for _name, _k in _sizes:
    _GROUPS[_name] = slice(_start, _start + _k)
    _start += _k
_N_POINTS = _start
del _name, _k, _start, _sizes


def _face_model(rng: np.random.Generator):
    """Identity + expression of one face.

    Returns the head axes, ``pts`` (M, 3) head-frame points on the surface
    (landmarks first, then the drawing groups of :data:`_GROUPS`), the 20
    landmark normals, colours and hair style.
    """
    axes = np.array([rng.uniform(0.92, 1.05), rng.uniform(1.22, 1.38), rng.uniform(1.0, 1.15)])
    t = _TEMPLATE.copy()
    u = rng.random(16)
    # identity
    eye_sp = 0.9 + 0.2 * u[0]
    t[4:8, 0] *= eye_sp
    t[0:4, 0] *= eye_sp * (0.95 + 0.13 * u[1])
    t[0:8, 1] += 0.12 * u[2] - 0.06
    nose_len = 0.85 + 0.3 * u[3]
    t[8:11, 1] = -0.12 + (t[8:11, 1] + 0.12) * nose_len
    t[8, 2] *= 0.8 + 0.4 * u[4]
    t[11:13, 0] *= 0.85 + 0.3 * u[5]
    t[11:15, 1] += 0.1 * u[6] - 0.05
    t[16:18, 0] *= 0.92 + 0.13 * u[7]
    t[:, :2] += rng.normal(0, 0.015, (20, 2))
    # expression
    smile = u[9] if u[8] < 0.5 else 0.0
    mouth_open = 0.1 + 0.9 * u[11] if u[10] < 0.4 else 0.0
    t[11:13, 0] *= 1 + 0.15 * smile
    t[11:13, 1] -= 0.07 * smile
    t[14, 1] += 0.22 * mouth_open
    t[15, 1] += 0.08 * mouth_open
    t[0:4, 1] -= 0.14 * u[12] - 0.04  # brow raise
    t[[0, 3], 1] -= 0.08 * u[13] - 0.04
    lid_h = 0.09 + 0.03 * u[14]

    pts = np.zeros((_N_POINTS, 3))
    pts[:20] = t
    g = _GROUPS
    for side, o, i, iris, eye, b_out, b_in, brow in (("r", 4, 5, "iris_r", "eye_r", 0, 1, "brow_r"),
                                                    ("l", 7, 6, "iris_l", "eye_l", 3, 2, "brow_l")):
        po, pi = t[o, :2], t[i, :2]
        d = pi - po
        up = lid_h * math.hypot(d[0], d[1]) / 0.38
        f = np.array([0.0, 0.28, 0.62, 1.0, 0.62, 0.28])[:, None]
        dy = np.array([0.0, -0.8, -1.0, 0.0, 0.6, 0.55]) * up
        pts[g[eye], :2] = po + f * d + np.stack([np.zeros(6), dy], axis=1)
        pts[g[iris], :2] = 0.5 * (po + pi) + np.array([0.0, -0.01]) + 0.065 * _RING
        pts[g[iris], 2] = 0.01
        bo, bi = t[b_out, :2], t[b_in, :2]
        pts[g[brow], :2] = np.array([bo, 0.5 * (bo + bi) + [0.0, -0.05], bi])
        pts[g[brow], 2] = 0.02
    mc_r, mc_l, ul, ll = t[11, :2], t[12, :2], t[13, :2], t[14, :2]
    pts[g["lips"], :2] = np.array([mc_r, 0.5 * (mc_r + ul) + [0, -0.03], ul, 0.5 * (mc_l + ul) + [0, -0.03], mc_l,
                                   0.5 * (mc_l + ll) + [0, 0.02], ll, 0.5 * (mc_r + ll) + [0, 0.02]])
    gap = mouth_open * 0.18
    pts[g["mouth_in"], :2] = np.array([mc_r + [0.03, 0], ul + [0, 0.035], mc_l + [-0.03, 0], ul + [0, 0.035 + gap]])
    pts[g["lips"], 2] = 0.06
    pts[g["mouth_in"], 2] = 0.06
    pts[g["nose"], :2] = np.array([[0.0, -0.10], t[9, :2] + [-0.05, -0.05], [0.0, t[9, 1] + 0.04],
                                   t[10, :2] + [0.05, -0.05]])
    pts[g["nose"], 2] = 0.05
    surf = _on_surface(pts[:, :2], axes)
    normals = _normals(np.stack([pts[:20, 0], pts[:20, 1], surf[:20]], axis=1), axes)
    pts[:, 2] += surf
    normals[8] = np.array([0.0, 0.15, 1.0]) / math.hypot(0.15, 1.0)  # nose tip
    for k, sgn in ((9, -1.0), (10, 1.0)):  # nostrils look outwards, down and forwards
        normals[k] = np.array([0.55 * sgn, 0.55, 0.63]) / math.sqrt(0.55**2 * 2 + 0.63**2)
    colours = {
        "skin": _SKIN_TONES[int(rng.integers(0, len(_SKIN_TONES)))] * rng.uniform(0.9, 1.08),
        "hair": _HAIR[int(rng.integers(0, len(_HAIR)))] * rng.uniform(0.8, 1.2),
        "lips": np.array([rng.uniform(120, 200), rng.uniform(30, 80), rng.uniform(40, 90)]),
        "iris": rng.uniform(20, 110, 3),
        "shirt": rng.uniform(20, 235, 3),
    }
    style = {
        "hairline": rng.uniform(-0.75, -0.5) * axes[1],
        "bald": rng.random() < 0.08,
        "back": rng.uniform(-0.35, 0.0) * axes[2],
    }
    return axes, pts, normals, colours, style


_CHECKER = np.array([[[-1, -1], [0, -1], [0, 0], [-1, 0]], [[0, 0], [1, 0], [1, 1], [0, 1]],
                     [[0, -1], [1, -1], [1, 0], [0, 0]], [[-1, 0], [0, 0], [0, 1], [-1, 1]]], dtype=np.float64)
_UNIT_RECT = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])


def _clutter(rng: np.random.Generator, img: np.ndarray, size: int, count: int) -> None:
    """Corner-rich background shapes: rectangles, triangles, 2x2 checker patches, bars."""
    if count <= 0:
        return
    u = rng.random((count, 16))
    cols = u[:, 10:16] * 255.0
    for k in range(count):
        uk = u[k]
        kind = int(uk[0] * 4)
        c = (uk[1:3] * 1.1 - 0.05) * size
        s = (0.08 + 0.22 * uk[3]) * size
        th = uk[4] * 2 * math.pi
        ct, st = math.cos(th), math.sin(th)
        rot_t = np.array([[ct, st], [-st, ct]])  # transpose of the rotation
        col = (cols[k, 0], cols[k, 1], cols[k, 2])
        if kind == 0:  # rectangle
            poly = _UNIT_RECT * [s * (0.5 + 0.5 * uk[5]), s * (0.3 + 0.7 * uk[6])]
        elif kind == 1:  # triangle
            poly = (uk[5:11].reshape(3, 2) * 1.2 - 0.6) * s
        elif kind == 2:  # 2x2 checker patch: an X-junction
            col2 = (cols[k, 3], cols[k, 4], cols[k, 5])
            sq = _pts((_CHECKER * (0.4 * s)).reshape(-1, 2) @ rot_t + c).reshape(4, 4, 2)
            cv2.fillPoly(img, [sq[0], sq[1]], col, cv2.LINE_AA, _SHIFT)
            cv2.fillPoly(img, [sq[2], sq[3]], col2, cv2.LINE_AA, _SHIFT)
            continue
        else:  # bar
            poly = _UNIT_RECT * [s * (0.8 + 0.6 * uk[5]), s * (0.06 + 0.09 * uk[6])]
        cv2.fillPoly(img, [_pts(poly @ rot_t + c)], col, cv2.LINE_AA, _SHIFT)


def _tup(c: np.ndarray) -> tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


def _one_face(rng: np.random.Generator, size: int, opts: dict[str, Any]):
    side2 = 2 * size
    axes, pts, normals, col, style = _face_model(rng)
    u = rng.random(3)
    ranges = (opts["yaw"], opts["pitch"], opts["roll"])
    yaw, pitch, roll = (lo + (hi - lo) * float(uk) for (lo, hi), uk in zip(ranges, u))
    rot = rotation_matrix(yaw, pitch, roll)
    scale = rng.uniform(*opts["head_width"]) * size / (2 * axes[0])  # px per head unit
    # centre the landmarks' box (not the skull) in the frame, with some jitter
    rel = scale * (pts[:20] @ rot[:2].T)
    centre = size * (0.5 + rng.uniform(-0.06, 0.06, 2)) - 0.5 - 0.5 * (rel.min(axis=0) + rel.max(axis=0))

    # off-surface points: neck top, two ear rings
    ears = np.zeros((20, 3))
    for j, sgn in enumerate((-1.0, 1.0)):
        ears[10 * j:10 * j + 10] = [sgn * (axes[0] * 0.97 + 0.08), 0.05, -0.12]
        ears[10 * j:10 * j + 10, 1] += 0.28 * _RING[:, 0]
        ears[10 * j:10 * j + 10, 2] += 0.16 * _RING[:, 1]
    allp = np.concatenate([pts, ears, [[0.0, 0.9, -0.2]]]) @ rot.T
    xy = centre + scale * allp[:, :2]  # output pixels
    q = _pts(xy)  # fixed point on the 2x canvas
    g = _GROUPS
    kp = xy[:20]
    n_cam = normals @ rot.T
    vis = (n_cam[:, 2] > 0).astype(np.float32)
    # visibility of drawing groups: normal at the group's mean point
    names = ("brow_r", "brow_l", "eye_r", "eye_l", "lips")
    means = np.array([pts[g[nm]].mean(axis=0) for nm in names])
    means[:, 2] = _on_surface(means[:, :2], axes)
    group_vis = dict(zip(names, (_normals(means, axes) @ rot.T)[:, 2] > 0.0))

    # background, clutter, shoulders and neck
    img = colour_noise_background(rng, side2)
    _clutter(rng, img, size, int(rng.integers(opts["clutter"][0], opts["clutter"][1] + 1)))
    neck = xy[-1]
    cv2.line(img, tuple(q[-1]), tuple(_pts(neck[None] + [[0.0, 1.2 * scale]])[0]), _tup(col["skin"] * 0.8),
             int(2 * 0.95 * scale), cv2.LINE_AA, _SHIFT)
    sh_c = _pts(neck[None] + [[0.0, 2.2 * scale]])[0]
    cv2.ellipse(img, tuple(sh_c), (int(2 * 2.6 * scale * _ONE), int(2 * 1.2 * scale * _ONE)), 0, 0, 360,
                _tup(col["shirt"]), -1, cv2.LINE_AA, _SHIFT)
    # ears (behind the head outline)
    for j, sgn in enumerate((-1.0, 1.0)):
        if float(rot[2] @ np.array([sgn, 0.0, -0.2])) > -0.6:
            cv2.fillPoly(img, [q[_N_POINTS + 10 * j:_N_POINTS + 10 * j + 10]], _tup(col["skin"] * 0.85),
                         cv2.LINE_AA, _SHIFT)

    # head: silhouette ellipse of the rotated ellipsoid (orthographic)
    m = rot @ np.diag(1.0 / axes**2) @ rot.T
    e2 = m[:2, :2] - np.outer(m[:2, 2], m[:2, 2]) / m[2, 2]
    lam, vec = np.linalg.eigh(e2)
    half = scale / np.sqrt(lam)
    ang = math.degrees(math.atan2(vec[1, 0], vec[0, 0]))
    mask = np.zeros((side2, side2), np.uint8)
    cen_q = tuple(_pts(centre[None])[0])
    cv2.ellipse(mask, cen_q, (int(2 * half[0] * _ONE), int(2 * half[1] * _ONE)), ang, 0, 360, 255, -1,
                cv2.LINE_8, _SHIFT)

    # per-pixel shading on the output grid (inside the silhouette's box), enlarged to the 2x canvas
    e2inv = np.linalg.inv(e2)
    ext = scale * np.sqrt(np.diag(e2inv))
    x0 = int(max(0, math.floor(centre[0] - ext[0]) - 2))
    x1 = int(min(size, math.ceil(centre[0] + ext[0]) + 3))
    y0 = int(max(0, math.floor(centre[1] - ext[1]) - 2))
    y1 = int(min(size, math.ceil(centre[1] + ext[1]) + 3))
    head = np.zeros((side2, side2, 3), np.uint8)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.2), 1.0])
    light /= np.linalg.norm(light)
    if x1 > x0 and y1 > y0:
        X = (np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(centre[0])) / np.float32(scale)
        Y = (np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(centre[1])) / np.float32(scale)
        m32 = m.astype(np.float32)
        bq = m32[0, 2] * X + m32[1, 2] * Y
        cq = m32[0, 0] * X * X + 2 * m32[0, 1] * X * Y + m32[1, 1] * Y * Y - 1.0
        Z = (np.sqrt(np.maximum(bq * bq - m32[2, 2] * cq, 0.0)) - bq) / m32[2, 2]
        X, Y = np.broadcast_to(X, Z.shape), np.broadcast_to(Y, Z.shape)
        nl = m @ light  # (m P) . light = P . (m light), m symmetric
        n_norm = np.sqrt((m32[0, 0] * X + m32[0, 1] * Y + m32[0, 2] * Z) ** 2
                         + (m32[1, 0] * X + m32[1, 1] * Y + m32[1, 2] * Z) ** 2
                         + (m32[2, 0] * X + m32[2, 1] * Y + m32[2, 2] * Z) ** 2) + 1e-6
        shade = 0.45 + 0.6 * np.clip((nl[0] * X + nl[1] * Y + nl[2] * Z) / n_norm, 0.0, 1.0)
        # head-frame coordinates (P @ rot)
        hx = rot[0, 0] * X + rot[1, 0] * Y + rot[2, 0] * Z
        hy = rot[0, 1] * X + rot[1, 1] * Y + rot[2, 1] * Z
        hz = rot[0, 2] * X + rot[1, 2] * Y + rot[2, 2] * Z
        if style["bald"]:
            hair = np.zeros(Z.shape, bool)
        else:
            hair = (hy < style["hairline"] + 0.25 * np.abs(hx)) | ((hz < style["back"]) & (hy < 0.55 * axes[1]))
        base = np.where(hair[..., None], col["hair"].astype(np.float32), col["skin"].astype(np.float32))
        region = np.clip(base * shade[..., None], 0, 255).astype(np.uint8)
        head[2 * y0:2 * y1, 2 * x0:2 * x1] = cv2.resize(region, (2 * (x1 - x0), 2 * (y1 - y0)),
                                                          interpolation=cv2.INTER_LINEAR)

    # facial features on the head layer (clipped by the silhouette when composited)
    dark = _tup(np.clip(col["hair"] * 0.6, 0, 255))
    brow_t = max(1, int(2 * 0.055 * scale))
    lid_t = max(1, int(2 * 0.03 * scale))
    for side in ("r", "l"):
        if group_vis[f"brow_{side}"]:
            cv2.polylines(head, [q[g[f"brow_{side}"]]], False, dark, brow_t, cv2.LINE_AA, _SHIFT)
        if group_vis[f"eye_{side}"]:
            eye = q[g[f"eye_{side}"]]
            cv2.fillPoly(head, [eye], (235, 235, 230), cv2.LINE_AA, _SHIFT)
            cv2.fillPoly(head, [q[g[f"iris_{side}"]]], _tup(col["iris"]), cv2.LINE_AA, _SHIFT)
            cv2.polylines(head, [eye[:4]], False, (25, 20, 20), lid_t, cv2.LINE_AA, _SHIFT)
    if group_vis["lips"]:
        cv2.fillPoly(head, [q[g["lips"]]], _tup(col["lips"]), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(head, [q[g["mouth_in"]]], (40, 10, 15), cv2.LINE_AA, _SHIFT)
    cv2.copyTo(head, mask, img)

    # nose (may stick out of the silhouette) and nostrils
    hull = cv2.convexHull(np.concatenate([q[g["nose"]], q[8:9]]))
    ns = 0.45 + 0.6 * max(0.0, float((rot @ np.array([0.0, 0.1, 1.0])) @ light))
    cv2.fillPoly(img, [hull], _tup(np.clip(col["skin"] * ns, 0, 255)), cv2.LINE_AA, _SHIFT)
    cv2.polylines(img, [hull], True, _tup(col["skin"] * 0.55), max(1, int(2 * 0.025 * scale)), cv2.LINE_AA, _SHIFT)
    for k in (9, 10):
        if vis[k]:
            r = int(2 * 0.045 * scale * max(0.3, n_cam[k, 2]) * _ONE) + 1
            cv2.circle(img, tuple(q[k]), r, (35, 15, 15), -1, cv2.LINE_AA, _SHIFT)

    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(*opts["blur"])
    if sigma > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = add_pixel_noise(rng, out, float(rng.uniform(*opts["noise"])))

    inside = (kp >= -0.5).all(axis=1) & (kp <= size - 0.5).all(axis=1)
    vis[~inside] = 0
    lo, hi = kp.min(axis=0), kp.max(axis=0)
    bbox = np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float32)
    return out, kp.astype(np.float32), vis, bbox, np.array([yaw, pitch, roll], np.float32)


def generate_faces(n: int, seed: int, size: int = 64, *, start: int = 0, **options: Any) -> ArrayDataset:
    """Generate ``n`` face images of ``size`` x ``size`` pixels (see module doc).

    ``options`` override :data:`DEFAULT_OPTIONS`. Sample ``i`` uses
    ``np.random.default_rng([seed, start + i])`` (``start`` lets a caller generate
    a long set in chunks: ``generate(m, s, start=k)`` equals samples ``k .. k+m-1``
    of ``generate(k + m, s)``). Returns an :class:`ArrayDataset`
    (``labels`` None) with ``meta['sqrt_wh']`` (N,) and ``meta['pose']`` (N, 3).
    """
    check_generator_args("generate_faces", n, seed, size, start)
    opts = _check_options(options)
    size = int(size)
    images = np.zeros((n, size, size, 3), np.uint8)
    kps = np.zeros((n, 20, 2), np.float32)
    vis = np.zeros((n, 20), np.float32)
    bbox = np.zeros((n, 4), np.float32)
    pose = np.zeros((n, 3), np.float32)
    for i in range(n):
        rng = np.random.default_rng([int(seed), int(start) + i])
        images[i], kps[i], vis[i], bbox[i], pose[i] = _one_face(rng, size, opts)
    w, h = bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]
    return ArrayDataset(spec=FACES_SPEC, images=images, keypoints=kps, visibility=vis, bbox=bbox, labels=None,
                        meta={"sqrt_wh": np.sqrt(w * h).astype(np.float32), "pose": pose})
