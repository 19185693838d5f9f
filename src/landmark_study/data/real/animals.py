"""Parsers for animal keypoint formats (ATRW uses the COCO parser).

* ``cub``: CUB-200-2011 text tables (``images.txt``, ``bounding_boxes.txt``,
  ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``,
  ``parts/part_locs.txt``).
* ``cat``: the original Cat dataset's ``.cat`` files (``9 x1 y1 ... x9 y9``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .records import AnnotationError, Record, parse_numbers, read_lines, register


def _table(path: Path, ncols: int, kinds: str) -> dict[int, list]:
    """Read an ``id value...`` table; ``kinds`` gives each column's type (i int, f float, s str-rest)."""
    out: dict[int, list] = {}
    for ln, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        if kinds.endswith("s"):
            tok = line.split(maxsplit=ncols - 1)
        else:
            tok = line.split()
        if len(tok) != ncols:
            raise AnnotationError(path, ln, f"expected {ncols} fields, got {len(tok)}: {line.strip()!r}")
        vals: list = []
        for t, k in zip(tok, kinds):
            if k == "s":
                vals.append(t.strip())
            else:
                v = parse_numbers(path, ln, [t])[0]
                if k == "i":
                    if v != int(v):
                        raise AnnotationError(path, ln, f"expected an integer, got {t!r}")
                    v = int(v)
                vals.append(v)
        if vals[0] in out:
            raise AnnotationError(path, ln, f"duplicate id {vals[0]}")
        out[vals[0]] = vals[1:]
    return out


@register("cub")
def parse_cub(root: Path, *, base: str = "CUB_200_2011", num_parts: int = 15) -> list[Record]:
    """CUB-200-2011: one record per image with its 15 part locations.

    ``parts/part_locs.txt`` lines are ``image_id part_id x y visible``
    (invisible parts have x = y = 0 and get visibility 0); ``bounding_boxes.txt``
    is ``image_id x y width height``. Label = class id - 1 (0-based). Meta:
    ``image_id``, ``class_id`` (1-based, as in ``classes.txt``), ``class_name``,
    ``is_training_image`` (the official split, unused by the papers).
    """
    d = Path(root) / base
    images = _table(d / "images.txt", 2, "is")
    boxes = _table(d / "bounding_boxes.txt", 5, "iffff")
    labels = _table(d / "image_class_labels.txt", 2, "ii")
    split = _table(d / "train_test_split.txt", 2, "ii")
    classes = _table(d / "classes.txt", 2, "is")
    kp = {i: np.zeros((num_parts, 2), np.float32) for i in images}
    vis = {i: np.zeros(num_parts, np.float32) for i in images}
    seen = {i: 0 for i in images}
    ppath = d / "parts" / "part_locs.txt"
    for ln, line in enumerate(read_lines(ppath), 1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) != 5:
            raise AnnotationError(ppath, ln, f"expected 'image_id part_id x y visible', got {line.strip()!r}")
        img, part, x, y, v = parse_numbers(ppath, ln, tok)
        img, part = int(img), int(part)
        if img not in images:
            raise AnnotationError(ppath, ln, f"image id {img} is not in images.txt")
        if not 1 <= part <= num_parts:
            raise AnnotationError(ppath, ln, f"part id {part} outside 1..{num_parts}")
        kp[img][part - 1] = (x, y)
        vis[img][part - 1] = 1.0 if v > 0 else 0.0
        seen[img] += 1
    records = []
    for i, (name,) in sorted(images.items()):
        for table, tname in ((boxes, "bounding_boxes.txt"), (labels, "image_class_labels.txt"),
                             (split, "train_test_split.txt")):
            if i not in table:
                raise AnnotationError(d / tname, None, f"image id {i} ({name}) is missing")
        if seen[i] != num_parts:
            raise AnnotationError(ppath, None, f"image id {i} has {seen[i]} part lines, expected {num_parts}")
        x, y, w, h = boxes[i]
        cid = labels[i][0]
        if cid not in classes:
            raise AnnotationError(d / "image_class_labels.txt", None, f"class id {cid} not in classes.txt")
        records.append(Record(image=d / "images" / name, keypoints=kp[i], visibility=vis[i],
                              bbox=np.array([x, y, x + w, y + h]), label=cid - 1,
                              meta={"image_id": i, "class_id": cid, "class_name": classes[cid][0],
                                    "is_training_image": split[i][0], "annotation": str(ppath)}))
    return records


def read_cat(path: str | Path) -> np.ndarray:
    """Read a Cat-dataset ``.cat`` file: ``9 x1 y1 ... x9 y9`` on one line -> (9, 2)."""
    path = Path(path)
    lines = [ln for ln in read_lines(path) if ln.strip()]
    if len(lines) != 1:
        raise AnnotationError(path, len(lines) or 1, f"expected one line, got {len(lines)}")
    nums = parse_numbers(path, 1, lines[0].split(), "number")
    n = int(nums[0]) if nums else 0
    if not nums or nums[0] != n or len(nums) != 1 + 2 * n:
        raise AnnotationError(path, 1, f"expected a count then 2 x count coordinates, got {len(nums)} numbers")
    return np.asarray(nums[1:], np.float32).reshape(n, 2)


@register("cat")
def parse_cat(root: Path, *, glob: str = "CAT_*/*.cat", num_points: int = 9) -> list[Record]:
    """Original Cat dataset: ``CAT_0k/<name>.jpg`` with ``<name>.jpg.cat`` beside it.

    Points: left eye, right eye, mouth, left ear (3 points), right ear (3 points).
    Meta: ``folder`` (e.g. ``CAT_06``), ``file``.
    """
    root = Path(root)
    files = sorted(root.glob(glob))
    if not files:
        raise FileNotFoundError(f"Cat dataset: no files match {root / glob}")
    out = []
    for p in files:
        pts = read_cat(p)
        if len(pts) != num_points:
            raise AnnotationError(p, 1, f"{len(pts)} points, expected {num_points}")
        out.append(Record(image=p.with_suffix(""), keypoints=pts, visibility=np.ones(num_points),
                          meta={"folder": p.parent.name, "file": p.with_suffix("").name, "annotation": str(p)}))
    return out
