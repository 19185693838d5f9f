"""Synthetic registry, on-disk cache and split loader."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import landmark_study.data as data
from landmark_study.data import synthetic as syn
from landmark_study.data.sample import ArrayDataset, DatasetSpec
from landmark_study.data.synthetic import shapes as S

REAL_GENERATE_SHAPES = S.generate_shapes


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDMARK_STUDY_DATA", str(tmp_path))
    return tmp_path


def _same(a: ArrayDataset, b: ArrayDataset) -> None:
    assert a.spec == b.spec
    for key in ("images", "keypoints", "visibility", "bbox", "labels"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.meta.keys() == b.meta.keys()
    for k in a.meta:
        np.testing.assert_array_equal(a.meta[k], b.meta[k], err_msg=k)
        assert a.meta[k].dtype == b.meta[k].dtype


@pytest.fixture
def counter(monkeypatch):
    calls = []
    real = S.generate_shapes

    def counting(n, seed, size=60, **kw):
        calls.append((n, seed, size, kw))
        return real(n, seed, size, **kw)

    monkeypatch.setattr(S, "generate_shapes", counting)
    return calls


TINY_SPEC = DatasetSpec(name="tiny", keypoint_names=("a",))


def _tiny_module(calls):
    mod = types.ModuleType("fake_tiny_generators")
    mod.VERSION = 3
    mod.TINY_SPEC = TINY_SPEC
    mod.DEFAULT_SPLIT_SIZES = {"train": 6, "val": 4}

    def generate_tiny(n, seed, size=8, *, start=0):
        calls.append((n, start))
        imgs = np.zeros((n, size, size, 3), np.uint8)
        kps = np.zeros((n, 1, 2), np.float32)
        for i in range(n):
            rng = np.random.default_rng([seed, start + i])
            imgs[i] = rng.integers(0, 256, (size, size, 3))
            kps[i] = rng.uniform(0, size - 1, (1, 2))
        return ArrayDataset(mod.TINY_SPEC, imgs, kps, np.ones((n, 1), np.float32),
                            np.zeros((n, 4), np.float32), None, {"idx": np.arange(start, start + n)})

    mod.generate_tiny = generate_tiny
    return mod


@pytest.fixture
def tiny(monkeypatch):
    calls: list = []
    mod = _tiny_module(calls)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(syn.SYNTHETIC, "tiny", f"{mod.__name__}:generate_tiny")
    return mod, calls


# ----------------------------------------------------------------------------- registry


def test_registry_lazy_and_public_api():
    assert set(syn.SYNTHETIC) >= {"shapes", "blocks", "figures", "faces"}
    assert all(":" in v for v in syn.SYNTHETIC.values())
    for name in ("DatasetSpec", "Sample", "ArrayDataset", "load_synthetic", "make_splits",
                 "labeled_subset", "get_dataset"):
        assert hasattr(data, name)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="unknown synthetic dataset 'nope'.*blocks.*shapes"):
        syn.load_synthetic("nope", 3, 0)
    with pytest.raises(ValueError, match="known"):
        syn.get_dataset("nope", "train")


def test_missing_module_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(syn.SYNTHETIC, "ghost", "landmark_study.data.synthetic.ghost_xyz:generate_ghost")
    with pytest.raises(ImportError, match="ghost_xyz"):
        syn.load_synthetic("ghost", 2, 0)


def test_bad_split_and_arguments():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        syn.get_dataset("shapes", "dev", n=2)
    with pytest.raises(ValueError, match="n must be >= 0"):
        syn.load_synthetic("shapes", -1, 0)
    with pytest.raises(TypeError, match="seed must be an int"):
        syn.load_synthetic("shapes", 2, 0.5)


# ----------------------------------------------------------------------------- cache


def test_cache_hit_skips_generator(counter, data_dir):
    a = syn.load_synthetic("shapes", 6, 1)
    assert len(counter) == 1
    files = list((data_dir / "synthetic").iterdir())
    assert len(files) == 1 and files[0].name.startswith(f"shapes-v{S.VERSION}-")
    assert files[0].suffix == ".npz"
    b = syn.load_synthetic("shapes", 6, 1)
    assert len(counter) == 1  # served from the cache
    _same(a, b)
    _same(a, REAL_GENERATE_SHAPES(6, 1))
    assert b.spec is not None and b.spec == S.SHAPES_SPEC
    # size=None and the default size share one file
    syn.load_synthetic("shapes", 6, 1, size=60)
    assert len(counter) == 1


def test_cache_matches_fresh_generation_blocks(data_dir):
    a = syn.load_synthetic("blocks", 5, 2)
    b = syn.load_synthetic("blocks", 5, 2)
    _same(a, b)
    _same(b, S.generate_blocks(5, 2))


def test_cache_key_depends_on_every_argument(counter):
    syn.load_synthetic("shapes", 4, 1)
    syn.load_synthetic("shapes", 5, 1)
    syn.load_synthetic("shapes", 4, 2)
    syn.load_synthetic("shapes", 4, 1, size=32)
    syn.load_synthetic("shapes", 4, 1, label_margin=0.05)
    paths = {
        syn.cache_path("shapes", 4, 1), syn.cache_path("shapes", 5, 1), syn.cache_path("shapes", 4, 2),
        syn.cache_path("shapes", 4, 1, size=32), syn.cache_path("shapes", 4, 1, label_margin=0.05),
    }
    assert len(paths) == 5 and all(p.exists() for p in paths)
    assert len(counter) == 5
    assert counter[-1][3] == {"label_margin": 0.05}


def test_no_cache_neither_reads_nor_writes(counter, data_dir):
    syn.load_synthetic("shapes", 3, 0, cache=False)
    syn.load_synthetic("shapes", 3, 0, cache=False)
    assert len(counter) == 2
    assert not (data_dir / "synthetic").exists() or not any((data_dir / "synthetic").iterdir())


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupt_cache_is_regenerated_with_warning(counter, damage):
    a = syn.load_synthetic("shapes", 8, 0)
    path = syn.cache_path("shapes", 8, 0)
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"not a zip file at all", "truncate": raw[: len(raw) // 2], "empty": b""}[damage])
    with pytest.warns(RuntimeWarning, match=path.name):
        b = syn.load_synthetic("shapes", 8, 0)
    assert len(counter) == 2
    _same(a, b)
    c = syn.load_synthetic("shapes", 8, 0)  # the rewritten file is good again
    assert len(counter) == 2
    _same(a, c)


def test_shape_mismatch_is_regenerated_with_warning(counter):
    path = syn.cache_path("shapes", 8, 0)
    syn._save(S.generate_shapes(5, 0), path)  # a valid file holding the wrong number of samples
    with pytest.warns(RuntimeWarning, match=f"{path.name}.*5 samples, expected 8"):
        b = syn.load_synthetic("shapes", 8, 0)
    assert len(b) == 8 and len(counter) == 2


def test_stale_spec_is_regenerated(tiny, monkeypatch):
    mod, calls = tiny
    syn.load_synthetic("tiny", 3, 0)
    monkeypatch.setattr(mod, "TINY_SPEC", DatasetSpec(name="tiny", keypoint_names=("b",)))
    with pytest.warns(RuntimeWarning, match="module's spec differed"):
        syn.load_synthetic("tiny", 3, 0)
    assert len(calls) == 2


def test_option_dependent_spec_is_kept_without_warnings(tiny, monkeypatch, recwarn):
    mod, calls = tiny
    other = DatasetSpec(name="tiny", keypoint_names=("renamed",))
    real = mod.generate_tiny

    def gen(n, seed, size=8, *, start=0, rename=False):
        ds = real(n, seed, size, start=start)
        return ArrayDataset(other, ds.images, ds.keypoints, ds.visibility, ds.bbox, ds.labels, ds.meta) if rename else ds

    monkeypatch.setattr(mod, "generate_tiny", gen)
    a = syn.load_synthetic("tiny", 3, 0, rename=True)
    b = syn.load_synthetic("tiny", 3, 0, rename=True)
    assert a.spec == b.spec == other  # the generator's spec, not the module constant
    assert len(calls) == 1 and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_atomic_write_leaves_no_temp_files(data_dir, monkeypatch):
    syn.load_synthetic("blocks", 4, 0)
    syn.load_synthetic("shapes", 4, 0)
    names = [p.name for p in (data_dir / "synthetic").iterdir()]
    assert len(names) == 2 and all(n.endswith(".npz") and not n.startswith(".") for n in names)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        syn.load_synthetic("shapes", 5, 0)
    assert sorted(p.name for p in (data_dir / "synthetic").iterdir()) == sorted(names)


def test_labels_none_and_meta_round_trip(tiny):
    a = syn.load_synthetic("tiny", 5, 1)
    b = syn.load_synthetic("tiny", 5, 1)
    assert b.labels is None
    _same(a, b)
    assert syn.cache_path("tiny", 5, 1).name.startswith("tiny-v3-")


def test_progress_chunks_match_single_call(tiny, monkeypatch):
    _, calls = tiny
    monkeypatch.setattr(syn, "CHUNK", 4)
    monkeypatch.delenv("CI", raising=False)
    whole = syn.load_synthetic("tiny", 10, 2, cache=False)
    assert calls == [(10, 0)]
    chunked = syn.load_synthetic("tiny", 10, 2, cache=False, progress=True)
    assert calls[1:] == [(4, 0), (4, 4), (2, 8)]
    _same(whole, chunked)
    monkeypatch.setenv("CI", "1")  # progress bars off under CI: a single call
    syn.load_synthetic("tiny", 10, 2, cache=False, progress=True)
    assert calls[-1] == (10, 0)


# ----------------------------------------------------------------------------- splits


def test_split_seeds_distinct_and_deterministic():
    seeds = {syn.split_seed(s, sp) for s in range(5) for sp in syn.SPLITS}
    assert len(seeds) == 15
    assert syn.split_seed(3, "val") == syn.split_seed(3, "val")
    assert all(0 <= s < 2**63 for s in seeds)


def test_get_dataset_splits_disjoint_and_deterministic():
    parts = {sp: syn.get_dataset("shapes", sp, n=30, seed=0) for sp in syn.SPLITS}
    flat = {sp: {im.tobytes() for im in ds.images} for sp, ds in parts.items()}
    assert all(len(v) == 30 for v in flat.values())
    assert not flat["train"] & flat["val"] and not flat["train"] & flat["test"] and not flat["val"] & flat["test"]
    again = syn.get_dataset("shapes", "val", n=30, seed=0)
    _same(parts["val"], again)
    other = syn.get_dataset("shapes", "val", n=30, seed=1)
    assert not np.array_equal(other.images, again.images)
    # a split is a prefix-stable stream: fewer samples = the first ones
    _same(syn.get_dataset("shapes", "val", n=10, seed=0), parts["val"].subset(range(10)))


def test_default_split_sizes(tiny):
    assert syn.default_split_sizes("blocks") == {"train": 3200, "val": 3200, "test": 3200}
    assert syn.default_split_sizes("shapes")["train"] == 3200
    assert syn.default_split_sizes("tiny") == {"train": 6, "val": 4, "test": syn.FALLBACK_SPLIT_SIZES["test"]}
    assert len(syn.get_dataset("tiny", "train")) == 6
    assert len(syn.get_dataset("tiny", "val")) == 4


def test_generation_speed_positive():
    speed = syn.generation_speed("shapes", n=10)
    assert np.isfinite(speed) and speed > 0
