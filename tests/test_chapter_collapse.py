"""The collapse chapter: params load, grids build, arms are what the claims need."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from landmark_study.chapters import chapter_arms, chapter_grid
from landmark_study.chapters.collapse import collapsed
from landmark_study.config import ConfigError, load_chapter_params
from landmark_study.runs import RunResult, run_key

ROOT = Path(__file__).resolve().parents[1]


def _params(profile):
    return load_chapter_params("collapse", ROOT / "params" / "collapse" / f"{profile}.yaml")


@pytest.mark.parametrize("profile", ["quick", "full", "paper"])
def test_params_load_and_grid_builds(profile):
    p = _params(profile)
    grid = chapter_grid("collapse", p)
    arms = chapter_arms("collapse", p)
    assert len(grid) == sum(len(v) for v in arms.values())
    assert len({run_key(c) for c in grid}) == len(grid)
    for name, runs in arms.items():
        assert len(runs) == (len(p.seeds) if name in p.claim_arms else p.figure_seeds), name
        assert all(c.method == "consistency" for c in runs)
    if profile != "quick":
        assert len(p.seeds) >= 3


def test_arms_differ_only_where_they_should():
    p = _params("full")
    arms = chapter_arms("collapse", p)
    sup, naive = arms["supervised"][0], arms["naive"][0]
    assert sup.loss_weights == {"cons": 0.0} and naive.loss_weights == {"cons": 1.0}
    assert naive.options().stop_gradient is False and naive.options().teacher_aug == naive.options().student_aug
    assert sup.train.lr_milestones == ()
    assert arms["naive_small_lambda"][0].loss_weights == {"cons": p.small_lambda}
    assert arms["naive_many"][0].data.num_labels == p.many_labels == arms["supervised_many"][0].data.num_labels
    eh = arms["easy_hard"][0].options()
    assert (eh.teacher_aug, eh.student_aug, eh.stop_gradient) == ("easy", "hard", True)
    assert arms["easy_hard_no_sg"][0].options().stop_gradient is False
    assert arms["threshold_0.2"][0].options().confidence_threshold == 0.2
    assert arms["ema_0.99"][0].options().teacher == "ema"
    assert arms["reweight"][0].options().reweight_gain > 0
    for name in ("naive", "easy_hard", "reweight"):  # same data, model, schedule, seed as the baseline
        c = arms[name][0]
        assert (c.data, c.model, c.train, c.seed) == (sup.data, sup.model, sup.train, sup.seed)


def test_claims_name_existing_claim_arms():
    claims = yaml.safe_load((ROOT / "params" / "claims" / "collapse.yaml").read_text())
    p = _params("full")
    arms = chapter_arms("collapse", p)
    used = set()
    for c in claims["claims"]:
        for key in ("a", "b"):
            if key in c["rule"]:
                assert c["rule"][key] in arms, c["id"]
                used.add(c["rule"][key])
    assert used <= set(p.claim_arms)  # claims only use arms that run every seed
    assert all(len(arms[a]) >= 3 for a in used)
    for row in claims["published"]:
        assert {"table", "page", "row", "column", "metric", "value"} <= set(row)


def test_claims_file_parses():
    from landmark_study.claims import load_claims

    cf = load_claims(ROOT / "params" / "claims" / "collapse.yaml")
    assert cf.chapter == "collapse" and len(cf.claims) >= 10


def test_notebook_parameters_equal_quick_yaml():
    text = (ROOT / "book" / "collapse.py").read_text()
    cell = text.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    ns: dict = {}
    exec(cell, ns)
    values = {k: v for k, v in ns.items() if not k.startswith("__")}
    quick = yaml.safe_load((ROOT / "params" / "collapse" / "quick.yaml").read_text())
    for k, v in quick.items():
        assert (list(values[k]) if isinstance(values[k], tuple) else values[k]) == v, k
    p = load_chapter_params("collapse", {k: v for k, v in values.items()})
    assert p == _params("quick")


def test_collapse_rule_reads_the_last_ratio():
    def res(ratio):
        return RunResult(key="k", config={}, method_version="1", status="done",
                         history=[{"diag/collapse_ratio": 1.0}, {"diag/collapse_ratio": ratio}])
    assert collapsed(res(0.1)) and not collapsed(res(0.3))


def test_validation_of_params():
    with pytest.raises(ConfigError, match="figure_seeds"):
        load_chapter_params("collapse", {"seeds": [0], "figure_seeds": 2})
    with pytest.raises(ConfigError, match="claim_arms"):
        load_chapter_params("collapse", {"thresholds": [0.4], "claim_arms": ["threshold_0.2"]})
