"""Records: parsed annotations, split selection, and a lazy image dataset.

A :class:`Record` is one annotated object (a person, a bird, a face) in one image
file, in the package conventions: keypoints ``(K, 2)`` float32 ``(x, y)`` pixels
with pixel centres at integers, visibility ``(K,)`` float32 in {0, 1}, bbox
``(x0, y0, x1, y1)``. Every parser in :mod:`landmark_study.data.real` returns a
flat list of records carrying enough ``meta`` (source partition, class, video,
frame, subject, ...) for :func:`select_split` to cut the splits each paper used,
as written in the dataset's manifest.

``visibility`` means *annotated, counts for losses and metrics*. Where a format
also flags occlusion of annotated joints (LSP, MPII, COCO ``v=1``), the raw flag
is kept in ``meta['occluded']``.

:class:`RecordDataset` loads images lazily with OpenCV, crops the (padded) box,
resizes to a fixed size and returns :class:`~landmark_study.data.sample.Sample`;
:meth:`RecordDataset.to_arrays` stacks everything into an
:class:`~landmark_study.data.sample.ArrayDataset`.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from landmark_study.data.sample import ArrayDataset, DatasetSpec, Sample

OUT_OF_IMAGE_POLICIES = ("warn", "error", "ignore")


class AnnotationError(ValueError):
    """A malformed annotation; the message names the file and the line or key."""

    def __init__(self, path: str | os.PathLike, where: str | int | None, message: str):
        self.path = str(path)
        self.where = where
        loc = "" if where is None else (f", line {where}" if isinstance(where, int) else f", {where}")
        super().__init__(f"{self.path}{loc}: {message}")


class OutOfImageWarning(UserWarning):
    """Keypoints lie outside their image; they were marked not visible."""


class SplitCountWarning(UserWarning):
    """A split selected a different number of records than the paper reports."""


@dataclass
class Record:
    """One annotated object in one image file.

    ``image`` is an absolute path; ``bbox`` may be ``None`` (then the box of
    the visible keypoints, or the whole image when none is visible, is used);
    ``image_size`` is ``(H, W)`` when the annotation states it.
    """

    image: Path
    keypoints: np.ndarray
    visibility: np.ndarray
    bbox: np.ndarray | None = None
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.image = Path(self.image)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(-1, 2)
        self.visibility = np.asarray(self.visibility, dtype=np.float32).reshape(-1)
        if self.visibility.shape[0] != self.keypoints.shape[0]:
            raise ValueError(f"{self.image}: {self.keypoints.shape[0]} keypoints but "
                             f"{self.visibility.shape[0]} visibility flags")
        if self.bbox is not None:
            self.bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)

    @property
    def key(self) -> tuple[str, Any]:
        """Identity used by split exclusion: image path and instance id."""
        return (str(self.image), self.meta.get("instance", 0))

    def box(self) -> np.ndarray:
        """The annotated box, else the box of visible keypoints, else the image."""
        if self.bbox is not None:
            return self.bbox
        vis = self.visibility > 0
        if vis.any():
            p = self.keypoints[vis]
            return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], np.float32)
        if self.image_size is not None:
            h, w = self.image_size
            return np.array([-0.5, -0.5, w - 0.5, h - 0.5], np.float32)
        raise ValueError(f"{self.image}: no bbox, no visible keypoint and no image size to make a box from")


def unlabelled(record: Record) -> Record:
    """A copy of ``record`` with every keypoint marked not annotated."""
    meta = dict(record.meta)
    meta["labelled"] = False
    return Record(record.image, record.keypoints.copy(), np.zeros_like(record.visibility),
                  None if record.bbox is None else record.bbox.copy(), record.label, meta, record.image_size)


def check_in_image(records: Iterable[Record], policy: str = "warn", source: str | None = None) -> int:
    """Mark keypoints outside their image as not visible; return how many were.

    Only records whose ``image_size`` is known are checked (the image spans
    ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``). ``policy``: ``"warn"`` (default)
    sets visibility 0 and emits one :class:`OutOfImageWarning` naming the first
    cases; ``"error"`` raises :class:`AnnotationError`; ``"ignore"`` only
    marks them.
    """
    if policy not in OUT_OF_IMAGE_POLICIES:
        raise ValueError(f"out_of_image policy {policy!r}; known: {', '.join(OUT_OF_IMAGE_POLICIES)}")
    count = 0
    examples: list[str] = []
    for r in records:
        if r.image_size is None:
            continue
        h, w = r.image_size
        x, y = r.keypoints[:, 0], r.keypoints[:, 1]
        bad = (r.visibility > 0) & ((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5))
        if not bad.any():
            continue
        idx = np.flatnonzero(bad)
        where = r.meta.get("annotation", source or str(r.image))
        what = (f"keypoint(s) {idx.tolist()} of {r.image.name} lie outside the {w}x{h} image, "
                f"e.g. ({x[idx[0]]:.1f}, {y[idx[0]]:.1f})")
        if policy == "error":
            raise AnnotationError(where, r.meta.get("line"), what + " (out_of_image='error')")
        msg = f"{where}: {what}"
        r.visibility[idx] = 0.0
        count += len(idx)
        if len(examples) < 3:
            examples.append(msg)
    if count and policy == "warn":
        warnings.warn(f"{count} keypoint(s) outside their image were marked not visible; "
                      + "; ".join(examples), OutOfImageWarning, stacklevel=2)
    return count


# --------------------------------------------------------------------------- splits

SPLIT_RULE_OPS = ("in", "not_in", "range", "regex", "not_regex", "in_file", "not_in_file")


def _read_list_file(path: Path) -> set[str]:
    if not path.is_file():
        raise FileNotFoundError(f"split list file {path} does not exist")
    out = set()
    for line in path.read_text().splitlines():
        tok = line.split()
        if tok:
            out.add(tok[0])
    return out


def _match(value: Any, rule: Any, key: str, root: Path | None, cache: dict) -> bool:
    if not isinstance(rule, Mapping):
        return value == rule
    if len(rule) != 1:
        raise ValueError(f"split rule for {key!r} must have one operator, got {sorted(rule)}")
    (op, arg), = rule.items()
    if op == "in":
        return value in arg
    if op == "not_in":
        return value not in arg
    if op == "range":
        lo, hi = arg
        return value is not None and lo <= value <= hi
    if op in ("regex", "not_regex"):
        hit = re.search(arg, str(value)) is not None
        return hit if op == "regex" else not hit
    if op in ("in_file", "not_in_file"):
        if root is None:
            raise ValueError(f"split rule {op} for {key!r} needs the dataset root")
        path = root / arg
        if path not in cache:
            cache[path] = _read_list_file(path)
        hit = str(value) in cache[path]
        return hit if op == "in_file" else not hit
    raise ValueError(f"unknown split rule operator {op!r} for {key!r}; known: {', '.join(SPLIT_RULE_OPS)}")


def _take(n: int, bound: int | float) -> int:
    if isinstance(bound, float) and 0.0 <= bound <= 1.0:
        return int(round(bound * n))
    return min(int(bound), n)


def select_split(records: Sequence[Record], rule: Mapping[str, Any], *, root: Path | None = None,
                 splits: Mapping[str, Sequence[Record]] | None = None, name: str = "split") -> list[Record]:
    """Records selected by one manifest split rule, in a deterministic order.

    ``rule`` keys (all optional): ``where`` ({meta key: value or
    {in|not_in|range|regex|not_regex|in_file|not_in_file: arg}}; ``image`` and
    ``label`` are usable keys too), ``every`` ({key, n, offset}: keep
    ``meta[key] % n == offset``), ``exclude`` (names of splits already
    selected, given in ``splits``), ``random`` ({seed, take: [start, stop]}:
    permute with ``numpy.random.default_rng(seed)`` and slice; floats in [0, 1]
    are fractions), ``labelled`` (false: strip the keypoints, an unlabeled pool).
    """
    cache: dict = {}
    out = list(records)
    where = rule.get("where") or {}
    if where:
        kept = []
        for r in out:
            ok = True
            for key, cond in where.items():
                if key == "image":
                    value: Any = r.image.name
                elif key == "label":
                    value = r.label
                else:
                    if key not in r.meta:
                        raise KeyError(f"{name}: split rule uses meta key {key!r} that records of "
                                       f"{r.image} lack; they have {sorted(r.meta)}")
                    value = r.meta[key]
                if not _match(value, cond, key, root, cache):
                    ok = False
                    break
            if ok:
                kept.append(r)
        out = kept
    every = rule.get("every")
    if every:
        key, n, off = every["key"], int(every["n"]), int(every.get("offset", 0))
        out = [r for r in out if int(r.meta[key]) % n == off]
    for other in rule.get("exclude") or ():
        if splits is None or other not in splits:
            raise KeyError(f"{name}: excludes split {other!r}, which is not selected before it")
        keys = {r.key for r in splits[other]}
        out = [r for r in out if r.key not in keys]
    rnd = rule.get("random")
    if rnd:
        perm = np.random.default_rng(int(rnd["seed"])).permutation(len(out))
        start, stop = rnd.get("take", [0, len(out)])
        out = [out[i] for i in perm[_take(len(out), start):_take(len(out), stop)]]
    if rule.get("labelled", True) is False:
        out = [unlabelled(r) for r in out]
    expected = rule.get("expected_count")
    if expected is not None and len(out) != expected:
        warnings.warn(f"{name}: selected {len(out)} records, the paper reports {expected}", SplitCountWarning,
                      stacklevel=2)
    return out


# --------------------------------------------------------------------------- images


def read_image(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; a clear error when missing."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist (is the dataset fully extracted?)")
    data = path.read_bytes()
    check_image_complete(data, path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"image file {path} could not be decoded by OpenCV")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_image_complete(data: bytes, path: Path) -> None:
    """Refuse truncated JPEG/PNG files (OpenCV would silently decode the part it got)."""
    if data[:2] == b"\xff\xd8":
        if data.rstrip(b"\x00\r\n ")[-2:] != b"\xff\xd9":
            raise ValueError(f"image file {path} is truncated (JPEG without its end marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            raise ValueError(f"image file {path} is truncated (PNG without its IEND chunk)")


def crop_box(box: np.ndarray, padding: float, aspect: float | None) -> np.ndarray:
    """Pad ``box`` (x0, y0, x1, y1) by ``padding`` x its size on each side; grow it to ``aspect`` = w/h."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w = max(x1 - x0, 1.0) * (1 + 2 * padding)
    h = max(y1 - y0, 1.0) * (1 + 2 * padding)
    if aspect is not None:
        if w / h < aspect:
            w = h * aspect
        else:
            h = w / aspect
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


def crop_transform(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """3x3 matrix mapping image pixel coords to output pixel coords.

    The crop region's edges ``[x0, x1]`` map onto the output's edges
    ``[-0.5, W_out - 0.5]`` (pixel centres at integers on both sides).
    """
    h_out, w_out = size
    x0, y0, x1, y1 = crop
    sx, sy = w_out / (x1 - x0), h_out / (y1 - y0)
    return np.array([[sx, 0, -x0 * sx - 0.5], [0, sy, -y0 * sy - 0.5], [0, 0, 1]], np.float64)


def apply_transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine ``m`` to points ``(..., 2)``."""
    pts = np.asarray(pts, np.float64)
    return pts @ m[:2, :2].T + m[:2, 2]


class RecordDataset:
    """Lazy dataset of :class:`Record` -> :class:`Sample` at a fixed size.

    Each item reads its image (OpenCV), pads its box by ``padding`` (a fraction
    of the box size on each side), grows it to the output aspect when
    ``keep_aspect``, warps the crop to ``size`` = (H, W) with zero borders, and
    maps keypoints, bbox and ``meta['head_box']`` with the same matrix (kept in
    ``meta['transform']``). Keypoints that fall outside the output are marked
    not visible. ``out_of_image`` applies :func:`check_in_image` to the loaded
    image's size.
    """

    def __init__(self, records: Sequence[Record], spec: DatasetSpec, size: tuple[int, int] = (256, 256),
                 padding: float = 0.1, keep_aspect: bool = True, out_of_image: str = "warn"):
        if out_of_image not in OUT_OF_IMAGE_POLICIES:
            raise ValueError(f"out_of_image policy {out_of_image!r}; known: {', '.join(OUT_OF_IMAGE_POLICIES)}")
        self.records = list(records)
        self.spec = spec
        self.size = (int(size[0]), int(size[1]))
        self.padding = float(padding)
        self.keep_aspect = keep_aspect
        self.out_of_image = out_of_image
        for r in self.records:
            if r.keypoints.shape[0] != spec.num_keypoints:
                raise ValueError(f"{r.image}: {r.keypoints.shape[0]} keypoints, spec {spec.name!r} "
                                 f"declares {spec.num_keypoints}")

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, i: int, size: tuple[int, int] | None = None) -> Sample:
        """The ``i``-th record as a :class:`Sample` of ``size`` (default ``self.size``)."""
        import cv2

        r = self.records[i]
        size = self.size if size is None else (int(size[0]), int(size[1]))
        img = read_image(r.image)
        h, w = img.shape[:2]
        vis = r.visibility.copy()
        if r.image_size is not None and tuple(r.image_size) != (h, w):
            warnings.warn(f"{r.image}: annotation says {r.image_size[1]}x{r.image_size[0]}, file is {w}x{h}",
                          stacklevel=2)
        probe = Record(r.image, r.keypoints, vis, r.bbox, r.label, r.meta, (h, w))
        check_in_image([probe], self.out_of_image)
        vis = probe.visibility
        box = probe.box()
        crop = crop_box(box, self.padding, size[1] / size[0] if self.keep_aspect else None)
        m = crop_transform(crop, size)
        out = cv2.warpAffine(img, m[:2].astype(np.float64), (size[1], size[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        kp = apply_transform(m, r.keypoints).astype(np.float32)
        inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= size[1] - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= size[0] - 0.5)
        vis = np.where(inside, vis, 0.0).astype(np.float32)
        bb = apply_transform(m, box.reshape(2, 2)).reshape(4).astype(np.float32)
        meta: dict[str, Any] = {"transform": m.astype(np.float32), "index": i, "image_file": str(r.image)}
        if "head_box" in r.meta:
            meta["head_box"] = apply_transform(m, np.asarray(r.meta["head_box"], np.float64).reshape(2, 2)) \
                .reshape(4).astype(np.float32)
        return Sample(image=out, keypoints=kp, visibility=vis, bbox=bb, label=r.label, meta=meta)

    def __getitem__(self, i: int) -> Sample:
        return self.sample(i)

    def to_arrays(self, size: tuple[int, int] | None = None, indices: Sequence[int] | None = None,
                  progress: bool = False) -> ArrayDataset:
        """Load every (or the given) record at ``size`` into an :class:`ArrayDataset`.

        ``meta`` gets ``transform`` (N, 3, 3), ``index`` (N,), and ``head_box``
        (N, 4) when every record has one. Labels are kept when every record has one.
        """
        idx = range(len(self)) if indices is None else [int(i) for i in indices]
        it: Iterable[int] = idx
        if progress:
            from tqdm import tqdm

            it = tqdm(idx, desc=f"loading {self.spec.name}", disable=bool(os.environ.get("CI")))
        samples = [self.sample(i, size) for i in it]
        size = self.size if size is None else size
        n = len(samples)
        k = self.spec.num_keypoints
        meta: dict[str, np.ndarray] = {
            "transform": np.stack([s.meta["transform"] for s in samples]) if n else np.zeros((0, 3, 3), np.float32),
            "index": np.array([s.meta["index"] for s in samples], np.int64),
        }
        if n and all("head_box" in s.meta for s in samples):
            meta["head_box"] = np.stack([s.meta["head_box"] for s in samples])
        labels = None
        if n and all(s.label is not None for s in samples):
            labels = np.array([s.label for s in samples], np.int64)
        return ArrayDataset(
            spec=self.spec,
            images=np.stack([s.image for s in samples]) if n else np.zeros((0, size[0], size[1], 3), np.uint8),
            keypoints=np.stack([s.keypoints for s in samples]) if n else np.zeros((0, k, 2), np.float32),
            visibility=np.stack([s.visibility for s in samples]) if n else np.zeros((0, k), np.float32),
            bbox=np.stack([s.bbox for s in samples]) if n else np.zeros((0, 4), np.float32),
            labels=labels,
            meta=meta,
        )


def finite_or_invisible(kp: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN/inf keypoints by 0 and mark them not visible."""
    kp = np.asarray(kp, np.float32).copy()
    vis = np.asarray(vis, np.float32).copy()
    bad = ~np.isfinite(kp).all(axis=1)
    kp[bad] = 0.0
    vis[bad] = 0.0
    return kp, vis



# --------------------------------------------------------------------------- registry

PARSERS: dict[str, Any] = {}


def register(name: str):
    """Decorator registering a parser ``f(root: Path, **options) -> list[Record]`` under ``name``."""

    def deco(fn):
        if name in PARSERS:
            raise ValueError(f"parser {name!r} registered twice")
        PARSERS[name] = fn
        return fn

    return deco


def shift_coordinates(records: Iterable[Record], offset: float) -> None:
    """Subtract ``offset`` from every coordinate (e.g. 1 for MATLAB 1-based annotations)."""
    if not offset:
        return
    for r in records:
        r.keypoints -= offset
        if r.bbox is not None:
            r.bbox -= offset
        if "head_box" in r.meta:
            r.meta["head_box"] = np.asarray(r.meta["head_box"], np.float32) - offset


def read_lines(path: Path) -> list[str]:
    """Lines of a text file; a clear error naming the file when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def parse_numbers(path: Path, lineno: int, tokens: Sequence[str], what: str = "number") -> list[float]:
    """Tokens as floats; :class:`AnnotationError` naming file and line otherwise."""
    try:
        return [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise AnnotationError(path, lineno, f"expected a {what}, got {bad!r}") from None


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def load_mat(path: Path) -> dict[str, Any]:
    """``scipy.io.loadmat`` (squeezed, structs as objects); clear errors for missing/bad files."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files
        raise AnnotationError(path, None, f"MATLAB v7.3 files are not supported by scipy ({e}); "
                              "re-save with -v7 or convert it") from e
    except Exception as e:  # noqa: BLE001 - scipy raises many types for corrupt files
        raise AnnotationError(path, None, f"not a readable .mat file: {e}") from e


def mat_key(mat: Mapping[str, Any], key: str, path: Path) -> Any:
    """``mat[key]`` or an :class:`AnnotationError` naming the file and the missing key."""
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise AnnotationError(path, f"key {key!r}", f"missing; the file has {found}")
    return mat[key]


def as_list(x: Any) -> list[Any]:
    """A squeezed MATLAB value as a list: empty array -> [], scalar/struct -> [x]."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return []
        return list(x.reshape(-1)) if x.dtype == object or x.ndim > 0 else [x.item()]
    return [x]


def load_json(path: Path) -> Any:
    """Parse a JSON file; malformed JSON -> :class:`AnnotationError` with the line number."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None
