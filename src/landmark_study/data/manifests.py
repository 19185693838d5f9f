"""Dataset manifests: one YAML file per dataset in ``data_manifests/``.

A manifest says where a dataset comes from (home page, citation, licence,
files with URL, size and SHA-256 -- ``"unknown"`` where we do not know it), how
it looks once extracted (``layout``), which parser reads it (``format`` and
``format_options``), what its keypoints are (names, flip pairs, skeleton,
normaliser) and, per paper, the exact splits (``protocols``) as rules over the
records' meta data (see :func:`landmark_study.data.real.records.select_split`).
``synthetic.yaml`` describes the procedural generators instead (``kind: synthetic``).

Every manifest is validated on load: an unknown key, a missing key or a value
of the wrong type raises :class:`ManifestError` naming the file and the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from landmark_study.data.sample import NORMALISERS, DatasetSpec
from landmark_study.paths import REPO_ROOT

SPLIT_RULE_OPS = ("in", "not_in", "range", "regex", "not_regex", "in_file", "not_in_file")
ACCESS_KINDS = ("public", "registration", "request", "unavailable")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest was rejected; the message names the file and the key."""


def manifest_dir() -> Path:
    """``$LANDMARK_STUDY_MANIFESTS`` or the repository's ``data_manifests/``."""
    env = os.environ.get("LANDMARK_STUDY_MANIFESTS")
    return Path(env).expanduser() if env else REPO_ROOT / "data_manifests"


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class F:
    """One schema node: ``kind`` in str/int/number/bool/list/map/record/scalar/any."""

    kind: str
    required: bool = True
    item: "F | None" = None  # list items / map values
    fields: "Mapping[str, F] | None" = None  # record fields
    choices: tuple | None = None
    nullable: bool = False


def _tname(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check(value: Any, node: F, key: str, file: str) -> None:
    def fail(msg: str) -> None:
        raise ManifestError(f"{file}: key '{key}': {msg}")

    if value is None:
        if node.nullable or node.kind == "any":
            return
        fail(f"expected {node.kind}, got null")
    k = node.kind
    if k == "str" and not isinstance(value, str):
        fail(f"expected str, got {_tname(value)} ({value!r})")
    if k == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        fail(f"expected int, got {_tname(value)} ({value!r})")
    if k == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        fail(f"expected a number, got {_tname(value)} ({value!r})")
    if k == "bool" and not isinstance(value, bool):
        fail(f"expected bool, got {_tname(value)} ({value!r})")
    if k == "scalar" and not isinstance(value, (str, int, float, bool)):
        fail(f"expected a scalar, got {_tname(value)}")
    if k == "list":
        if not isinstance(value, list):
            fail(f"expected a list, got {_tname(value)}")
        for i, v in enumerate(value):
            if node.item is not None:
                _check(v, node.item, f"{key}[{i}]", file)
    if k == "map":
        if not isinstance(value, dict):
            fail(f"expected a mapping, got {_tname(value)}")
        for kk, v in value.items():
            if not isinstance(kk, str):
                fail(f"mapping keys must be strings, got {kk!r}")
            if node.item is not None:
                _check(v, node.item, f"{key}.{kk}", file)
    if k == "record":
        if not isinstance(value, dict):
            fail(f"expected a mapping, got {_tname(value)}")
        assert node.fields is not None
        for kk in value:
            if kk not in node.fields:
                raise ManifestError(f"{file}: key '{key}.{kk}': unknown key; known: {', '.join(node.fields)}"
                                    if key else f"{file}: key '{kk}': unknown key; known: {', '.join(node.fields)}")
        for kk, sub in node.fields.items():
            sk = f"{key}.{kk}" if key else kk
            if kk not in value:
                if sub.required:
                    raise ManifestError(f"{file}: key '{sk}': missing")
                continue
            _check(value[kk], sub, sk, file)
    if node.choices is not None and value not in node.choices:
        fail(f"{value!r} is not one of {', '.join(map(str, node.choices))}")


_PAIR = F("list", item=F("scalar"))
_CITATION = F("record", fields={"key": F("str"), "ref": F("str")})
_FILE = F("record", fields={
    "name": F("str"), "url": F("str", nullable=True), "size": F("scalar"), "sha256": F("str"),
    "extract_to": F("str", required=False), "archive": F("bool", required=False),
    "note": F("str", required=False),
})
_SPLIT = F("record", fields={
    "description": F("str"),
    "where": F("map", required=False, item=F("any")),
    "every": F("record", required=False, fields={"key": F("str"), "n": F("int"),
                                                 "offset": F("int", required=False)}),
    "exclude": F("list", required=False, item=F("str")),
    "random": F("record", required=False, fields={"seed": F("int"), "take": F("list", item=F("number"))}),
    "labelled": F("bool", required=False),
    "expected_count": F("int", required=False, nullable=True),
})
_PROTOCOL = F("record", fields={
    "description": F("str"),
    "source": F("str"),
    "format": F("str", required=False),
    "format_options": F("map", required=False, item=F("any")),
    "splits": F("map", item=_SPLIT),
    "evaluation": F("record", required=False, fields={
        "metric": F("str"), "normaliser": F("str", required=False),
        "keypoints": F("list", required=False, item=F("scalar")), "note": F("str", required=False)}),
    "notes": F("str", required=False),
})
_USED_BY = F("record", fields={"paper": F("str"), "role": F("str"), "chapter": F("str", required=False)})
REAL_SCHEMA = F("record", fields={
    "name": F("str"),
    "kind": F("str", required=False, choices=("real",)),
    "title": F("str"),
    "homepage": F("str"),
    "citation": _CITATION,
    "also_cite": F("list", required=False, item=_CITATION),
    "licence": F("str"),
    "access": F("str", choices=ACCESS_KINDS),
    "files": F("list", item=_FILE),
    "layout": F("list", item=F("str")),
    "format": F("str"),
    "format_options": F("map", required=False, item=F("any")),
    "coordinate_offset": F("number", required=False),
    "keypoints": F("record", fields={"names": F("list", item=F("str")),
                                     "flip_pairs": F("list", item=_PAIR),
                                     "skeleton": F("list", item=_PAIR)}),
    "normaliser": F("record", fields={"kind": F("str", choices=NORMALISERS),
                                      "joints": F("list", required=False, item=F("scalar"))}),
    "classes": F("record", required=False, fields={"count": F("int"), "source": F("str"),
                                                   "names": F("list", required=False, item=F("str"))}),
    "protocols": F("map", item=_PROTOCOL),
    "default_protocol": F("str"),
    "used_by": F("list", item=_USED_BY),
    "notes": F("str", required=False),
})
_GENERATOR = F("record", fields={
    "description": F("str"), "module": F("str"), "source": F("str"),
    "image_size": F("list", item=F("int")), "num_keypoints": F("int"),
    "keypoints": F("list", required=False, item=F("str")),
    "num_classes": F("int", required=False, nullable=True),
    "normaliser": F("str", required=False, choices=NORMALISERS),
    "used_by": F("list", item=_USED_BY),
    "notes": F("str", required=False),
})
SYNTHETIC_SCHEMA = F("record", fields={
    "name": F("str"), "kind": F("str", choices=("synthetic",)), "title": F("str"),
    "description": F("str"), "generators": F("map", item=_GENERATOR),
})


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class FileEntry:
    """One downloadable file of a dataset."""

    name: str
    url: str | None
    size: int | None
    sha256: str | None  # None = unknown
    extract_to: str = "."
    archive: bool = False
    note: str = ""


@dataclass(frozen=True)
class Protocol:
    """One paper's way of splitting a dataset."""

    name: str
    description: str
    source: str
    splits: dict[str, dict[str, Any]]
    format: str | None = None
    format_options: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class Manifest:
    """A validated real-dataset manifest (see the module docstring)."""

    path: Path
    name: str
    title: str
    homepage: str
    citation: dict[str, str]
    licence: str
    access: str
    files: tuple[FileEntry, ...]
    layout: tuple[str, ...]
    format: str
    format_options: dict[str, Any]
    coordinate_offset: float
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    normaliser: str
    normaliser_joints: tuple[int, int] | None
    classes: dict[str, Any]
    protocols: dict[str, Protocol]
    default_protocol: str
    used_by: tuple[dict[str, str], ...]
    notes: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    kind = "real"

    def protocol(self, name: str | None = None) -> Protocol:
        """The named protocol (default: ``default_protocol``); unknown -> error listing known ones."""
        name = name or self.default_protocol
        if name not in self.protocols:
            raise KeyError(f"{self.path}: no protocol {name!r}; known: {', '.join(self.protocols)}")
        return self.protocols[name]

    def spec(self) -> DatasetSpec:
        """The :class:`DatasetSpec` of this dataset's keypoints."""
        names = tuple(self.classes.get("names", ()))
        return DatasetSpec(name=self.name, keypoint_names=self.keypoint_names, flip_pairs=self.flip_pairs,
                           skeleton=self.skeleton, normaliser=self.normaliser,
                           normaliser_joints=self.normaliser_joints,
                           num_classes=self.classes.get("count"), class_names=names)

    def fetch_command(self) -> str:
        """The shell command that fetches this dataset."""
        return f"python -m landmark_study data fetch {self.name}"


@dataclass(frozen=True)
class SyntheticManifest:
    """The manifest of the procedural generators (no files)."""

    path: Path
    name: str
    title: str
    description: str
    generators: dict[str, dict[str, Any]]
    kind = "synthetic"


def _index(names: Sequence[str], v: Any, key: str, file: str) -> int:
    if isinstance(v, bool):
        raise ManifestError(f"{file}: key '{key}': expected a keypoint name or index, got {v!r}")
    if isinstance(v, int):
        if not 0 <= v < len(names):
            raise ManifestError(f"{file}: key '{key}': index {v} outside 0..{len(names) - 1}")
        return v
    if isinstance(v, str) and v in names:
        return names.index(v)
    raise ManifestError(f"{file}: key '{key}': unknown keypoint {v!r}")


def _pairs(names: Sequence[str], raw: list, key: str, file: str) -> tuple[tuple[int, int], ...]:
    out = []
    for i, p in enumerate(raw):
        if len(p) != 2:
            raise ManifestError(f"{file}: key '{key}[{i}]': expected a pair, got {p!r}")
        out.append((_index(names, p[0], f"{key}[{i}][0]", file), _index(names, p[1], f"{key}[{i}][1]", file)))
    return tuple(out)


def _check_where(where: Mapping[str, Any], key: str, file: str) -> None:
    for k, cond in where.items():
        sk = f"{key}.{k}"
        if isinstance(cond, (str, int, float, bool)):
            continue
        if not isinstance(cond, dict) or len(cond) != 1:
            raise ManifestError(f"{file}: key '{sk}': expected a value or a one-key mapping "
                                f"{{{'|'.join(SPLIT_RULE_OPS)}: ...}}, got {cond!r}")
        (op, arg), = cond.items()
        if op not in SPLIT_RULE_OPS:
            raise ManifestError(f"{file}: key '{sk}.{op}': unknown operator; known: {', '.join(SPLIT_RULE_OPS)}")
        ok = {"in": isinstance(arg, list), "not_in": isinstance(arg, list),
              "range": isinstance(arg, list) and len(arg) == 2
              and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in arg),
              }.get(op, isinstance(arg, str))
        if not ok:
            raise ManifestError(f"{file}: key '{sk}.{op}': bad argument {arg!r}")


def _file_entry(d: Mapping[str, Any], key: str, file: str) -> FileEntry:
    sha = d["sha256"]
    if sha != "unknown" and not _SHA256.match(sha):
        raise ManifestError(f"{file}: key '{key}.sha256': expected 64 lower-case hex digits or 'unknown', got {sha!r}")
    size = d["size"]
    if size != "unknown" and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ManifestError(f"{file}: key '{key}.size': expected a byte count or 'unknown', got {size!r}")
    name = d["name"]
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ManifestError(f"{file}: key '{key}.name': must be a plain file name, got {name!r}")
    extract_to = d.get("extract_to", ".")
    if Path(extract_to).is_absolute() or ".." in Path(extract_to).parts:
        raise ManifestError(f"{file}: key '{key}.extract_to': must be a relative path inside the dataset, "
                            f"got {extract_to!r}")
    archive = d.get("archive", name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")))
    return FileEntry(name=name, url=d["url"], size=None if size == "unknown" else size,
                     sha256=None if sha == "unknown" else sha, extract_to=extract_to, archive=archive,
                     note=d.get("note", ""))


def validate_manifest(data: Any, file: str | Path) -> Manifest | SyntheticManifest:
    """Validate parsed YAML ``data`` read from ``file``; return the manifest object."""
    file = str(file)
    if not isinstance(data, dict):
        raise ManifestError(f"{file}: expected a mapping at the top level, got {_tname(data)}")
    if data.get("kind") == "synthetic":
        _check(data, SYNTHETIC_SCHEMA, "", file)
        _check_name(data["name"], file)
        return SyntheticManifest(path=Path(file), name=data["name"], title=data["title"],
                                 description=data["description"], generators=dict(data["generators"]))
    _check(data, REAL_SCHEMA, "", file)
    _check_name(data["name"], file)
    from landmark_study.data.real import PARSERS  # populated on import

    names = tuple(data["keypoints"]["names"])
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ManifestError(f"{file}: key 'keypoints.names': duplicate names {dup}")
    flip = _pairs(names, data["keypoints"]["flip_pairs"], "keypoints.flip_pairs", file)
    skel = _pairs(names, data["keypoints"]["skeleton"], "keypoints.skeleton", file)
    norm = data["normaliser"]
    joints = None
    if "joints" in norm:
        if len(norm["joints"]) != 2:
            raise ManifestError(f"{file}: key 'normaliser.joints': expected two keypoints, got {norm['joints']!r}")
        joints = (_index(names, norm["joints"][0], "normaliser.joints[0]", file),
                  _index(names, norm["joints"][1], "normaliser.joints[1]", file))
    if norm["kind"] in ("torso", "inter_ocular", "shoulder") and joints is None:
        raise ManifestError(f"{file}: key 'normaliser.joints': normaliser {norm['kind']!r} needs two joints")
    fmt = data["format"]
    if fmt not in PARSERS:
        raise ManifestError(f"{file}: key 'format': unknown parser {fmt!r}; known: {', '.join(sorted(PARSERS))}")
    files = tuple(_file_entry(d, f"files[{i}]", file) for i, d in enumerate(data["files"]))
    seen_names = [f.name for f in files]
    if len(set(seen_names)) != len(seen_names):
        raise ManifestError(f"{file}: key 'files': duplicate file names")
    protocols: dict[str, Protocol] = {}
    for pname, p in data["protocols"].items():
        pk = f"protocols.{pname}"
        if "format" in p and p["format"] not in PARSERS:
            raise ManifestError(f"{file}: key '{pk}.format': unknown parser {p['format']!r}; "
                                f"known: {', '.join(sorted(PARSERS))}")
        if not p["splits"]:
            raise ManifestError(f"{file}: key '{pk}.splits': no splits")
        done: list[str] = []
        for sname, s in p["splits"].items():
            sk = f"{pk}.splits.{sname}"
            _check_where(s.get("where") or {}, f"{sk}.where", file)
            for other in s.get("exclude", []):
                if other not in done:
                    raise ManifestError(f"{file}: key '{sk}.exclude': {other!r} is not a split listed before it")
            if "random" in s and len(s["random"]["take"]) != 2:
                raise ManifestError(f"{file}: key '{sk}.random.take': expected [start, stop]")
            done.append(sname)
        ev = p.get("evaluation") or {}
        if "normaliser" in ev and ev["normaliser"] not in NORMALISERS + ("eye_centres", "face_size", "wrist_width"):
            raise ManifestError(f"{file}: key '{pk}.evaluation.normaliser': unknown {ev['normaliser']!r}")
        for i, kname in enumerate(ev.get("keypoints", [])):
            _index(names, kname, f"{pk}.evaluation.keypoints[{i}]", file)
        protocols[pname] = Protocol(name=pname, description=p["description"], source=p["source"],
                                    splits=dict(p["splits"]), format=p.get("format"),
                                    format_options=dict(p.get("format_options") or {}), evaluation=dict(ev),
                                    notes=p.get("notes", ""))
    if data["default_protocol"] not in protocols:
        raise ManifestError(f"{file}: key 'default_protocol': {data['default_protocol']!r} is not among "
                            f"protocols ({', '.join(protocols)})")
    classes = dict(data.get("classes") or {})
    if "names" in classes and len(classes["names"]) != classes["count"]:
        raise ManifestError(f"{file}: key 'classes.names': {len(classes['names'])} names for count {classes['count']}")
    m = Manifest(
        path=Path(file), name=data["name"], title=data["title"], homepage=data["homepage"],
        citation=dict(data["citation"]), licence=data["licence"], access=data["access"], files=files,
        layout=tuple(data["layout"]), format=fmt, format_options=dict(data.get("format_options") or {}),
        coordinate_offset=float(data.get("coordinate_offset", 0.0)), keypoint_names=names, flip_pairs=flip,
        skeleton=skel, normaliser=norm["kind"], normaliser_joints=joints, classes=classes, protocols=protocols,
        default_protocol=data["default_protocol"], used_by=tuple(dict(u) for u in data["used_by"]),
        notes=data.get("notes", ""), raw=data,
    )
    try:
        m.spec()
    except ValueError as e:
        raise ManifestError(f"{file}: key 'keypoints': {e}") from None
    return m


def _check_name(name: str, file: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name):
        raise ManifestError(f"{file}: key 'name': {name!r} must be lower-case letters, digits and '_'")
    if Path(file).suffix in (".yaml", ".yml") and Path(file).stem != name:
        raise ManifestError(f"{file}: key 'name': {name!r} differs from the file name {Path(file).stem!r}")


def list_manifests(directory: str | Path | None = None, kind: str | None = None) -> list[str]:
    """Names of the manifests in ``directory`` (default :func:`manifest_dir`), sorted.

    ``kind`` = ``"real"`` or ``"synthetic"`` filters by kind (this loads them).
    """
    d = Path(directory) if directory is not None else manifest_dir()
    names = sorted(p.stem for p in d.glob("*.yaml"))
    if kind is None:
        return names
    return [n for n in names if load_manifest(n, d).kind == kind]


def load_manifest(name: str, directory: str | Path | None = None) -> Manifest | SyntheticManifest:
    """Load and validate ``<directory>/<name>.yaml``; unknown names list the known ones."""
    d = Path(directory) if directory is not None else manifest_dir()
    path = d / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_manifests(d)) or "(none)"
        raise KeyError(f"no dataset manifest {name!r} in {d}; known: {known}")
    return load_manifest_file(path)


def load_manifest_file(path: str | Path) -> Manifest | SyntheticManifest:
    """Load and validate one manifest file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{path}{where}: invalid YAML: {e}") from None
    return validate_manifest(data, path)
