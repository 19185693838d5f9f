"""verify: retraining a stored run reproduces it; differences are found and measured."""

from __future__ import annotations

import math

import pytest

from conftest import tiny_config
from landmark_study.runs import ResultsStore, run, run_key
from landmark_study.verify import compare_finals, pick_runs, report, verify_runs


def test_compare_finals_known_cases():
    a = {"pck": 0.5, "per": [0.1, None, 0.3], "ms_per_step": 10.0, "name": "x"}
    assert compare_finals(a, dict(a, ms_per_step=99.0))["identical"]  # timings are not results
    d = compare_finals(a, dict(a, pck=0.75))
    assert not d["identical"] and d["differing"] == ["pck"] and d["max_abs_diff"] == pytest.approx(0.25)
    d = compare_finals(a, dict(a, per=[0.1, 0.2, 0.3]))  # a nan where the other has a number
    assert d["differing"] == ["per"] and math.isinf(d["max_abs_diff"])
    d = compare_finals(a, {k: v for k, v in a.items() if k != "name"})
    assert not d["identical"] and d["differing"] == [] and d["only_in_one"] == ["name"]
    assert compare_finals(a, dict(a, name="y"))["differing"] == ["name"]


def test_retraining_a_stored_run_reproduces_it(tmp_path):
    ref = ResultsStore(tmp_path / "ref")
    cfgs = [tiny_config(seed=s) for s in (0, 1)]
    for c in cfgs:
        run(c, ref)
    assert [run_key(c) for c in pick_runs(cfgs, ref, 1)] in ([run_key(cfgs[0])], [run_key(cfgs[1])])
    rows = verify_runs(cfgs, ref, tmp_path / "scratch")
    assert [r["identical"] for r in rows] == [True, True], rows
    assert (tmp_path / "scratch" / "checkpoints").exists()  # weights did not go to the user's cache
    assert "2 of 2 runs reproduced exactly" in report(rows)


def test_a_changed_reference_is_reported(tmp_path):
    ref = ResultsStore(tmp_path / "ref")
    c = tiny_config()
    res = run(c, ref)
    res.final["pck@0.1"] = res.final["pck@0.1"] + 0.5
    ref.put(res)
    rows = verify_runs([c], ref, tmp_path / "scratch")
    assert not rows[0]["identical"] and "pck@0.1" in rows[0]["differing"]
    assert rows[0]["max_abs_diff"] == pytest.approx(0.5)


def test_a_run_missing_from_the_reference_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="not in the reference store"):
        verify_runs([tiny_config()], ResultsStore(tmp_path / "ref"), tmp_path / "scratch")
