"""Dataset manifests: every shipped manifest validates; broken ones are rejected naming file and key."""

from __future__ import annotations

import copy
import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from landmark_study.data.manifests import (Manifest, ManifestError, SyntheticManifest, list_manifests, load_manifest,
                                           load_manifest_file, manifest_dir)
from landmark_study.data.real import PARSERS

EXPECTED = {"mpii", "lsp", "cub", "atrw", "coco", "aflw", "aflw5", "300w", "celeba", "ls3d", "bbcpose", "h36m",
            "penn_action", "cat_heads", "hgr1", "multipie", "synthetic"}
REAL = sorted(EXPECTED - {"synthetic"})


def test_all_manifests_present_and_valid():
    assert set(list_manifests()) == EXPECTED
    assert set(list_manifests(kind="real")) == set(REAL)


@pytest.mark.parametrize("name", REAL)
def test_real_manifest_is_consistent(name):
    m = load_manifest(name)
    assert isinstance(m, Manifest) and m.name == name and m.path == manifest_dir() / f"{name}.yaml"
    spec = m.spec()
    assert spec.num_keypoints == len(m.keypoint_names) > 0
    perm = spec.flip_permutation()
    assert sorted(perm.tolist()) == list(range(spec.num_keypoints))  # flip is a permutation...
    assert (perm[perm] == range(spec.num_keypoints)).all()  # ...and an involution
    assert m.layout and m.used_by and m.citation["key"] and m.licence
    for f in m.files:
        assert f.sha256 is None or len(f.sha256) == 64  # no invented checksums: unknown or a real digest
        assert f.url is None or f.url.startswith(("http://", "https://"))
    # every format option is an option of the parser that receives it
    for p in m.protocols.values():
        fmt = p.format or m.format
        opts = dict(p.format_options) if p.format else {**m.format_options, **p.format_options}
        opts.pop("coordinate_offset", None)
        params = inspect.signature(PARSERS[fmt]).parameters
        assert set(opts) <= set(params) - {"root"}, (name, p.name, set(opts) - set(params))
        assert p.splits and p.description and p.source


def test_synthetic_manifest_matches_generators():
    m = load_manifest("synthetic")
    assert isinstance(m, SyntheticManifest) and set(m.generators) == {"shapes", "blocks", "figures", "faces"}
    for gname, g in m.generators.items():
        mod_name, fn_name = g["module"].split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:  # pragma: no cover - generator module not written yet
            pytest.skip(f"{mod_name} not importable")
        assert callable(getattr(mod, fn_name))
        spec = getattr(mod, f"{gname.upper()}_SPEC")
        assert spec.num_keypoints == g["num_keypoints"]
        if "keypoints" in g:
            assert tuple(g["keypoints"]) == spec.keypoint_names
        assert spec.num_classes == g.get("num_classes")
        assert g.get("normaliser", spec.normaliser) == spec.normaliser


def test_known_protocol_facts():
    cub = load_manifest("cub").protocol("moskvyak2021").splits
    assert cub["train"]["where"] == {"class_id": {"range": [1, 100]}}
    assert cub["test"]["where"] == {"class_id": {"range": [151, 200]}}
    assert load_manifest("cub").flip_pairs == ((6, 10), (7, 11), (8, 12))
    lsp = load_manifest("lsp").protocol().splits
    assert lsp["train"]["expected_count"] == 10000 and lsp["test"]["expected_count"] == 1000
    assert load_manifest("h36m").normaliser_joints == (25, 17)
    assert load_manifest("celeba").protocol().splits["test"]["where"] == {"file": {"in_file": "celeb/MAFL/testing.txt"}}


# ----------------------------------------------------------------------------- rejections


@pytest.fixture()
def good_lsp():
    return yaml.safe_load((manifest_dir() / "lsp.yaml").read_text())


def _write(tmp_path: Path, data, name="lsp") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.mark.parametrize("mutate, key, message", [
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d.pop("licence"), "licence", "missing"),
    (lambda d: d.update(title=3), "title", "expected str, got int"),
    (lambda d: d["files"][1].update(sha256="abc"), r"files\[1\]\.sha256", "64 lower-case hex"),
    (lambda d: d["files"][0].update(size="big"), r"files\[0\]\.size", "byte count"),
    (lambda d: d["files"][0].update(extra=1), r"files\[0\]\.extra", "unknown key"),
    (lambda d: d["files"][0].update(extract_to="../x"), r"files\[0\]\.extract_to", "relative path"),
    (lambda d: d["keypoints"]["flip_pairs"].append(["r_ankle", "tail"]), r"keypoints\.flip_pairs\[6\]\[1\]",
     "unknown keypoint 'tail'"),
    (lambda d: d["normaliser"].update(kind="ears"), r"normaliser\.kind", "not one of"),
    (lambda d: d.update(format="nope"), "format", "unknown parser 'nope'"),
    (lambda d: d.update(default_protocol="x"), "default_protocol", "not among"),
    (lambda d: d["protocols"]["moskvyak2021"]["splits"]["val"]["where"].update(index={"like": 3}),
     r"protocols\.moskvyak2021\.splits\.val\.where\.index\.like", "unknown operator"),
    (lambda d: d["protocols"]["moskvyak2021"]["splits"]["val"].update(exclude=["test"]),
     r"protocols\.moskvyak2021\.splits\.val\.exclude", "not a split listed before"),
    (lambda d: d["protocols"]["moskvyak2021"]["splits"]["train"].update(expected_count="many"),
     r"protocols\.moskvyak2021\.splits\.train\.expected_count", "expected int"),
    (lambda d: d.update(name="other"), "name", "differs from the file name"),
])
def test_broken_manifest_is_rejected_naming_file_and_key(tmp_path, good_lsp, mutate, key, message):
    data = copy.deepcopy(good_lsp)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ManifestError, match=rf"{tmp_path}/lsp\.yaml: key '{key}': .*{message}"):
        load_manifest_file(path)


def test_good_copy_loads_and_bad_yaml_names_line(tmp_path, good_lsp):
    _write(tmp_path, good_lsp)
    assert load_manifest("lsp", tmp_path).name == "lsp"
    (tmp_path / "bad.yaml").write_text("name: bad\ntitle: [unclosed\n")
    with pytest.raises(ManifestError, match=r"bad\.yaml, line 3: invalid YAML"):
        load_manifest("bad", tmp_path)
    with pytest.raises(KeyError, match=r"no dataset manifest 'zzz'.*known: bad, lsp"):
        load_manifest("zzz", tmp_path)
