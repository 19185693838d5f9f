"""Real datasets: parsers (one per annotation format), records, and loading by manifest.

``load_splits(name)`` reads ``data_manifests/<name>.yaml``, finds the data with
:func:`landmark_study.data.fetch.require`, runs the manifest's parser and cuts
the protocol's splits; ``load_dataset(name, split)`` wraps one split in a
:class:`RecordDataset` (lazy images -> :class:`~landmark_study.data.sample.Sample`,
``.to_arrays()`` -> :class:`~landmark_study.data.sample.ArrayDataset`).

Parsers (``PARSERS[format](root, **format_options) -> list[Record]``):
``lsp``, ``mpii``, ``coco`` (COCO, ATRW), ``penn_action``, ``bbcpose``, ``h36m``,
``ibug_pts`` (300W), ``ls3d``, ``celeba`` (CelebA/MAFL), ``lmdis_mat`` (AFLW
5-point, Cat heads as released by Zhang et al.), ``aflw_cfss`` (AFLW 19-point),
``multipie``, ``cub``, ``cat`` (raw Cat ``.cat``), ``hgr1``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping

from . import animals, body, faces, hands  # noqa: F401  (register the parsers)
from .records import (PARSERS, AnnotationError, OutOfImageWarning, Record, RecordDataset, SplitCountWarning,
                      check_in_image, select_split, shift_coordinates)

__all__ = [
    "PARSERS", "AnnotationError", "OutOfImageWarning", "Record", "RecordDataset", "SplitCountWarning", "check_in_image",
    "select_split", "parse", "load_splits", "load_dataset",
]


def parse(fmt: str, root: str | Path, options: Mapping[str, Any] | None = None, *, coordinate_offset: float = 0.0,
          out_of_image: str = "warn", source: str = "") -> list[Record]:
    """Run parser ``fmt`` on ``root`` with ``options``; shift coordinates; check they lie in the image.

    An option the parser does not take raises a ``ValueError`` naming it and
    ``source`` (the manifest file).
    """
    if fmt not in PARSERS:
        raise KeyError(f"unknown annotation format {fmt!r}; known: {', '.join(sorted(PARSERS))}")
    fn = PARSERS[fmt]
    opts = dict(options or {})
    params = inspect.signature(fn).parameters
    bad = [k for k in opts if k not in params or k == "root"]
    if bad:
        known = [k for k in params if k != "root"]
        raise ValueError(f"{source or fmt}: format_options {bad} are not options of parser {fmt!r}; "
                         f"known: {', '.join(known)}")
    records = fn(Path(root), **opts)
    shift_coordinates(records, coordinate_offset)
    check_in_image(records, out_of_image)
    return records


def load_splits(name: str, protocol: str | None = None, *, root: str | Path | None = None,
                data_root: str | Path | None = None, manifest_dir: str | Path | None = None,
                out_of_image: str = "warn") -> dict[str, list[Record]]:
    """Records of every split of ``protocol`` (default: the manifest's default protocol).

    ``root`` points at the extracted dataset directly; otherwise it is found
    with :func:`landmark_study.data.fetch.require` (which names the fetch
    command when the data is missing).
    """
    from landmark_study.data.fetch import require
    from landmark_study.data.manifests import load_manifest

    m = load_manifest(name, manifest_dir)
    if m.kind != "real":
        raise ValueError(f"{m.path}: {name!r} is generated, not loaded (see landmark_study.data.synthetic)")
    p = m.protocol(protocol)
    base = Path(root) if root is not None else require(name, data_root=data_root, manifest_dir=manifest_dir)
    fmt = p.format or m.format
    opts: dict[str, Any] = {**m.format_options, **p.format_options} if p.format is None else dict(p.format_options)
    offset = float(opts.pop("coordinate_offset", m.coordinate_offset))
    fn_params = inspect.signature(PARSERS[fmt]).parameters
    if "keypoint_names" in fn_params and "keypoint_names" not in opts:
        opts["keypoint_names"] = list(m.keypoint_names)
    records = parse(fmt, base, opts, coordinate_offset=offset, out_of_image=out_of_image, source=str(m.path))
    k = len(m.keypoint_names)
    for r in records:
        if r.keypoints.shape[0] != k:
            raise AnnotationError(r.meta.get("annotation", r.image), None,
                                  f"{r.keypoints.shape[0]} keypoints, but {m.path} declares {k}")
    out: dict[str, list[Record]] = {}
    for sname, rule in p.splits.items():
        out[sname] = select_split(records, rule, root=base, splits=out, name=f"{m.path.name}:{p.name}/{sname}")
    return out


def load_dataset(name: str, split: str, protocol: str | None = None, *, size: tuple[int, int] = (256, 256),
                 padding: float = 0.1, keep_aspect: bool = True, root: str | Path | None = None,
                 data_root: str | Path | None = None, manifest_dir: str | Path | None = None,
                 out_of_image: str = "warn") -> RecordDataset:
    """One split as a lazy :class:`RecordDataset` with the manifest's :class:`DatasetSpec`."""
    from landmark_study.data.manifests import load_manifest

    m = load_manifest(name, manifest_dir)
    splits = load_splits(name, protocol, root=root, data_root=data_root, manifest_dir=manifest_dir,
                         out_of_image=out_of_image)
    if split not in splits:
        raise KeyError(f"{m.path}: protocol {m.protocol(protocol).name!r} has no split {split!r}; "
                       f"known: {', '.join(splits)}")
    return RecordDataset(splits[split], m.spec(), size=size, padding=padding, keep_aspect=keep_aspect,
                         out_of_image=out_of_image)
