"""Parser for the HGR1 hand dataset (Kawulok et al.; Nalepa & Kawulok 2014).

HGR1 ships 899 colour images of 27 Polish-sign-language gestures by 12 people,
skin masks, and 25 hand feature points per image. The feature points are read
here from one XML file per image: every element carrying ``x``/``y`` (or
``X``/``Y``) attributes is a point, in document order. Gesture and subject are
parsed from the file name with ``name_pattern`` (named groups ``gesture`` and
``subject``). The exact XML schema and naming of the public release could not
be checked here: the parser is kept deliberately simple and both the glob and
the pattern are options in the manifest.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np

from .faces import find_image
from .records import AnnotationError, Record, register


def read_hgr_points(path: str | Path) -> np.ndarray:
    """Points ``(N, 2)`` of one HGR feature-point XML file, in document order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise AnnotationError(path, e.position[0], f"malformed XML: {e}") from None
    pts = []
    for el in tree.iter():
        attrs = {k.lower(): v for k, v in el.attrib.items()}
        if "x" in attrs and "y" in attrs:
            try:
                pts.append((float(attrs["x"]), float(attrs["y"])))
            except ValueError:
                raise AnnotationError(path, f"element <{el.tag}>", f"non-numeric x/y {attrs['x']!r}, "
                                      f"{attrs['y']!r}") from None
    return np.asarray(pts, np.float32).reshape(-1, 2)


@register("hgr1")
def parse_hgr1(root: Path, *, points_glob: str = "feature_points/*.xml", image_dir: str = "original_images",
               name_pattern: str = r"^(?P<gesture>[^_]+)_.*?id(?P<subject>\d+)", num_points: int = 25,
               gestures: Sequence[str] | None = None) -> list[Record]:
    """HGR1 feature points: one record per image, label = gesture index.

    ``gestures`` fixes the class order (default: sorted gesture names found).
    Meta: ``subject`` (int), ``gesture`` (str), ``stem``.
    """
    root = Path(root)
    files = sorted(root.glob(points_glob))
    if not files:
        raise FileNotFoundError(f"HGR1: no files match {root / points_glob}")
    pat = re.compile(name_pattern)
    parsed = []
    for p in files:
        m = pat.search(p.stem)
        if m is None:
            raise AnnotationError(p, None, f"file name does not match {name_pattern!r}")
        pts = read_hgr_points(p)
        if len(pts) != num_points:
            raise AnnotationError(p, None, f"{len(pts)} points, expected {num_points}")
        parsed.append((p, m.group("gesture"), int(m.group("subject")), pts))
    names = list(gestures) if gestures is not None else sorted({g for _, g, _, _ in parsed})
    out = []
    for p, g, s, pts in parsed:
        if g not in names:
            raise AnnotationError(p, None, f"gesture {g!r} not among {names}")
        out.append(Record(image=find_image(root / image_dir / p.stem), keypoints=pts, visibility=np.ones(len(pts)),
                          label=names.index(g), meta={"subject": s, "gesture": g, "stem": p.stem,
                                                      "annotation": str(p)}))
    return out
