"""Parsers for face landmark formats.

* ``ibug_pts``: iBUG ``.pts`` files (300W; also any 68-point ``.pts`` release).
* ``ls3d``: 300W-LP ``landmarks/<SUBSET>/<name>_pts.mat`` (training) and the
  LS3D-W balanced test set (one Torch7 ``.t7`` tensor per image).
* ``celeba``: ``list_landmarks_align_celeba.txt`` (+ ``list_eval_partition.txt``);
  the MAFL train/test lists are used by the manifest's split rules.
* ``lmdis_mat``: the release format of Zhang et al. 2018 / Jakab et al. 2018
  (AFLW 5-point subset, Cat heads): ``<prefix>_<split>_images.txt`` +
  ``<prefix>_<split>_keypoints.mat`` with ``gt`` (N x K x 2, **(y, x)**) and ``hw``.
* ``aflw_cfss``: ``AFLWinfo_release.mat`` of Zhu et al. (CFSS), 19 points and
  the ``ra`` permutation defining the 20000/4386 split.
* ``multipie``: Multi-PIE 68-point annotations (``.pts`` or ``.mat``), with
  subject/session/recording/camera/illumination parsed from the file name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .records import (AnnotationError, Record, as_list, load_mat, mat_key, parse_numbers, read_lines,
                      register)
from .torch7 import read_t7

IMAGE_EXTS = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".bmp")


def find_image(stem_path: Path, exts: Sequence[str] = IMAGE_EXTS) -> Path:
    """The existing image file ``stem_path + ext`` (first match), else the ``.jpg`` path."""
    for ext in exts:
        p = stem_path.with_name(stem_path.name + ext)
        if p.is_file():
            return p
    return stem_path.with_name(stem_path.name + exts[0])


# ----------------------------------------------------------------------------- iBUG .pts


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG ``.pts`` file: header ``version``/``n_points``, then ``{ x y ... }``.

    Returns ``(n_points, 2)`` float32 in the file's coordinates (iBUG files are
    1-based: the manifest shifts them). Malformed content raises
    :class:`AnnotationError` naming the file and line.
    """
    path = Path(path)
    lines = read_lines(path)
    n_points = None
    i = 0
    while i < len(lines) and lines[i].strip() != "{":
        s = lines[i].strip()
        if s.lower().startswith("n_points"):
            try:
                n_points = int(s.split(":", 1)[1])
            except (IndexError, ValueError):
                raise AnnotationError(path, i + 1, f"bad n_points header {s!r}") from None
        elif s and not s.lower().startswith("version"):
            raise AnnotationError(path, i + 1, f"unexpected header line {s!r} (expected version/n_points/{{)")
        i += 1
    if i == len(lines):
        raise AnnotationError(path, len(lines), "no '{' opening the point list")
    if n_points is None:
        raise AnnotationError(path, i + 1, "no n_points header before '{'")
    pts = []
    i += 1
    while i < len(lines) and lines[i].strip() != "}":
        tok = lines[i].split()
        if len(tok) != 2:
            raise AnnotationError(path, i + 1, f"expected 'x y', got {lines[i].strip()!r}")
        pts.append(parse_numbers(path, i + 1, tok, "coordinate"))
        i += 1
    if i == len(lines):
        raise AnnotationError(path, len(lines), "no '}' closing the point list")
    if len(pts) != n_points:
        raise AnnotationError(path, i + 1, f"header says {n_points} points, found {len(pts)}")
    return np.asarray(pts, np.float32).reshape(-1, 2)


def write_pts(path: str | Path, pts: np.ndarray) -> None:
    """Write ``(N, 2)`` points as an iBUG ``.pts`` file."""
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in np.asarray(pts, float))
    Path(path).write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")


@register("ibug_pts")
def parse_ibug_pts(root: Path, *, subsets: Mapping[str, Mapping[str, str]], num_points: int = 68
                   ) -> list[Record]:
    """``.pts`` files grouped into named subsets.

    ``subsets = {name: {glob: 'helen/trainset/*.pts', split: 'train'}}``; the
    image is the file with the same stem (.jpg/.png). Meta: ``subset``,
    ``source_split``, ``stem``. No box is stored (the landmarks' box is used).
    """
    root = Path(root)
    records: list[Record] = []
    for subset, spec in subsets.items():
        files = sorted(root.glob(spec["glob"]))
        if not files:
            raise FileNotFoundError(f"300W subset {subset!r}: no files match {root / spec['glob']}")
        for p in files:
            pts = read_pts(p)
            if len(pts) != num_points:
                raise AnnotationError(p, None, f"{len(pts)} points, expected {num_points}")
            records.append(Record(image=find_image(p.with_suffix("")), keypoints=pts,
                                  visibility=np.ones(len(pts)),
                                  meta={"subset": subset, "source_split": spec.get("split", subset),
                                        "stem": p.stem, "annotation": str(p)}))
    return records


# ----------------------------------------------------------------------------- LS3D


@register("ls3d")
def parse_ls3d(root: Path, *, train_dir: str | None = "300W_LP", test_dir: str | None = "LS3D-W-balanced",
               points_key: str = "pts_3d", train_subsets: Sequence[str] = ("AFW", "HELEN", "IBUG", "LFPW")
               ) -> list[Record]:
    """LS3D protocol of Mallis et al.: 300W-LP for training, LS3D-W balanced for testing.

    Training: ``<train_dir>/landmarks/<SUBSET>/<name>_pts.mat`` holding
    ``pts_2d`` and ``pts_3d`` (68 x 2; ``pts_3d`` is the 2-D projection of the
    3-D-consistent points used by LS3D), image ``<train_dir>/<SUBSET>/<name>.jpg``.
    The ``_Flip`` copies have no landmark files and are not listed.
    Test: every ``<test_dir>/**/*.t7`` (a 68 x 2 or 68 x 3 tensor; x, y used)
    with the image of the same stem; the parent folder (yaw bucket, e.g.
    ``30-60``) goes to ``meta['yaw_bucket']``. Meta: ``source_split``, ``subset``.
    """
    root = Path(root)
    records: list[Record] = []
    if train_dir is not None:
        for subset in train_subsets:
            ldir = root / train_dir / "landmarks" / subset
            if not ldir.is_dir():
                raise FileNotFoundError(f"300W-LP landmark directory {ldir} does not exist")
            for p in sorted(ldir.glob("*_pts.mat")):
                pts = np.asarray(mat_key(load_mat(p), points_key, p), np.float64)
                if pts.shape != (68, 2):
                    raise AnnotationError(p, f"key {points_key!r}", f"expected 68x2, got {pts.shape}")
                stem = p.name[: -len("_pts.mat")]
                records.append(Record(image=find_image(root / train_dir / subset / stem), keypoints=pts,
                                      visibility=np.ones(68),
                                      meta={"source_split": "train", "subset": subset, "stem": stem,
                                            "annotation": str(p)}))
    if test_dir is not None:
        tdir = root / test_dir
        if not tdir.is_dir():
            raise FileNotFoundError(f"LS3D-W directory {tdir} does not exist")
        for p in sorted(tdir.rglob("*.t7")):
            arr = np.asarray(read_t7(p), np.float64)
            if arr.ndim != 2 or arr.shape[0] != 68 or arr.shape[1] < 2:
                raise AnnotationError(p, None, f"expected a 68x2 or 68x3 tensor, got {arr.shape}")
            records.append(Record(image=find_image(p.with_suffix("")), keypoints=arr[:, :2],
                                  visibility=np.ones(68),
                                  meta={"source_split": "test", "subset": "ls3d_w_balanced",
                                        "yaw_bucket": p.parent.name, "stem": p.stem, "annotation": str(p)}))
    return records


# ----------------------------------------------------------------------------- CelebA / MAFL

CELEBA_HEADER = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                 "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")


@register("celeba")
def parse_celeba(root: Path, *, landmarks: str = "Anno/list_landmarks_align_celeba.txt",
                 partition: str | None = "Eval/list_eval_partition.txt", image_dir: str = "Img/img_align_celeba",
                 image_size: Sequence[int] | None = (218, 178), box: str = "image") -> list[Record]:
    """CelebA aligned landmarks: ``list_landmarks_align_celeba.txt``.

    Line 1 is the image count, line 2 the ten column names, then
    ``000001.jpg x1 y1 ... x5 y5`` (left eye, right eye, nose, left and right
    mouth corners; "left" is the image left). ``partition`` adds
    ``meta['celeba_partition']`` (0 train, 1 val, 2 test). ``box='image'``
    uses the whole ``image_size`` = (H, W) frame (aligned images are 178 x 218);
    ``box='keypoints'`` uses the landmarks' box. Meta: ``file``.
    """
    root = Path(root)
    path = root / landmarks
    lines = read_lines(path)
    if len(lines) < 2:
        raise AnnotationError(path, 1, "expected a count line and a header line")
    try:
        count = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise AnnotationError(path, 1, f"expected the image count, got {lines[0]!r}") from None
    header = tuple(lines[1].split())
    if header != CELEBA_HEADER:
        raise AnnotationError(path, 2, f"unexpected column names {header}")
    parts: dict[str, int] = {}
    if partition is not None:
        ppath = root / partition
        for ln, line in enumerate(read_lines(ppath), 1):
            tok = line.split()
            if not tok:
                continue
            if len(tok) != 2 or not tok[1].lstrip("-").isdigit():
                raise AnnotationError(ppath, ln, f"expected 'name partition', got {line!r}")
            parts[tok[0]] = int(tok[1])
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    records: list[Record] = []
    for ln, line in enumerate(lines[2:], 3):
        tok = line.split()
        if not tok:
            continue
        if len(tok) != 11:
            raise AnnotationError(path, ln, f"expected a file name and 10 numbers, got {len(tok)} fields")
        kp = np.asarray(parse_numbers(path, ln, tok[1:], "coordinate"), np.float32).reshape(5, 2)
        bbox = None
        if box == "image":
            if size is None:
                raise ValueError("celeba: box='image' needs image_size")
            bbox = np.array([-0.5, -0.5, size[1] - 0.5, size[0] - 0.5])
        records.append(Record(image=root / image_dir / tok[0], keypoints=kp, visibility=np.ones(5), bbox=bbox,
                              meta={"file": tok[0], "celeba_partition": parts.get(tok[0], -1),
                                    "annotation": str(path), "line": ln},
                              image_size=size))
    if len(records) != count:
        raise AnnotationError(path, 1, f"header says {count} images, found {len(records)} lines")
    return records


# ----------------------------------------------------------------------------- lmdis release


@register("lmdis_mat")
def parse_lmdis_mat(root: Path, *, prefix: str, data_dir: str = ".", image_dir: str = "images",
                    splits: Sequence[str] = ("train", "test"), order: str = "yx", box: str = "image"
                    ) -> list[Record]:
    """Zhang et al. / Jakab et al. release: image lists + ``gt``/``hw`` ``.mat`` files.

    For each split: ``<data_dir>/<prefix>_<split>_images.txt`` (one relative
    image path per line) and ``<data_dir>/<prefix>_<split>_keypoints.mat`` with
    ``gt`` (N x K x 2, stored **(y, x)** by default: ``order='yx'``) and ``hw``
    (N x 2 image height and width). ``box='image'`` uses the whole image.
    Meta: ``source_split``, ``index`` (0-based position in the list), ``file``.
    """
    if order not in ("yx", "xy"):
        raise ValueError(f"lmdis_mat: order must be 'yx' or 'xy', got {order!r}")
    root = Path(root)
    records: list[Record] = []
    for split in splits:
        lpath = root / data_dir / f"{prefix}_{split}_images.txt"
        mpath = root / data_dir / f"{prefix}_{split}_keypoints.mat"
        names = [ln.strip() for ln in read_lines(lpath) if ln.strip()]
        mat = load_mat(mpath)
        gt = np.asarray(mat_key(mat, "gt", mpath), np.float64)
        hw = np.asarray(mat_key(mat, "hw", mpath), np.float64)
        if gt.ndim == 2:
            gt = gt[None]
        if hw.ndim == 1:
            hw = hw[None]
        if gt.ndim != 3 or gt.shape[0] != len(names) or gt.shape[2] != 2:
            raise AnnotationError(mpath, "key 'gt'", f"expected {len(names)}xKx2 to match {lpath.name}, "
                                  f"got {gt.shape}")
        if hw.shape != (len(names), 2):
            raise AnnotationError(mpath, "key 'hw'", f"expected {len(names)}x2, got {hw.shape}")
        pts = gt[:, :, ::-1] if order == "yx" else gt
        for i, name in enumerate(names):
            h, w = int(hw[i, 0]), int(hw[i, 1])
            bbox = np.array([-0.5, -0.5, w - 0.5, h - 0.5]) if box == "image" else None
            records.append(Record(image=root / image_dir / name, keypoints=pts[i], visibility=np.ones(gt.shape[1]),
                                  bbox=bbox, meta={"source_split": split, "index": i, "file": name,
                                                   "annotation": str(mpath)},
                                  image_size=(h, w)))
    return records


# ----------------------------------------------------------------------------- AFLW (CFSS)


@register("aflw_cfss")
def parse_aflw_cfss(root: Path, *, mat_file: str = "AFLWinfo_release.mat", image_dir: str = "flickr"
                    ) -> list[Record]:
    """AFLW 19-point annotations as released with CFSS (``AFLWinfo_release.mat``).

    Keys: ``data`` (N x 38: the 19 x then the 19 y), ``mask_new`` (N x 19, 1 =
    annotated), ``bbox`` (N x 4 as x0, x1, y0, y1), ``nameList`` (N image paths
    relative to ``image_dir``), ``ra`` (a 1-based permutation; ``ra[:20000]``
    are the training indices of the usual 20000/4386 split). Meta: ``index``
    (1-based), ``ra_rank`` (1-based position of the index in ``ra``).
    """
    root = Path(root)
    path = root / mat_file
    mat = load_mat(path)
    data = np.atleast_2d(np.asarray(mat_key(mat, "data", path), np.float64))
    n = data.shape[0]
    if data.shape[1] != 38:
        raise AnnotationError(path, "key 'data'", f"expected Nx38, got {data.shape}")
    mask = np.atleast_2d(np.asarray(mat_key(mat, "mask_new", path), np.float64))
    bbox = np.atleast_2d(np.asarray(mat_key(mat, "bbox", path), np.float64))
    names = [str(s).strip() for s in as_list(mat_key(mat, "nameList", path))]
    ra = np.asarray(as_list(mat_key(mat, "ra", path)), np.int64)
    for key, arr, shape in (("mask_new", mask, (n, 19)), ("bbox", bbox, (n, 4))):
        if arr.shape != shape:
            raise AnnotationError(path, f"key {key!r}", f"expected {shape}, got {arr.shape}")
    if len(names) != n:
        raise AnnotationError(path, "key 'nameList'", f"expected {n} names, got {len(names)}")
    if sorted(ra.tolist()) != list(range(1, n + 1)):
        raise AnnotationError(path, "key 'ra'", f"is not a permutation of 1..{n}")
    rank = np.empty(n, np.int64)
    rank[ra - 1] = np.arange(1, n + 1)
    records = []
    for i in range(n):
        kp = np.stack([data[i, :19], data[i, 19:]], axis=1)
        x0, x1, y0, y1 = bbox[i]
        records.append(Record(image=root / image_dir / names[i], keypoints=kp,
                              visibility=(mask[i] > 0).astype(np.float32), bbox=np.array([x0, y0, x1, y1]),
                              meta={"index": i + 1, "ra_rank": int(rank[i]), "annotation": str(path)}))
    return records


# ----------------------------------------------------------------------------- Multi-PIE

MULTIPIE_EXPRESSIONS = ("neutral", "smile", "surprise", "squint", "disgust", "scream")
# (session, recording) -> expression, from Gross et al. 2010 (Multi-PIE), Table 1.
MULTIPIE_SESSION_EXPRESSION = {
    (1, 1): "neutral", (1, 2): "smile",
    (2, 1): "neutral", (2, 2): "surprise", (2, 3): "squint",
    (3, 1): "neutral", (3, 2): "smile", (3, 3): "disgust",
    (4, 1): "neutral", (4, 2): "neutral", (4, 3): "scream",
}
_MULTIPIE_NAME = re.compile(r"(\d{3})_(\d{2})_(\d{2})_(\d{3})_(\d{2})")


@register("multipie")
def parse_multipie(root: Path, *, landmark_glob: str = "landmarks/**/*", image_dir: str = "images",
                   cameras: Sequence[str] = ("051", "050", "140", "041", "130"), mat_key_name: str = "pts",
                   illumination: int | str | None = None, seed: int = 0) -> list[Record]:
    """Multi-PIE 68-point annotations, one ``.pts`` or ``.mat`` (``pts``, 68 x 2) per image.

    The file name carries ``<subject>_<session>_<recording>_<camera>_<illumination>``
    (e.g. ``001_01_01_051_07_lm.mat``); the image is
    ``<image_dir>/<same five fields>.png`` (searched recursively). Label =
    expression index in ``MULTIPIE_EXPRESSIONS`` (from session and recording);
    ``meta['camera_class']`` = index of the camera in ``cameras`` (the five of
    Honari et al.: frontal 05_1, +-15 deg 05_0 / 14_0, +-30 deg 04_1 / 13_0);
    other cameras are skipped. Meta: ``subject`` (int), ``session``, ``recording``,
    ``camera``, ``illumination``, ``expression``. ``illumination``: None keeps
    every annotated image, an int keeps that illumination only, ``"random"``
    keeps one illumination drawn with ``numpy.random.default_rng(seed)`` per
    (subject, session, recording, camera), as Honari et al. describe.
    """
    root = Path(root)
    images = {}
    idir = root / image_dir
    if idir.is_dir():
        for p in idir.rglob("*"):
            m = _MULTIPIE_NAME.search(p.name)
            if m and p.suffix.lower() in (".png", ".jpg"):
                images[m.group(0)] = p
    records = []
    files = sorted(p for p in root.glob(landmark_glob) if p.suffix in (".pts", ".mat"))
    if not files:
        raise FileNotFoundError(f"Multi-PIE: no .pts/.mat files match {root / landmark_glob}")
    for p in files:
        m = _MULTIPIE_NAME.search(p.name)
        if m is None:
            raise AnnotationError(p, None, "file name lacks subject_session_recording_camera_illumination")
        subj, sess, rec, cam, ill = m.groups()
        if cam not in cameras:
            continue
        expr = MULTIPIE_SESSION_EXPRESSION.get((int(sess), int(rec)))
        if expr is None:
            raise AnnotationError(p, None, f"unknown session/recording {sess}/{rec}")
        pts = read_pts(p) if p.suffix == ".pts" else np.asarray(mat_key(load_mat(p), mat_key_name, p), np.float64)
        if pts.shape != (68, 2):
            raise AnnotationError(p, None, f"expected 68x2 points, got {pts.shape}")
        image = images.get(m.group(0), idir / f"{m.group(0)}.png")
        records.append(Record(image=image, keypoints=pts, visibility=np.ones(68),
                              label=MULTIPIE_EXPRESSIONS.index(expr),
                              meta={"subject": int(subj), "session": int(sess), "recording": int(rec),
                                    "camera": cam, "camera_class": list(cameras).index(cam),
                                    "illumination": int(ill), "expression": expr, "annotation": str(p)}))
    if illumination is None:
        return records
    if illumination != "random":
        return [r for r in records if r.meta["illumination"] == int(illumination)]
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault(tuple(r.meta[k] for k in ("subject", "session", "recording", "camera")), []).append(r)
    rng = np.random.default_rng(seed)
    keep = {id(g[int(rng.integers(len(g)))]) for _, g in sorted(groups.items())}
    return [r for r in records if id(r) in keep]

