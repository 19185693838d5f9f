"""Sweeps on a 2-worker dask LocalCluster; a restarted sweep runs only what is missing."""

from __future__ import annotations

import pytest

from conftest import tiny_config
from landmark_study.runs import ResultsStore, run, run_key
from landmark_study.sweep import run_grid


@pytest.mark.slow
def test_restarted_sweep_runs_only_missing(tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = [tiny_config(seed=s) for s in range(3)]
    # a sweep "killed" after its first run: only that run is in the store
    done = run(configs[0], store, progress=False)
    stamp = store.path(done.key).read_bytes()
    rep = run_grid(configs, store, workers=2, progress=False)
    assert rep.cached == [done.key]
    assert sorted(rep.ran) == sorted(run_key(c) for c in configs[1:])
    assert not rep.failed and len(rep.results) == 3
    assert store.path(done.key).read_bytes() == stamp, "a finished run was retrained"
    again = run_grid(configs, store, workers=2, progress=False)
    assert again.ran == [] and len(again.cached) == 3


def test_sequential_grid_dedupes_and_reports_failures(tmp_path, monkeypatch):
    from landmark_study.methods.supervised import Supervised

    orig = Supervised.training_step

    def fail_for_seed_1(self, lb, ub, step):
        out = orig(self, lb, ub, step)
        if self.config.seed == 1:
            out["sup"] = out["sup"] * float("inf")
        return out

    monkeypatch.setattr(Supervised, "training_step", fail_for_seed_1)
    store = ResultsStore(tmp_path)
    configs = [tiny_config(), tiny_config(), tiny_config(seed=1)]
    rep = run_grid(configs, store, progress=False)
    assert rep.ran == [run_key(configs[0])]  # the duplicate is trained once
    assert list(rep.failed) == [run_key(configs[2])] and "inf" in rep.failed[run_key(configs[2])]
    assert len(rep.results) == 2  # the failed run is not served as a result


def test_sweep_record_round_trip_and_status_cell(tmp_path):
    from landmark_study.book import _sweep_cell
    from landmark_study.sweep import SweepReport, record_sweep, sweep_records

    store = ResultsStore(tmp_path / "store")
    rep = SweepReport(results=[], cached=["a", "b"], ran=["c"], failed={"d": "boom"})
    rec = record_sweep(store, chapter="ch", profile="full", params_file="params/ch/full.yaml", report=rep,
                       wall_s=123.4, workers=2)
    assert (rec["trained"], rec["cached"], rec["failed"], rec["runs"]) == (1, 2, 1, 1)
    with open(store.root / "sweeps.jsonl", "a") as f:
        f.write("{not json\n")  # a torn line (killed while writing) is skipped, not fatal
    record_sweep(store, chapter="ch", profile="full", params_file="x", report=SweepReport(results=[]),
                 wall_s=1.0, workers=1)
    recs = sweep_records(store.root)
    assert [r["wall_s"] for r in recs] == [123.4, 1.0]
    assert list(store.root.glob("*.json")) == []  # the log is not mistaken for a stored run
    assert _sweep_cell(recs[0]).startswith("2.1 min, 1 trained (2 cached), 2 workers")
    assert _sweep_cell(None) == "–"
    assert sweep_records(tmp_path / "nowhere") == []


def test_status_prefers_the_sweep_that_trained_the_whole_grid():
    from landmark_study.book import _representative

    whole = {"trained": 118, "cached": 0, "failed": 0, "wall_s": 2266.5}
    part = {"trained": 18, "cached": 100, "failed": 0, "wall_s": 283.0}
    assert _representative([whole, part]) is whole
    assert _representative([part]) is part
    assert _representative([]) is None


def test_budget_lines_hold_costs_against_the_budgets():
    from landmark_study.book import budget_lines

    costs = {"a": {"runs": 4, "stored": 4, "scratch_s": 40 * 60, "workers": 2, "scratch_basis": "x"},
             "b": {"runs": 3, "stored": 2, "scratch_s": 50 * 60, "workers": 1, "scratch_basis": "y"},
             "c": {}}
    lines = budget_lines(costs, build_s=120.0, quick_s=20 * 60)
    assert lines[0].startswith("- a: full profile from scratch about 40.0 min on 2 worker(s) (x): within")
    assert "(y; 1 of 3 runs not stored)" in lines[1] and "**over** the 45-minute budget" in lines[1]
    assert "about 1.50 h, within the 5-hour budget" in lines[2]
    assert "2.0 min, within the 10-minute budget" in lines[3]
    assert "20.0 min, **over** the 15-minute budget" in lines[4]
    assert len(lines) == 5


def test_budget_lines_scale_a_sweep_to_the_reference_machine_speed():
    from landmark_study.bench import REFERENCE_PROBE_MS
    from landmark_study.book import budget_lines

    # measured 60 min on a machine 1.5x slower than the reference: 40 min at reference speed
    costs = {"a": {"runs": 4, "stored": 4, "scratch_s": 60 * 60, "scratch_ref_s": 40 * 60,
                   "speed_probe_ms": 1.5 * REFERENCE_PROBE_MS, "workers": 2, "scratch_basis": "x"}}
    line = budget_lines(costs)[0]
    assert line.startswith("- a: full profile from scratch about 40.0 min on 2 worker(s)")
    assert f"measured 60.0 min on a machine whose speed probe took {1.5 * REFERENCE_PROBE_MS:.1f} ms/step" in line
    assert line.endswith("within the 45-minute budget.")
    # without a probe the measured time is the estimate
    costs["a"].pop("speed_probe_ms")
    costs["a"].pop("scratch_ref_s")
    assert "about 60.0 min" in budget_lines(costs)[0] and "**over**" in budget_lines(costs)[0]


def test_training_cost_scales_only_a_probed_sweep(tmp_path, monkeypatch):
    import json

    from landmark_study import book
    from landmark_study.bench import REFERENCE_PROBE_MS
    from landmark_study.sweep import SWEEP_LOG

    params = tmp_path / "params" / "sc_ti_te"
    params.mkdir(parents=True)
    store = tmp_path / "store"
    store.mkdir()
    (params / "full.yaml").write_text(f"profile: full\nseeds: [0]\nstore: {store}\nworkers: 2\n")
    monkeypatch.setattr(book, "params_file", lambda chapter, profile: params / f"{profile}.yaml")
    rec = {"chapter": "sc_ti_te", "runs": 9, "trained": 9, "cached": 0, "failed": 0, "wall_s": 1200.0,
           "finished": "2999-01-01T00:00:00Z"}
    (store / SWEEP_LOG).write_text(json.dumps(rec) + "\n")
    c = book.training_cost("sc_ti_te")
    assert c["scratch_s"] == c["scratch_ref_s"] == 1200.0 and c["speed_probe_ms"] is None
    (store / SWEEP_LOG).write_text(json.dumps({**rec, "speed_probe_ms": 2 * REFERENCE_PROBE_MS}) + "\n")
    c = book.training_cost("sc_ti_te")
    assert c["scratch_s"] == 1200.0 and c["scratch_ref_s"] == pytest.approx(600.0)


def test_record_sweep_keeps_the_speed_probe(tmp_path):
    from landmark_study.runs import ResultsStore
    from landmark_study.sweep import SweepReport, record_sweep, sweep_records

    store = ResultsStore(tmp_path)
    record_sweep(store, chapter="c", profile="full", params_file="p", report=SweepReport(results=[]), wall_s=1.0,
                 workers=1, speed_probe_ms=51.912)
    record_sweep(store, chapter="c", profile="full", params_file="p", report=SweepReport(results=[]), wall_s=1.0, workers=1)
    a, b = sweep_records(tmp_path)
    assert a["speed_probe_ms"] == 51.91 and "speed_probe_ms" not in b
