"""Claims: verdict rules on known cases, metric paths, file validation, stale runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import tiny_config
from landmark_study import claims
from landmark_study.claims import Rule, decide, load_claims, metric_value
from landmark_study.config import ConfigError
from landmark_study.runs import RunResult


def test_bootstrap_of_constant_is_the_constant():
    assert claims.bootstrap_ci(np.array([0.5, 0.5, 0.5])) == (0.5, 0.5)
    assert claims.bootstrap_ci(np.array([2.0, 2.0, 2.0]), np.array([0.5, 0.5, 0.5])) == (1.5, 1.5)


@pytest.mark.parametrize("a,b,kind,expected", [
    ([0.80, 0.81, 0.82], [0.60, 0.61, 0.62], "greater", "reproduced"),
    ([0.60, 0.61, 0.62], [0.80, 0.81, 0.82], "greater", "not reproduced"),
    ([0.60, 0.61, 0.62], [0.80, 0.81, 0.82], "less", "reproduced"),
    ([0.50, 0.70, 0.60], [0.55, 0.65, 0.58], "greater", "inconclusive"),
])
def test_comparison_rules(a, b, kind, expected):
    d = decide(Rule(kind, "a", "b"), np.array(a), np.array(b))
    assert d["verdict"] == expected
    assert d["ours_mean"] == pytest.approx(np.mean(a) - np.mean(b))
    assert d["seeds"] == 3


def test_min_effect_turns_a_confident_small_effect_into_not_reproduced():
    a, b = np.array([0.610, 0.611, 0.612]), np.array([0.600, 0.601, 0.602])  # +0.01, confidently
    assert decide(Rule("greater", "a", "b"), a, b)["verdict"] == "reproduced"
    # the 95% CI is above 0 so it is still reproduced: min_effect only moves the "not" boundary
    assert decide(Rule("greater", "a", "b", min_effect=0.05), a, b)["verdict"] == "reproduced"
    a2 = np.array([0.600, 0.601, 0.602])
    assert decide(Rule("greater", "a", "b"), a2, b)["verdict"] == "inconclusive"
    assert decide(Rule("greater", "a", "b", min_effect=0.05), a2, b)["verdict"] == "not reproduced"


@pytest.mark.parametrize("vals,kind,value,expected", [
    ([0.05, 0.06, 0.04], "below", 0.1, "reproduced"),
    ([0.15, 0.16, 0.14], "below", 0.1, "not reproduced"),
    ([0.05, 0.15, 0.10], "below", 0.1, "inconclusive"),
    ([0.95, 0.96, 0.94], "above", 0.9, "reproduced"),
    ([0.85, 0.86, 0.84], "above", 0.9, "not reproduced"),
])
def test_threshold_rules(vals, kind, value, expected):
    assert decide(Rule(kind, "a", value=value), np.array(vals))["verdict"] == expected


def test_within_rule():
    r = Rule("within", "a", value=3.0, tol=0.5)
    assert decide(r, np.array([3.1, 2.9, 3.0]))["verdict"] == "reproduced"
    assert decide(r, np.array([4.1, 4.2, 4.0]))["verdict"] == "not reproduced"
    assert decide(r, np.array([3.0, 3.8, 3.4]))["verdict"] == "inconclusive"


@pytest.mark.parametrize("a,b,c,d,kind,expected", [
    # gain 0.20 at few labels, 0.05 at many: the gain shrinks
    ([0.70, 0.71, 0.72], [0.50, 0.51, 0.52], [0.85, 0.86, 0.87], [0.80, 0.81, 0.82], "gap_greater", "reproduced"),
    # gain 0.05 at few labels, 0.20 at many: it grows
    ([0.55, 0.56, 0.57], [0.50, 0.51, 0.52], [0.90, 0.91, 0.92], [0.70, 0.71, 0.72], "gap_greater", "not reproduced"),
    ([0.55, 0.56, 0.57], [0.50, 0.51, 0.52], [0.90, 0.91, 0.92], [0.70, 0.71, 0.72], "gap_less", "reproduced"),
    # equal gains with seed noise
    ([0.60, 0.70, 0.65], [0.50, 0.60, 0.55], [0.80, 0.90, 0.85], [0.70, 0.80, 0.75], "gap_greater", "inconclusive"),
])
def test_gap_rules(a, b, c, d, kind, expected):
    r = Rule(kind, "a", "b", c="c", d="d")
    out = decide(r, *(np.array(x) for x in (a, b, c, d)))
    assert out["verdict"] == expected
    assert out["ours_mean"] == pytest.approx((np.mean(a) - np.mean(b)) - (np.mean(c) - np.mean(d)))
    assert out["gap_ab"] == pytest.approx(np.mean(a) - np.mean(b))
    lo, hi = out["ci95"]
    assert lo <= out["ours_mean"] <= hi


def test_gap_rule_needs_four_arms(tmp_path):
    with pytest.raises(ValueError, match="four arms"):
        decide(Rule("gap_greater", "a", "b", c="c", d="d"), np.ones(3), np.ones(3))
    f = tmp_path / "x.yaml"
    f.write_text("chapter: x\npaper: p\nclaims:\n  - id: g\n    claim: c\n    metric: final.m\n"
                 "    rule: {kind: gap_greater, a: p, b: q, c: r}\n")
    with pytest.raises(ConfigError, match="missing key 'd'"):
        load_claims(f)
    assert Rule("gap_greater", "a", "b", c="c", d="d").describe().startswith("mean(a) - mean(b) > mean(c) - mean(d)")


def test_fewer_than_three_seeds_is_inconclusive():
    d = decide(Rule("greater", "a", "b"), np.array([0.9, 0.91]), np.array([0.1, 0.11]))
    assert d["verdict"] == "inconclusive" and "fewer than 3 seeds" in d["note"]


def _result(final=None, history=None):
    return RunResult(key="k" * 16, config={}, method_version="1", status="done", final=final or {},
                     history=history or [])


def test_metric_paths():
    r = _result(final={"pck@0.1": 0.7}, history=[{"step": 1, "val/pck@0.1": 0.2}, {"step": 2, "val/pck@0.1": 0.5},
                                                  {"step": 3, "val/pck@0.1": 0.3}])
    assert metric_value(r, "final.pck@0.1") == 0.7
    assert metric_value(r, "history.last.val/pck@0.1") == 0.3
    assert metric_value(r, "history.max.val/pck@0.1") == 0.5
    assert metric_value(r, "history.min.val/pck@0.1") == 0.2
    assert metric_value(r, "history.first.val/pck@0.1") == 0.2
    assert metric_value(r, "history.mean.val/pck@0.1") == pytest.approx(1.0 / 3)
    assert metric_value(r, "history.drop.val/pck@0.1") == pytest.approx(0.2)
    assert math.isnan(metric_value(r, "final.nope"))
    with pytest.raises(ConfigError, match="history.<agg>.<key>"):
        metric_value(r, "history.median.val/pck@0.1")
    with pytest.raises(ConfigError, match="not final"):
        metric_value(r, "pck@0.1")


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


GOOD = """
chapter: toy
paper: "A. Author 2020, A paper"
published:
  - {table: "Table 1", page: 3, row: "ours", column: "5%", metric: "PCK", value: 61.2}
claims:
  - id: more_is_better
    claim: "More labels help"
    paper_evidence: "Table 1, p. 3"
    paper_value: 61.2
    metric: final.pck@0.1
    rule: {kind: greater, a: many, b: few}
"""


def test_load_claims_good_file(tmp_path):
    cf = load_claims(_write(tmp_path, GOOD))
    assert cf.chapter == "toy" and cf.claims[0].rule == Rule("greater", "many", "few")
    assert cf.published[0]["value"] == 61.2


@pytest.mark.parametrize("edit,message", [
    (("kind: greater", "kind: bigger"), "kind: 'bigger' is not allowed"),
    (("metric: final.pck@0.1", "metric: pck"), "claims\\[0\\].metric"),
    (("    paper_value: 61.2\n", ""), None),
    (("b: few", "b: few, c: many"), "unknown key 'c'"),  # c and d belong to the gap rules only
    (("paper_value: 61.2", "paper_value: lots"), "paper_value"),
    (("- id: more_is_better", "- idx: more_is_better"), "missing key 'id'"),
])
def test_load_claims_errors_name_file_and_key(tmp_path, edit, message):
    p = _write(tmp_path, GOOD.replace(*edit))
    if message is None:
        assert load_claims(p).claims[0].paper_value is None
        return
    with pytest.raises(ConfigError, match=message) as e:
        load_claims(p)
    assert str(p) in str(e.value)


def test_repository_claims_files_are_valid_and_name_real_arms():
    from landmark_study.chapters import chapter_arms, chapter_names

    for cf in claims.claims_files():
        assert cf.claims, f"{cf.path} has no claims"
        assert cf.chapter in chapter_names(), f"{cf.path}: unknown chapter {cf.chapter!r}"
        arms = chapter_arms(cf.chapter, claims.chapter_params(cf.chapter, "full"))
        for c in cf.claims:
            for a in c.arms():
                assert a in arms, f"{cf.path}: claim {c.id} uses arm {a!r}, missing at the full profile"


@pytest.fixture
def toy_chapter(monkeypatch, tmp_path):
    """A chapter 'toy' with two arms of tiny runs (3 seeds each)."""
    from landmark_study import chapters

    def arms(p):
        few = [tiny_config(seed=s, **{"data.label_fraction": 0.1}) for s in range(3)]
        many = [tiny_config(seed=s) for s in range(3)]
        return {"few": few, "many": many}

    monkeypatch.setitem(chapters._ARMS, "toy", arms)
    return load_claims(_write(tmp_path, GOOD))


def test_claims_from_store_not_run_then_verdict_then_stale(toy_chapter, tmp_path, monkeypatch):
    from landmark_study.chapters import chapter_arms
    from landmark_study.methods.supervised import Supervised
    from landmark_study.runs import ResultsStore, run

    store = ResultsStore(tmp_path / "store")
    (row,) = claims.evaluate_claims(toy_chapter, None, store)
    assert row["verdict"] == "not run" and "3 of 3 run(s) missing" in row["detail"]

    for cfgs in chapter_arms("toy", None).values():
        for c in cfgs:
            run(c, store, progress=False)
    (row,) = claims.evaluate_claims(toy_chapter, None, store)
    assert row["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert row["seeds"] == 3 and np.isfinite(row["ours_mean"])
    import pandas as pd

    md = claims.markdown_table(pd.DataFrame([row]))
    assert "[toy](toy.ipynb)" in md and claims.VERDICT_MARK[row["verdict"]] in md and "3 seeds" in md

    monkeypatch.setattr(Supervised, "version", Supervised.version + "-changed")
    (row,) = claims.evaluate_claims(toy_chapter, None, store)
    assert row["verdict"] == "stale" and "older method or data version" in row["detail"]


def test_unknown_arm_is_an_error(toy_chapter, tmp_path):
    from landmark_study.runs import ResultsStore

    bad = load_claims(_write(tmp_path, GOOD.replace("b: few", "b: fewer")))
    with pytest.raises(ConfigError, match="arm 'fewer'"):
        claims.evaluate_claims(bad, None, ResultsStore(tmp_path / "s"))
    (row,) = claims.evaluate_claims(bad, None, ResultsStore(tmp_path / "s"), strict=False)
    assert row["verdict"] == "not run" and "'fewer' is not part of" in row["detail"]


def test_runs_without_a_finite_metric_give_undefined_not_not_run(toy_chapter, tmp_path, monkeypatch):
    """E.g. the precision of a detector that detected nothing: the runs exist, the number does not."""
    import pandas as pd

    from landmark_study.chapters import chapter_arms
    from landmark_study.runs import ResultsStore, run

    store = ResultsStore(tmp_path / "store")
    for cfgs in chapter_arms("toy", None).values():
        for c in cfgs:
            run(c, store, progress=False)
    real = claims.metric_value

    def nan_for_seed_1(result, metric):
        return math.nan if result.config["seed"] == 1 else real(result, metric)

    monkeypatch.setattr(claims, "metric_value", nan_for_seed_1)
    (row,) = claims.evaluate_claims(toy_chapter, None, store)
    assert row["verdict"] == "undefined"
    assert "in 1 of 3 run(s)" in row["detail"]
    assert claims.counts(pd.DataFrame([row]))["tested"] == 0
    assert "⚠️ undefined" in claims.markdown_table(pd.DataFrame([row]))
