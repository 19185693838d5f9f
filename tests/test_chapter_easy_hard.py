"""The easy_hard chapter: params load, grids build, arms are what the claims need."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from landmark_study.chapters import chapter_arms, chapter_grid
from landmark_study.chapters.easy_hard import TABLE1, split_arm
from landmark_study.config import ConfigError, load_chapter_params
from landmark_study.methods.consistency import Consistency
from landmark_study.runs import run_key

ROOT = Path(__file__).resolve().parents[1]


def _params(profile):
    return load_chapter_params("easy_hard", ROOT / "params" / "easy_hard" / f"{profile}.yaml")


@pytest.mark.parametrize("profile", ["quick", "full", "paper"])
def test_params_load_and_grid_builds(profile):
    p = _params(profile)
    grid = chapter_grid("easy_hard", p)
    arms = chapter_arms("easy_hard", p)
    assert len(grid) == sum(len(v) for v in arms.values())
    assert len({run_key(c) for c in grid}) == len(grid)  # no two arms are the same run
    for name, runs in arms.items():
        assert len(runs) == (len(p.seeds) if name in p.claim_arms else p.figure_seeds), name
    for c in TABLE1:
        assert f"{c}_low" in arms
    # supervised runs (the teachers of PseudoPose and DataDistill) come first in the grid
    methods = [c.method for c in grid]
    n_sup = methods.count("supervised")
    assert set(methods[:n_sup]) == {"supervised"}
    if profile != "quick":
        assert len(p.seeds) >= 3


def test_supervised_arm_is_the_pseudo_label_teacher():
    p = _params("full")
    arms = chapter_arms("easy_hard", p)
    for seed_idx in range(3):
        sup = arms["supervised_low"][seed_idx]
        for cond in ("pseudopose_low", "datadistill_low"):
            c = arms[cond][seed_idx]
            assert run_key(Consistency.fixed_teacher_config(c)) == run_key(sup)
    assert arms["pseudopose_low"][0].options().teacher == "fixed"
    assert arms["datadistill_low"][0].method == "data_distill"


def test_arms_differ_only_where_they_should():
    p = _params("full")
    arms = chapter_arms("easy_hard", p)
    ref = arms["single_a_low"][0]
    o = ref.options()
    assert (o.teacher_aug, o.student_aug, o.stop_gradient, o.teacher, o.hard) == ("easy", "hard", True, "same", ())
    assert arms["single_jc_low"][0].options().hard == ("jc",)
    assert arms["dual_ra_low"][0].options().hard == ("ra",)
    assert arms["dual_jc_low"][0].method == "easy_hard_dual"
    for name in ("pseudopose_low", "dual_a_low", "single_jc_low", "dual_jc_low", "single_a_gauss_low"):
        c = arms[name][0]
        assert (c.data, c.model, c.train, c.seed) == (ref.data, ref.model, ref.train, ref.seed), name
    labels = {split_arm(a)[1]: arms[a][0].data.num_labels for a in arms if a.startswith("dual_jc_")}
    assert labels == {"low": 20, "mid": 100, "high": 400}
    sl = arms["dual_small_large_low"][0]
    assert sl.model == ref.model and sl.options().partner_width == p.large_width
    assert arms["dual_large_large_low"][0].model.width == p.large_width
    assert arms["supervised_large_low"][0].model.width == p.large_width
    hard = arms["supervised_hard_low"][0]
    assert hard.loss_weights == {"cons": 0.0} and hard.options().labeled_aug == "hard"
    assert arms["single_jc_long_low"][0].train.steps == int(p.steps * p.long_factor)
    assert arms["supervised_long_low"][0].train.steps == int(p.steps * p.long_factor)


def test_claims_name_existing_claim_arms():
    claims = yaml.safe_load((ROOT / "params" / "claims" / "easy_hard.yaml").read_text())
    p = _params("full")
    arms = chapter_arms("easy_hard", p)
    used = set()
    for c in claims["claims"]:
        for key in ("a", "b"):
            if key in c["rule"]:
                assert c["rule"][key] in arms, c["id"]
                used.add(c["rule"][key])
    assert used <= set(p.claim_arms)
    assert all(len(arms[a]) >= 3 for a in used)
    for row in claims["published"]:
        assert {"table", "page", "row", "column", "metric", "value"} <= set(row)


def test_claims_file_parses():
    from landmark_study.claims import load_claims

    cf = load_claims(ROOT / "params" / "claims" / "easy_hard.yaml")
    assert cf.chapter == "easy_hard" and len(cf.claims) >= 10


def test_notebook_parameters_equal_quick_yaml():
    text = (ROOT / "book" / "easy_hard.py").read_text()
    cell = text.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    ns: dict = {}
    exec(cell, ns)
    values = {k: v for k, v in ns.items() if not k.startswith("__")}
    quick = yaml.safe_load((ROOT / "params" / "easy_hard" / "quick.yaml").read_text())
    for k, v in quick.items():
        assert (list(values[k]) if isinstance(values[k], tuple) else values[k]) == v, k
    p = load_chapter_params("easy_hard", {k: v for k, v in values.items()})
    assert p == _params("quick")


def test_validation_of_params():
    with pytest.raises(ConfigError, match="figure_seeds"):
        load_chapter_params("easy_hard", {"seeds": [0], "figure_seeds": 2})
    with pytest.raises(ConfigError, match="label_budgets"):
        load_chapter_params("easy_hard", {"label_budgets": [100, 20, 400]})
    with pytest.raises(ConfigError, match="claim_arms"):
        load_chapter_params("easy_hard", {"table2": False, "claim_arms": ["dual_small_large_low"]})
