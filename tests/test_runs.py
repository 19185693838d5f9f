"""The results store: keys, atomic writes, corruption detection, failed runs."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_config
from landmark_study import runs
from landmark_study.runs import ResultsStore, RunResult, run, run_key


def _result(key="k" * 16, **kw):
    return RunResult(key=key, config={"a": 1}, method_version="1", status="done", final={"pck@0.1": 0.5}, **kw)


def test_key_depends_on_config_and_version():
    a, b = tiny_config(), tiny_config(seed=1)
    assert run_key(a) == run_key(tiny_config())
    assert run_key(a) != run_key(b)
    assert run_key(a, "1") != run_key(a, "2")


def test_put_get_round_trip(tmp_path):
    s = ResultsStore(tmp_path)
    s.put(_result())
    assert s.get("k" * 16).final == {"pck@0.1": 0.5}
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage"])
def test_corrupted_entry_is_reported_and_set_aside(tmp_path, damage):
    s = ResultsStore(tmp_path)
    p = s.put(_result())
    text = p.read_text()
    if damage == "truncate":
        p.write_text(text[: len(text) // 2])
    elif damage == "edit":
        p.write_text(text.replace("0.5", "0.9"))
    else:
        p.write_bytes(b"\x00\xff")
    with pytest.warns(UserWarning, match="recomputed"):
        assert s.get("k" * 16) is None
    assert not p.exists() and list(tmp_path.glob("*.corrupt-*"))


def test_corrupted_entry_is_recomputed(tmp_path):
    s = ResultsStore(tmp_path)
    cfg = tiny_config()
    first = run(cfg, s, progress=False)
    p = s.path(first.key)
    p.write_text(p.read_text()[:100])
    with pytest.warns(UserWarning, match="recomputed"):
        again = run(cfg, s, progress=False)
    assert again.status == "done" and again.final["pck@0.1"] == pytest.approx(first.final["pck@0.1"])
    assert s.get(first.key) is not None


def test_failed_entry_is_not_a_cache_hit(tmp_path):
    s = ResultsStore(tmp_path)
    s.put(RunResult(key="f" * 16, config={}, method_version="1", status="failed", error="boom"))
    assert s.get("f" * 16) is None
    assert s.read("f" * 16).error == "boom"


def test_run_is_cached_and_records_provenance(tmp_path, monkeypatch):
    s = ResultsStore(tmp_path)
    cfg = tiny_config()
    r = run(cfg, s, progress=False)
    assert r.status == "done"
    for k in ("git_commit", "git_dirty", "time", "host", "torch", "device", "wall_time_s"):
        assert k in r.provenance
    assert len(r.predictions["points"]) == 16 and len(r.predictions["points"][0]) == 14
    calls = []
    monkeypatch.setattr("landmark_study.train.train", lambda *a, **k: calls.append(1))
    assert run(cfg, s).final == r.final and not calls
    json.loads(s.path(r.key).read_text())  # plain JSON text


def test_atomic_write_failure_keeps_old_entry(tmp_path, monkeypatch):
    s = ResultsStore(tmp_path)
    s.put(_result())

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(runs.os, "replace", boom)
    bad = _result()
    bad.final = {"pck@0.1": 0.1}
    with pytest.raises(OSError):
        s.put(bad)
    monkeypatch.undo()
    assert s.get("k" * 16).final == {"pck@0.1": 0.5}
    assert not list(tmp_path.glob("*.tmp"))


def test_trained_method_has_the_run_weights_and_recovers_missing_ones(tmp_path):
    """trained_method loads the run's final weights; with the weights file gone
    (a fresh clone of committed results) it retrains to the same weights and
    leaves the stored entry untouched."""
    import torch

    from landmark_study.runs import ResultsStore, run, trained_method, weights_path
    from landmark_study.train import load_run_data

    store = ResultsStore(tmp_path / "store")
    cfg = tiny_config()
    res = run(cfg, store, progress=False)
    assert weights_path(res.key).exists()
    images = torch.from_numpy(load_run_data(cfg.data).test.images[:4]).permute(0, 3, 1, 2).float() / 255
    m1 = trained_method(cfg, store)
    p1, _ = m1.predict(images)
    # the stored test predictions came from the same weights
    assert torch.allclose(p1, torch.tensor(res.predictions["points"][:4]), atol=0.01)
    entry_before = store.path(res.key).read_bytes()
    weights_path(res.key).unlink()
    m2 = trained_method(cfg, store)
    p2, _ = m2.predict(images)
    assert torch.allclose(p1, p2)
    assert store.path(res.key).read_bytes() == entry_before


def test_key_changes_with_the_data_generator_version(monkeypatch):
    from landmark_study.data.synthetic import figures

    cfg = tiny_config()
    before = run_key(cfg, "1")
    monkeypatch.setattr(figures, "VERSION", figures.VERSION + 1)
    assert run_key(cfg, "1") != before
