"""Parsers for human-body (and COCO-style animal) keypoint formats.

* ``lsp``: LSP ``joints.mat`` (3 x 14 x 2000; row 3 is an *occluded* flag) and
  LSP-extended ``joints.mat`` (14 x 3 x 10000; column 3 is a *visible* flag).
* ``mpii``: the official ``mpii_human_pose_v1_u12_1.mat`` (nested structs) or
  the widely used JSON conversion (``train.json``/``valid.json`` lists of
  ``{image, joints, joints_vis, center, scale}``) with ``gt_valid.mat`` head boxes.
* ``coco``: COCO person-keypoints JSON (also ATRW, which ships COCO-style JSON).
* ``penn_action``: one ``labels/NNNN.mat`` per video.
* ``bbcpose``: ``bbcpose.mat`` (struct array of videos).
* ``h36m``: the Human3.6M landmark protocol of Zhang et al. as pre-processed by
  Mallis et al. (two pickles of dicts) or an equivalent ``.npz``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .records import (AnnotationError, Record, as_list, load_json, load_mat, mat_key, register)

# ----------------------------------------------------------------------------- LSP


@register("lsp")
def parse_lsp(root: Path, *, lsp_dir: str | None = "lsp", lspet_dir: str | None = "lspet",
              lsp_pattern: str = "images/im{:04d}.jpg", lspet_pattern: str = "images/im{:05d}.jpg",
              occluded_as_visible: bool = True) -> list[Record]:
    """LSP and LSP-extended ``joints.mat`` files under ``root/lsp_dir`` and ``root/lspet_dir``.

    The two releases store the matrix differently: LSP is ``3 x 14 x N`` whose
    third row is 1 for an *occluded* joint (all joints are annotated); LSP-extended
    is ``14 x 3 x N`` whose third column is 1 for a *visible* joint (invisible ones
    are not reliably placed, so they get visibility 0). The layout is detected
    from the shape. LSP joints keep visibility 1 unless ``occluded_as_visible``
    is False. Meta: ``source`` ('lsp'/'lspet'), ``index`` (1-based), ``occluded``.
    """
    records: list[Record] = []
    for source, sub, pattern in (("lsp", lsp_dir, lsp_pattern), ("lspet", lspet_dir, lspet_pattern)):
        if sub is None:
            continue
        path = Path(root) / sub / "joints.mat"
        joints = np.asarray(mat_key(load_mat(path), "joints", path), dtype=np.float64)
        if joints.ndim == 2:
            joints = joints[..., None]
        if joints.ndim != 3 or 14 not in joints.shape[:2] or 3 not in joints.shape[:2]:
            raise AnnotationError(path, "key 'joints'", f"expected 3x14xN (LSP) or 14x3xN (LSP-extended), "
                                  f"got shape {joints.shape}")
        if joints.shape[0] == 3:  # LSP: (3, 14, N) with an occluded flag
            arr = joints.transpose(2, 1, 0)
            occluded = arr[:, :, 2] > 0.5
            vis = np.ones(occluded.shape, np.float32) if occluded_as_visible else (~occluded).astype(np.float32)
        else:  # LSP-extended: (14, 3, N) with a visible flag
            arr = joints.transpose(2, 0, 1)
            visible = arr[:, :, 2] > 0.5
            occluded = ~visible
            vis = visible.astype(np.float32)
        for i in range(arr.shape[0]):
            records.append(Record(
                image=Path(root) / sub / pattern.format(i + 1),
                keypoints=arr[i, :, :2], visibility=vis[i], label=None,
                meta={"source": source, "index": i + 1, "occluded": occluded[i].astype(np.float32),
                      "annotation": str(path)},
            ))
    return records


# ----------------------------------------------------------------------------- MPII

MPII_NUM_JOINTS = 16


def _field(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default) if obj is not None else default


def _scalar(x: Any, default: float | None = None) -> float | None:
    vals = as_list(x)
    if not vals:
        return default
    v = vals[0]
    if isinstance(v, (str, np.str_)):
        v = v.strip()
        return float(v) if v else default
    return float(v)


@register("mpii")
def parse_mpii(root: Path, *, mat_file: str | None = None, image_dir: str = "images",
               json_files: Mapping[str, str] | None = None,
               head_boxes: Mapping[str, str] | None = None) -> list[Record]:
    """MPII Human Pose: the JSON conversion (``json_files``) or the official ``.mat``.

    JSON (``json_files = {split: path}``): each entry has ``image``, ``joints``
    (16 x 2), ``joints_vis`` (16), ``center``, ``scale`` (person height / 200);
    ``head_boxes = {split: gt_valid.mat}`` adds ``meta['head_box']`` from its
    ``headboxes_src`` (2 corners x 2 coords x N, same order as the JSON).
    With both ``json_files`` and ``mat_file``, JSON people without a head box
    take the one of the ``.mat`` person on the same image whose box centre is
    nearest (``meta['head_box_match_px']`` records that distance).
    ``.mat``: ``RELEASE.annolist(i).annorect(j)`` with ``x1 y1 x2 y2`` (head
    box), ``annopoints.point(k).{id, x, y, is_visible}``, ``objpos``, ``scale``;
    only people with annotated points are kept; ``img_train`` goes to meta.
    Visibility 1 = annotated (PCKh counts annotated joints, occluded or not);
    ``meta['occluded']`` keeps ``1 - is_visible``. Coordinates are MATLAB
    1-based in both; the manifest shifts them (``coordinate_offset: 1``).
    Box: the square of side ``200 * scale`` centred on ``center``.
    """
    root = Path(root)
    if json_files:
        records = _parse_mpii_json(root, image_dir, json_files, head_boxes or {})
        if mat_file is not None:
            _head_boxes_from_mat(records, _parse_mpii_mat(root, root / mat_file, image_dir))
        return records
    if mat_file is None:
        raise ValueError("mpii: give json_files or mat_file")
    return _parse_mpii_mat(root, root / mat_file, image_dir)


def _person_box(center: Sequence[float], scale: float) -> np.ndarray:
    cx, cy = float(center[0]), float(center[1])
    half = 100.0 * float(scale)
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def _parse_mpii_json(root: Path, image_dir: str, json_files: Mapping[str, str],
                     head_boxes: Mapping[str, str]) -> list[Record]:
    records: list[Record] = []
    for split, rel in json_files.items():
        path = root / rel
        data = load_json(path)
        if not isinstance(data, list):
            raise AnnotationError(path, None, f"expected a JSON list of people, got {type(data).__name__}")
        hb = None
        if split in head_boxes:
            hpath = root / head_boxes[split]
            hb = np.asarray(mat_key(load_mat(hpath), "headboxes_src", hpath), np.float64)
            if hb.ndim != 3 or hb.shape[:2] != (2, 2) or hb.shape[2] != len(data):
                raise AnnotationError(hpath, "key 'headboxes_src'",
                                      f"expected 2x2x{len(data)} to match {path.name}, got {hb.shape}")
        for i, e in enumerate(data):
            where = f"entry [{i}]"
            try:
                joints = np.asarray(e["joints"], np.float64)
                jvis = np.asarray(e["joints_vis"], np.float64)
                center, scale, image = e["center"], float(e["scale"]), str(e["image"])
            except KeyError as k:
                raise AnnotationError(path, where, f"missing key {k.args[0]!r}") from None
            except (TypeError, ValueError) as err:
                raise AnnotationError(path, where, f"bad value: {err}") from None
            if joints.shape != (MPII_NUM_JOINTS, 2) or jvis.shape != (MPII_NUM_JOINTS,):
                raise AnnotationError(path, f"{where}.joints", f"expected 16x2 joints and 16 flags, "
                                      f"got {joints.shape} and {jvis.shape}")
            vis = (jvis > 0).astype(np.float32)
            vis[(joints < 0).any(axis=1)] = 0.0  # conversions mark missing joints with -1
            meta: dict[str, Any] = {"source_split": split, "instance": i, "annotation": str(path),
                                    "occluded": np.zeros(MPII_NUM_JOINTS, np.float32)}
            if hb is not None:
                meta["head_box"] = hb[:, :, i].reshape(4).astype(np.float32)
            records.append(Record(image=root / image_dir / image, keypoints=joints, visibility=vis,
                                  bbox=_person_box(center, scale), meta=meta))
    return records


def _head_boxes_from_mat(records: list[Record], mat_records: list[Record]) -> None:
    by_image: dict[str, list[Record]] = {}
    for r in mat_records:
        if "head_box" in r.meta and r.bbox is not None:
            by_image.setdefault(r.image.name, []).append(r)
    for r in records:
        if "head_box" in r.meta or r.bbox is None:
            continue
        cands = by_image.get(r.image.name)
        if not cands:
            continue
        c = (r.bbox[:2] + r.bbox[2:]) / 2
        d = [float(np.linalg.norm((m.bbox[:2] + m.bbox[2:]) / 2 - c)) for m in cands]
        best = int(np.argmin(d))
        r.meta["head_box"] = cands[best].meta["head_box"].copy()
        r.meta["head_box_match_px"] = d[best]


def _parse_mpii_mat(root: Path, path: Path, image_dir: str) -> list[Record]:
    mat = load_mat(path)
    rel = mat_key(mat, "RELEASE", path)
    annolist = as_list(_field(rel, "annolist"))
    if not annolist:
        raise AnnotationError(path, "key 'RELEASE.annolist'", "missing or empty")
    img_train = as_list(_field(rel, "img_train"))
    records: list[Record] = []
    for i, ann in enumerate(annolist):
        name = _field(_field(ann, "image"), "name")
        if name is None:
            raise AnnotationError(path, f"key 'RELEASE.annolist({i + 1}).image.name'", "missing")
        train = int(img_train[i]) if i < len(img_train) else -1
        for j, rect in enumerate(as_list(_field(ann, "annorect"))):
            points = as_list(_field(_field(rect, "annopoints"), "point"))
            if not points:
                continue
            kp = np.zeros((MPII_NUM_JOINTS, 2), np.float32)
            vis = np.zeros(MPII_NUM_JOINTS, np.float32)
            occ = np.zeros(MPII_NUM_JOINTS, np.float32)
            for p in points:
                pid = _scalar(_field(p, "id"))
                if pid is None or not 0 <= int(pid) < MPII_NUM_JOINTS:
                    raise AnnotationError(path, f"key 'RELEASE.annolist({i + 1}).annorect({j + 1}).annopoints"
                                          f".point.id'", f"joint id {pid!r} outside 0..15")
                k = int(pid)
                kp[k] = (_scalar(_field(p, "x"), 0.0), _scalar(_field(p, "y"), 0.0))
                vis[k] = 1.0
                isv = _scalar(_field(p, "is_visible"), 1.0)
                occ[k] = 0.0 if isv else 1.0
            meta: dict[str, Any] = {"image_index": i + 1, "instance": j, "img_train": train,
                                    "source_split": "train" if train == 1 else "test",
                                    "occluded": occ, "annotation": str(path)}
            x1, y1, x2, y2 = (_scalar(_field(rect, k)) for k in ("x1", "y1", "x2", "y2"))
            if None not in (x1, y1, x2, y2):
                meta["head_box"] = np.array([x1, y1, x2, y2], np.float32)
            bbox = None
            objpos, scale = _field(rect, "objpos"), _scalar(_field(rect, "scale"))
            if objpos is not None and scale is not None and _scalar(_field(objpos, "x")) is not None:
                bbox = _person_box((_scalar(_field(objpos, "x")), _scalar(_field(objpos, "y"))), scale)
            records.append(Record(image=root / image_dir / str(name), keypoints=kp, visibility=vis,
                                  bbox=bbox, meta=meta))
    return records


# ----------------------------------------------------------------------------- COCO


@register("coco")
def parse_coco(root: Path, *, annotations: Mapping[str, str], image_dirs: Mapping[str, str],
               keypoint_names: Sequence[str] | None = None, category_id: int | None = None,
               include_crowd: bool = False, min_keypoints: int = 1,
               unlabelled: Mapping[str, str] | None = None) -> list[Record]:
    """COCO keypoint JSON files, one person (object) instance per record.

    ``annotations = {split: json}``, ``image_dirs = {split: dir}``. Instances
    with ``iscrowd`` (unless ``include_crowd``) or fewer than ``min_keypoints``
    labelled keypoints are skipped. Keypoint flag ``v``: 0 = not labelled
    (visibility 0), 1 = labelled but occluded, 2 = visible (both visibility 1;
    ``meta['occluded']`` = ``v == 1``). ``bbox`` ``[x, y, w, h]`` becomes
    ``(x, y, x + w, y + h)``. When ``keypoint_names`` is given, the JSON's
    ``categories[].keypoints`` must match it. ``unlabelled = {split: json}``
    adds one keypoint-free record per image of an image-info JSON (e.g.
    ``image_info_unlabeled2017.json``), box = whole image.
    """
    root = Path(root)
    records: list[Record] = []
    k_expected = None if keypoint_names is None else len(keypoint_names)
    for split, rel in annotations.items():
        path = root / rel
        data = load_json(path)
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise AnnotationError(path, f"key {key!r}", "missing")
        cats = {c["id"]: c for c in data["categories"] if "keypoints" in c}
        if category_id is not None:
            cats = {k: v for k, v in cats.items() if k == category_id}
        if not cats:
            raise AnnotationError(path, "key 'categories'", "no category with keypoints")
        for cid, c in cats.items():
            if keypoint_names is not None and list(c["keypoints"]) != list(keypoint_names):
                raise AnnotationError(path, f"key 'categories' (id {cid}).keypoints",
                                      f"{c['keypoints']} differ from the manifest's {list(keypoint_names)}")
        images = {im["id"]: im for im in data["images"]}
        for i, a in enumerate(data["annotations"]):
            if a.get("category_id") not in cats:
                continue
            if a.get("iscrowd", 0) and not include_crowd:
                continue
            where = f"annotations[{i}] (id {a.get('id')})"
            kps = a.get("keypoints")
            k = len(cats[a["category_id"]]["keypoints"])
            if kps is None or len(kps) != 3 * k:
                raise AnnotationError(path, f"{where}.keypoints",
                                      f"expected {3 * k} numbers, got {None if kps is None else len(kps)}")
            if k_expected is not None and k != k_expected:
                raise AnnotationError(path, where, f"{k} keypoints, manifest declares {k_expected}")
            arr = np.asarray(kps, np.float64).reshape(k, 3)
            if int((arr[:, 2] > 0).sum()) < min_keypoints:
                continue
            im = images.get(a.get("image_id"))
            if im is None:
                raise AnnotationError(path, f"{where}.image_id", f"image id {a.get('image_id')} not in 'images'")
            x, y, w, h = (float(v) for v in a["bbox"])
            records.append(Record(
                image=root / image_dirs[split] / im["file_name"], keypoints=arr[:, :2],
                visibility=(arr[:, 2] > 0).astype(np.float32), bbox=np.array([x, y, x + w, y + h]),
                meta={"source_split": split, "image_id": im["id"], "instance": a["id"],
                      "area": float(a.get("area", w * h)), "occluded": (arr[:, 2] == 1).astype(np.float32),
                      "annotation": str(path)},
                image_size=(int(im["height"]), int(im["width"])) if "height" in im else None,
            ))
    for split, rel in (unlabelled or {}).items():
        path = root / rel
        data = load_json(path)
        if "images" not in data:
            raise AnnotationError(path, "key 'images'", "missing")
        k = k_expected or 0
        for im in data["images"]:
            hgt, wid = int(im["height"]), int(im["width"])
            records.append(Record(
                image=root / image_dirs[split] / im["file_name"], keypoints=np.zeros((k, 2)),
                visibility=np.zeros(k), bbox=np.array([-0.5, -0.5, wid - 0.5, hgt - 0.5]),
                meta={"source_split": split, "image_id": im["id"], "instance": 0, "labelled": False,
                      "annotation": str(path)},
                image_size=(hgt, wid),
            ))
    return records


# ----------------------------------------------------------------------------- Penn Action

PENN_ACTIONS = ("baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
                "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
                "tennis_forehand", "tennis_serve")


@register("penn_action")
def parse_penn_action(root: Path, *, labels_dir: str = "Penn_Action/labels",
                      frames_dir: str = "Penn_Action/frames", frame_pattern: str = "{:06d}.jpg",
                      occluded_as_visible: bool = True) -> list[Record]:
    """Penn Action: one record per frame from ``labels/NNNN.mat``.

    Each ``.mat`` holds ``action`` (str), ``x``, ``y``, ``visibility``
    (nframes x 13), ``bbox`` (nframes x 4, x0 y0 x1 y1; a few videos have fewer
    rows, then the keypoint box is used), ``dimensions`` (H, W, nframes),
    ``train`` (1 / -1). All 13 joints are placed in every frame; the
    ``visibility`` flag goes to ``meta['occluded']`` (and to visibility when
    ``occluded_as_visible`` is False). Meta: ``video`` (int), ``frame`` (1-based),
    ``action``, ``penn_train`` (bool), ``video_rank_in_action`` (1-based rank of
    the video id among the videos of its action).
    """
    root = Path(root)
    ldir = root / labels_dir
    if not ldir.is_dir():
        raise FileNotFoundError(f"Penn Action labels directory {ldir} does not exist")
    records: list[Record] = []
    per_action: dict[str, list[int]] = {}
    for path in sorted(ldir.glob("*.mat")):
        mat = load_mat(path)
        video = int(path.stem)
        action = str(mat_key(mat, "action", path)).strip()
        x = np.atleast_2d(np.asarray(mat_key(mat, "x", path), np.float64))
        y = np.atleast_2d(np.asarray(mat_key(mat, "y", path), np.float64))
        v = np.atleast_2d(np.asarray(mat_key(mat, "visibility", path), np.float64))
        if x.shape != y.shape or x.shape != v.shape or x.shape[1] != 13:
            raise AnnotationError(path, "keys 'x', 'y', 'visibility'",
                                  f"expected equal nframes x 13 arrays, got {x.shape}, {y.shape}, {v.shape}")
        bbox = np.atleast_2d(np.asarray(mat.get("bbox", np.zeros((0, 4))), np.float64))
        dims = as_list(mat.get("dimensions"))
        size = (int(dims[0]), int(dims[1])) if len(dims) >= 2 else None
        train = int(_scalar(mat.get("train"), 0) or 0) == 1
        per_action.setdefault(action, []).append(video)
        for f in range(x.shape[0]):
            occ = (v[f] <= 0).astype(np.float32)
            vis = np.ones(13, np.float32) if occluded_as_visible else 1.0 - occ
            box = bbox[f] if f < bbox.shape[0] and bbox.shape[1] == 4 else None
            records.append(Record(
                image=root / frames_dir / path.stem / frame_pattern.format(f + 1),
                keypoints=np.stack([x[f], y[f]], axis=1), visibility=vis, bbox=box,
                meta={"video": video, "frame": f + 1, "action": action, "penn_train": train,
                      "occluded": occ, "annotation": str(path)},
                image_size=size,
            ))
    rank = {(a, vid): i + 1 for a, vids in per_action.items() for i, vid in enumerate(sorted(vids))}
    for r in records:
        r.meta["video_rank_in_action"] = rank[(r.meta["action"], r.meta["video"])]
    return records


# ----------------------------------------------------------------------------- BBC Pose


@register("bbcpose")
def parse_bbcpose(root: Path, *, mat_file: str = "bbcpose.mat", image_dir: str = ".",
                  include_unlabelled_frames: bool = False, kinds: Sequence[str] = ("train", "test")
                  ) -> list[Record]:
    """BBC Pose ``bbcpose.mat``: variable ``bbcpose``, a struct array of videos.

    Fields per video: ``videoName``, ``type`` (train/val/test), ``source``,
    ``train_frames`` + ``train_joints`` (2 x 7 x N; automatic, Buehler et al.
    tracker) and ``test_frames`` + ``test_joints`` (manual ground truth, val
    and test videos only). Frames live in ``image_dir/<video number>/<frame>.jpg``.
    Meta: ``video`` (1-based), ``video_name``, ``type``, ``frame``, ``kind``
    ('train' automatic or 'test' manual). With ``include_unlabelled_frames``,
    every other ``.jpg`` of a video folder becomes a keypoint-free record
    (``kind`` 'none'), as used for unsupervised training.
    Coordinates are MATLAB 1-based (manifest: ``coordinate_offset: 1``).
    """
    root = Path(root)
    path = root / mat_file
    videos = as_list(mat_key(load_mat(path), "bbcpose", path))
    records: list[Record] = []
    for vi, v in enumerate(videos):
        vnum = vi + 1
        vtype = str(_field(v, "type", "")).strip()
        vname = str(_field(v, "videoName", "")).strip()
        seen: set[int] = set()
        for kind in kinds:
            frames = [int(f) for f in as_list(_field(v, f"{kind}_frames"))]
            if not frames:
                continue
            joints = np.asarray(_field(v, f"{kind}_joints"), np.float64)
            if joints.ndim == 2:
                joints = joints[..., None]
            if joints.shape[:2] != (2, 7) or joints.shape[2] != len(frames):
                raise AnnotationError(path, f"key 'bbcpose({vnum}).{kind}_joints'",
                                      f"expected 2x7x{len(frames)}, got {joints.shape}")
            for n, frame in enumerate(frames):
                seen.add(frame)
                records.append(Record(
                    image=root / image_dir / str(vnum) / f"{frame}.jpg", keypoints=joints[:, :, n].T,
                    visibility=np.ones(7), meta={"video": vnum, "video_name": vname, "type": vtype,
                                                  "frame": frame, "kind": kind, "instance": kind,
                                                  "annotation": str(path)}))
        if include_unlabelled_frames:
            vdir = root / image_dir / str(vnum)
            for img in sorted(vdir.glob("*.jpg")) if vdir.is_dir() else []:
                if not img.stem.isdigit() or int(img.stem) in seen:
                    continue
                records.append(Record(image=img, keypoints=np.zeros((7, 2)), visibility=np.zeros(7),
                                      meta={"video": vnum, "video_name": vname, "type": vtype,
                                            "frame": int(img.stem), "kind": "none", "instance": "none",
                                            "labelled": False, "annotation": str(path)}))
    return records


# ----------------------------------------------------------------------------- Human3.6M


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds builtins and numpy arrays (no arbitrary code)."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"),
        ("collections", "OrderedDict"), ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def load_numpy_pickle(path: Path) -> Any:
    """Load a pickle of dicts/lists/numpy arrays without executing anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
            raise AnnotationError(path, None, f"not a plain numpy pickle: {e}") from e


_H36M_SPLIT = re.compile(r"^/?(train|test)/")


@register("h36m")
def parse_h36m(root: Path, *, npz_file: str | None = None, boxes_pickle: str = "HumanBoundingBoxes.pickle",
               keypoints_pickle: str = "GroundtruthKeypoints.pickle", image_dir: str = "images") -> list[Record]:
    """Human3.6M frames pre-processed for the unsupervised-landmark protocol.

    Default: the output of Mallis et al.'s ``PreProcessHuman.py`` -- frames
    ``images/{train,test}/NNNNNN.jpg`` (450 x 450 crops around the subject) and
    two pickled dicts keyed by ``'/train/NNNNNN.jpg'``: boxes ``[x0, y0, x1, y1]``
    and the 32 2-D joints (``D2_Positions``), both in crop pixels. Pickles are
    read with a numpy-only unpickler. Alternative: ``npz_file`` with arrays
    ``images`` (relative paths, ``train/...``), ``keypoints`` (N x 32 x 2),
    ``bbox`` (N x 4). Meta: ``source_split`` (train/test, from the path), ``index``.
    """
    root = Path(root)
    if npz_file is not None:
        path = root / npz_file
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            for key in ("images", "keypoints", "bbox"):
                if key not in z:
                    raise AnnotationError(path, f"key {key!r}", f"missing; the file has {sorted(z.files)}")
            names = [str(s) for s in z["images"]]
            kps, boxes = np.asarray(z["keypoints"], np.float64), np.asarray(z["bbox"], np.float64)
        if kps.shape[0] != len(names) or boxes.shape != (len(names), 4) or kps.shape[1:] != (32, 2):
            raise AnnotationError(path, "key 'keypoints'", f"expected {len(names)}x32x2 keypoints and "
                                  f"{len(names)}x4 boxes, got {kps.shape} and {boxes.shape}")
        items = list(zip(names, kps, boxes))
    else:
        bpath, kpath = root / boxes_pickle, root / keypoints_pickle
        boxes_d, kps_d = load_numpy_pickle(bpath), load_numpy_pickle(kpath)
        if not isinstance(boxes_d, dict) or not isinstance(kps_d, dict):
            raise AnnotationError(bpath, None, "expected pickled dicts {image name: array}")
        items = []
        for name in sorted(kps_d):
            if name not in boxes_d:
                raise AnnotationError(bpath, f"key {name!r}", f"missing (present in {kpath.name})")
            items.append((name, np.asarray(kps_d[name], np.float64), np.asarray(boxes_d[name], np.float64)))
    records: list[Record] = []
    for i, (name, kp, box) in enumerate(items):
        m = _H36M_SPLIT.match(name)
        if kp.shape != (32, 2):
            raise AnnotationError(root / (npz_file or keypoints_pickle), f"key {name!r}",
                                  f"expected 32x2 joints, got {kp.shape}")
        records.append(Record(image=root / image_dir / name.lstrip("/"), keypoints=kp, visibility=np.ones(32),
                              bbox=np.asarray(box, np.float64).reshape(4),
                              meta={"source_split": m.group(1) if m else "unknown", "index": i,
                                    "annotation": str(root / (npz_file or keypoints_pickle))}))
    return records
