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
  side turns away from the camera); pitch > 0 tilts the chin towards the camera
  side of ``-Y`` ... see :func:`rotation_matrix`; roll is in-plane.
* Visibility is 0 for landmarks whose surface normal faces away from the
  camera (camera-frame ``n_z <= 0``, normals of the ellipsoid; the nose tip and
  nostrils carry their own normals) -- so self-occlusion by the nose itself is
  not modelled -- and for landmarks outside the frame.
* ``bbox`` is the tight box around all 20 projected landmarks (visible or
  not); ``meta['sqrt_wh']`` is ``sqrt(w * h)`` of that box (the large-pose NME
  normaliser); ``meta['pose']`` holds ``(yaw, pitch, roll)`` in degrees. The
  spec's normaliser is ``'inter_ocular'`` (outer eye corners, 2-D distance,
  which shrinks at large yaw -- use ``sqrt_wh`` there). ``labels`` is None.

Sample ``i`` is generated from its own ``np.random.default_rng([seed, i])``.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from landmark_study.data.sample import ArrayDataset, DatasetSpec
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
    "yaw": 90.0,  # max |yaw|, degrees (uniform)
    "pitch": 30.0,  # max |pitch|
    "roll": 30.0,  # max |roll|
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
    for key, hi in (("yaw", 90.0), ("pitch", 60.0), ("roll", 180.0)):
        if not 0.0 <= float(opts[key]) <= hi:
            raise ValueError(f"generate_faces: option {key!r} must be in [0, {hi}] degrees, got {opts[key]!r}")
    for key in ("head_width", "clutter", "blur", "noise"):
        lo_hi = opts[key]
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1] or lo_hi[0] < 0:
            raise ValueError(f"generate_faces: option {key!r} must be a (low, high) pair with 0 <= low <= high, got {lo_hi!r}")
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


def _face_model(rng: np.random.Generator):
    """Identity + expression: head axes, 3-D landmarks (20, 3), their normals, and drawing points."""
    axes = np.array([rng.uniform(0.92, 1.05), rng.uniform(1.22, 1.38), rng.uniform(1.0, 1.15)])
    t = _TEMPLATE.copy()
    # identity
    eye_sp = rng.uniform(0.9, 1.1)
    t[4:8, 0] *= eye_sp
    t[0:4, 0] *= eye_sp * rng.uniform(0.95, 1.08)
    t[0:8, 1] += rng.uniform(-0.06, 0.06)
    nose_len = rng.uniform(0.85, 1.15)
    t[8:11, 1] = -0.12 + (t[8:11, 1] + 0.12) * nose_len
    t[8, 2] *= rng.uniform(0.8, 1.2)
    mouth_w = rng.uniform(0.85, 1.15)
    t[11:13, 0] *= mouth_w
    t[11:15, 1] += rng.uniform(-0.05, 0.05)
    t[16:18, 0] *= rng.uniform(0.92, 1.05)
    t[:, :2] += rng.normal(0, 0.015, (20, 2))
    # expression
    smile = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
    mouth_open = rng.uniform(0.1, 1) if rng.random() < 0.4 else 0.0
    brows = rng.uniform(-0.04, 0.1)
    t[11:13, 0] *= 1 + 0.15 * smile
    t[11:13, 1] -= 0.07 * smile
    t[14, 1] += 0.22 * mouth_open
    t[15, 1] += 0.08 * mouth_open
    t[0:4, 1] -= brows
    t[[0, 3], 1] -= 0.04 * rng.uniform(-1, 1)
    # clip X, Y inside the ellipsoid outline and put Z on the surface plus protrusion
    lm = np.zeros((20, 3))
    lm[:, :2] = t[:, :2]
    surf = _on_surface(lm[:, :2], axes)
    lm[:, 2] = surf + t[:, 2]
    normals = _normals(np.stack([lm[:, 0], lm[:, 1], surf], axis=1), axes)
    normals[8] = np.array([0.0, 0.15, 1.0]) / math.hypot(0.15, 1.0)  # nose tip
    for k, s in ((9, -1.0), (10, 1.0)):  # nostrils look outwards, down and forwards
        normals[k] = np.array([0.55 * s, 0.55, 0.63]) / math.sqrt(0.55**2 * 2 + 0.63**2)
    # extra drawing points (head frame): eye lids, nose bridge/wings, lip contours
    ex = {}
    for side, (o, i) in (("r", (4, 5)), ("l", (7, 6))):
        po, pi = lm[o, :2], lm[i, :2]
        mid = 0.5 * (po + pi)
        d = pi - po
        up = rng.uniform(0.09, 0.12) * np.linalg.norm(d) / 0.38
        lid = []
        for f, dy in ((0.28, -up * 0.8), (0.62, -up), (0.62, up * 0.6), (0.28, up * 0.55)):
            lid.append(po + f * d + np.array([0.0, dy]))
        ex[f"eye_{side}"] = np.array([po, lid[0], lid[1], pi, lid[2], lid[3]])
        ex[f"iris_{side}"] = mid + np.array([0.0, -0.01])
        ex[f"brow_{side}"] = np.array([lm[0 if side == "r" else 3, :2],
                                       0.5 * (lm[0 if side == "r" else 3, :2] + lm[1 if side == "r" else 2, :2])
                                       + np.array([0.0, -0.05]),
                                       lm[1 if side == "r" else 2, :2]])
    mc_r, mc_l, ul, ll = lm[11, :2], lm[12, :2], lm[13, :2], lm[14, :2]
    ex["lips"] = np.array([mc_r, 0.5 * (mc_r + ul) + [0, -0.03], ul, 0.5 * (mc_l + ul) + [0, -0.03], mc_l,
                           0.5 * (mc_l + ll) + [0, 0.02], ll, 0.5 * (mc_r + ll) + [0, 0.02]])
    gap = mouth_open * 0.18
    ex["mouth_in"] = np.array([mc_r + [0.03, 0], ul + [0, 0.035], mc_l + [-0.03, 0], ul + [0, 0.035 + gap]])
    ex["nose"] = np.array([[0.0, -0.10], lm[9, :2] + [-0.05, -0.05], [0.0, lm[9, 1] + 0.04],
                           lm[10, :2] + [0.05, -0.05]])
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
    return axes, lm, normals, ex, colours, style, (smile, mouth_open, brows)


def _to3d(xy: np.ndarray, axes: np.ndarray, prot: float = 0.0) -> np.ndarray:
    xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
    return np.concatenate([xy, (_on_surface(xy, axes) + prot)[:, None]], axis=1)


def _clutter(rng: np.random.Generator, img: np.ndarray, size: int, count: int) -> None:
    """Corner-rich background shapes: rectangles, triangles, checker patches, bars."""
    for _ in range(count):
        kind = int(rng.integers(0, 4))
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        c = rng.uniform(-0.05, 1.05, 2) * size
        s = rng.uniform(0.08, 0.3) * size
        th = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        if kind == 0:
            w, h = s * rng.uniform(0.5, 1.0), s * rng.uniform(0.3, 1.0)
            poly = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.5
        elif kind == 1:
            poly = rng.uniform(-0.6, 0.6, (3, 2)) * s
        elif kind == 2:  # 2x2 checker patch: an X-junction
            col2 = tuple(float(v) for v in rng.uniform(0, 255, 3))
            q = s * 0.4
            for (dx, dy), cc in (((0, 0), col), ((1, 1), col), ((1, 0), col2), ((0, 1), col2)):
                sq = np.array([[dx - 1, dy - 1], [dx, dy - 1], [dx, dy], [dx - 1, dy]], dtype=np.float64) * q
                cv2.fillPoly(img, [_pts(sq @ rot.T + c)], cc, cv2.LINE_AA, _SHIFT)
            continue
        else:  # bar
            w, h = s * rng.uniform(0.8, 1.4), s * rng.uniform(0.06, 0.15)
            poly = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.5
        cv2.fillPoly(img, [_pts(poly @ rot.T + c)], col, cv2.LINE_AA, _SHIFT)


def _one_face(rng: np.random.Generator, size: int, opts: dict[str, Any]):
    side2 = 2 * size
    axes, lm, normals, ex, col, style, _expr = _face_model(rng)
    yaw = float(rng.uniform(-1, 1) * opts["yaw"])
    pitch = float(rng.uniform(-1, 1) * opts["pitch"])
    roll = float(rng.uniform(-1, 1) * opts["roll"])
    rot = rotation_matrix(yaw, pitch, roll)
    scale = rng.uniform(*opts["head_width"]) * size / (2 * axes[0])  # px per head unit
    centre = size * (0.5 + rng.uniform(-0.08, 0.08, 2)) - 0.5
    centre[1] -= 0.35 * scale  # centre the landmarks (brows to chin), not the skull

    def proj(p3: np.ndarray) -> np.ndarray:
        pc = np.atleast_2d(p3) @ rot.T
        return np.stack([centre[0] + scale * pc[:, 0], centre[1] + scale * pc[:, 1], pc[:, 2]], axis=1)

    kp = proj(lm)
    n_cam = normals @ rot.T
    vis = (n_cam[:, 2] > 0).astype(np.float32)

    # background, clutter, shoulders and neck
    img = colour_noise_background(rng, side2)
    _clutter(rng, img, size, int(rng.integers(opts["clutter"][0], opts["clutter"][1] + 1)))
    neck = proj(np.array([[0.0, 0.9, -0.2]]))[0, :2]
    neck_bottom = neck + np.array([0.0, 1.2 * scale])
    skin_shade = tuple(float(v) for v in col["skin"] * 0.8)
    cv2.line(img, tuple(_pts(neck[None])[0]), tuple(_pts(neck_bottom[None])[0]), skin_shade,
             int(2 * 0.95 * scale), cv2.LINE_AA, _SHIFT)
    sh_c = _pts(neck_bottom[None] + np.array([[0.0, 1.0 * scale]]))[0]
    cv2.ellipse(img, tuple(sh_c), (int(2 * 2.6 * scale * _ONE), int(2 * 1.2 * scale * _ONE)), 0, 0, 360,
                tuple(float(v) for v in col["shirt"]), -1, cv2.LINE_AA, _SHIFT)
    # ears (behind the head outline)
    for s in (-1.0, 1.0):
        en = rot @ np.array([s, 0.0, -0.2])
        if en[2] > -0.6:
            ec = np.array([s * axes[0] * 0.97, 0.05, -0.12])
            u1 = np.array([0.0, 1.0, 0.0]) * 0.28
            u2 = np.array([0.0, 0.0, 1.0]) * 0.16
            ts = np.linspace(0, 2 * math.pi, 10, endpoint=False)
            ring = ec + np.cos(ts)[:, None] * u1 + np.sin(ts)[:, None] * u2 + np.array([s * 0.08, 0, 0])
            cv2.fillPoly(img, [_pts(proj(ring))], tuple(float(v) for v in col["skin"] * 0.85), cv2.LINE_AA, _SHIFT)

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
    def visible(xy: np.ndarray, prot: float = 0.0) -> bool:
        p = _to3d(xy, axes, prot).mean(axis=0)
        return float((rot @ _normals(p[None], axes)[0])[2]) > 0.05

    dark = tuple(float(v) for v in np.clip(col["hair"] * 0.6, 0, 255))
    brow_t = max(1, int(2 * 0.055 * scale))
    for side in ("r", "l"):
        brow = ex[f"brow_{side}"]
        if visible(brow):
            cv2.polylines(head, [_pts(proj(_to3d(brow, axes, 0.02)))], False, dark, brow_t, cv2.LINE_AA, _SHIFT)
        eye = ex[f"eye_{side}"]
        if visible(eye):
            poly = _pts(proj(_to3d(eye, axes)))
            cv2.fillPoly(head, [poly], (235, 235, 230), cv2.LINE_AA, _SHIFT)
            # iris: a circle on the eye's tangent plane
            ic = _to3d(ex[f"iris_{side}"], axes)[0]
            n = _normals(ic[None], axes)[0]
            u1 = np.cross(n, [0.0, 1.0, 0.0])
            u1 /= np.linalg.norm(u1)
            u2 = np.cross(n, u1)
            ts = np.linspace(0, 2 * math.pi, 10, endpoint=False)
            ring = ic + 0.065 * (np.cos(ts)[:, None] * u1 + np.sin(ts)[:, None] * u2)
            cv2.fillPoly(head, [_pts(proj(ring))], tuple(float(v) for v in col["iris"]), cv2.LINE_AA, _SHIFT)
            cv2.polylines(head, [poly[:4]], False, (25, 20, 20), max(1, int(2 * 0.03 * scale)), cv2.LINE_AA, _SHIFT)
    lips = ex["lips"]
    if visible(lips, 0.06):
        cv2.fillPoly(head, [_pts(proj(_to3d(lips, axes, 0.06)))], tuple(float(v) for v in col["lips"]),
                     cv2.LINE_AA, _SHIFT)
        inner = _pts(proj(_to3d(ex["mouth_in"], axes, 0.06)))
        cv2.fillPoly(head, [inner], (40, 10, 15), cv2.LINE_AA, _SHIFT)
    cv2.copyTo(head, mask, img)

    # nose (may stick out of the silhouette) and nostrils
    nose3 = np.concatenate([_to3d(ex["nose"], axes, 0.05), lm[8:9]])
    nose_p = proj(nose3)
    hull = cv2.convexHull(_pts(nose_p))
    ns = float(np.clip(0.45 + 0.6 * max(0.0, float((rot @ np.array([0.0, 0.1, 1.0]))[:3] @ light)), 0, 1.2))
    cv2.fillPoly(img, [hull], tuple(float(v) for v in np.clip(col["skin"] * ns, 0, 255)), cv2.LINE_AA, _SHIFT)
    cv2.polylines(img, [hull], True, tuple(float(v) for v in col["skin"] * 0.55), max(1, int(2 * 0.025 * scale)),
                  cv2.LINE_AA, _SHIFT)
    for k in (9, 10):
        if vis[k]:
            r = int(2 * 0.045 * scale * max(0.3, n_cam[k, 2]) * _ONE) + 1
            cv2.circle(img, tuple(_pts(kp[k:k + 1])[0]), r, (35, 15, 15), -1, cv2.LINE_AA, _SHIFT)

    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(*opts["blur"])
    if sigma > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = add_pixel_noise(rng, out, float(rng.uniform(*opts["noise"])))

    xy = kp[:, :2]
    inside = (xy >= -0.5).all(axis=1) & (xy <= size - 0.5).all(axis=1)
    vis[~inside] = 0
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    bbox = np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float32)
    return out, xy.astype(np.float32), vis, bbox, np.array([yaw, pitch, roll], np.float32)


def generate_faces(n: int, seed: int, size: int = 64, **options: Any) -> ArrayDataset:
    """Generate ``n`` face images of ``size`` x ``size`` pixels (see module doc).

    ``options`` override :data:`DEFAULT_OPTIONS`. Sample ``i`` uses
    ``np.random.default_rng([seed, i])``. Returns an :class:`ArrayDataset`
    (``labels`` None) with ``meta['sqrt_wh']`` (N,) and ``meta['pose']`` (N, 3).
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"generate_faces: n must be a non-negative int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 256:
        raise ValueError(f"generate_faces: size must be an int in [16, 256], got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"generate_faces: seed must be a non-negative int, got {seed!r}")
    opts = _check_options(options)
    size = int(size)
    images = np.zeros((n, size, size, 3), np.uint8)
    kps = np.zeros((n, 20, 2), np.float32)
    vis = np.zeros((n, 20), np.float32)
    bbox = np.zeros((n, 4), np.float32)
    pose = np.zeros((n, 3), np.float32)
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        images[i], kps[i], vis[i], bbox[i], pose[i] = _one_face(rng, size, opts)
    w, h = bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]
    return ArrayDataset(spec=FACES_SPEC, images=images, keypoints=kps, visibility=vis, bbox=bbox, labels=None,
                        meta={"sqrt_wh": np.sqrt(w * h).astype(np.float32), "pose": pose})
