"""The sc_ti_te chapter: params load, grids build, claims name existing arms."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from landmark_study.chapters import chapter_arms, chapter_grid
from landmark_study.chapters.sc_ti_te import arm_name
from landmark_study.config import load_chapter_params
from landmark_study.methods.sc_ti_te import PseudoLabel
from landmark_study.runs import run_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["quick", "full", "paper"])
def test_params_load_and_grid_builds(profile):
    p = load_chapter_params("sc_ti_te", ROOT / "params" / "sc_ti_te" / f"{profile}.yaml")
    grid = chapter_grid("sc_ti_te", p)
    arms = chapter_arms("sc_ti_te", p)
    assert len(grid) == sum(len(v) for v in arms.values())
    assert len({run_key(c) for c in grid}) == len(grid)
    assert all(len(v) == len(p.seeds) for k, v in arms.items() if not k.startswith("lam_"))
    assert all(len(v) == len(p.sensitivity_seeds) for k, v in arms.items() if k.startswith("lam_"))
    if profile != "quick":
        assert len(p.seeds) >= 3


def test_pl_teacher_is_the_supervised_arm_and_runs_first():
    p = load_chapter_params("sc_ti_te", ROOT / "params" / "sc_ti_te" / "full.yaml")
    arms = chapter_arms("sc_ti_te", p)
    names = list(arms)
    for f in p.label_fractions:
        sup = [run_key(c) for c in arms[arm_name("supervised", f)]]
        pl = [run_key(PseudoLabel.teacher_config(c)) for c in arms[arm_name("pl", f)]]
        assert sup == pl
        assert names.index(arm_name("supervised", f)) < names.index(arm_name("pl", f))


def test_claims_name_existing_arms():
    claims = yaml.safe_load((ROOT / "params" / "claims" / "sc_ti_te.yaml").read_text())
    p = load_chapter_params("sc_ti_te", ROOT / "params" / "sc_ti_te" / "full.yaml")
    arms = chapter_arms("sc_ti_te", p)
    for c in claims["claims"]:
        for key in ("a", "b", "c", "d"):
            if key in c["rule"]:
                assert c["rule"][key] in arms, c["id"]
    for row in claims["published"]:
        assert {"table", "page", "row", "column", "metric", "value"} <= set(row)


def test_notebook_parameters_equal_quick_yaml():
    text = (ROOT / "book" / "sc_ti_te.py").read_text()
    cell = text.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    ns: dict = {}
    exec(cell, ns)
    values = {k: v for k, v in ns.items() if not k.startswith("__")}
    quick = yaml.safe_load((ROOT / "params" / "sc_ti_te" / "quick.yaml").read_text())
    for k, v in quick.items():
        assert (list(values[k]) if isinstance(values[k], tuple) else values[k]) == v, k
    # names beyond quick.yaml (so that papermill knows every key of the other profiles) must hold the
    # defaults, so the quick profile is exactly quick.yaml
    import dataclasses

    from landmark_study.config import chapter_params_class

    defaults = {f.name: f.default for f in dataclasses.fields(chapter_params_class("sc_ti_te"))}
    for k in set(values) - set(quick) - {"store", "workers"}:
        v = list(values[k]) if isinstance(values[k], list) else values[k]
        d = list(defaults[k]) if isinstance(defaults[k], tuple) else defaults[k]
        assert v == d, f"book/sc_ti_te.py sets {k}={values[k]!r}, not in quick.yaml and not the default {d!r}"
    assert set(quick) <= set(values)


def test_ablation_fractions_must_be_label_fractions():
    from landmark_study.config import ConfigError

    with pytest.raises(ConfigError, match="ablation_fractions"):
        load_chapter_params("sc_ti_te", {"label_fractions": [0.05], "ablation_fractions": [0.1]})


def test_table34_fractions_place_the_table3_and_table4_arms():
    from landmark_study.config import ConfigError

    base = {"label_fractions": [0.01, 0.05], "ablation_fractions": [0.01, 0.05], "ablations": ["sc"],
            "gt_ablation": True, "unlabeled_fractions": [0.1]}
    # default: the Table 3/4 arms follow the ablation fractions
    arms = chapter_arms("sc_ti_te", load_chapter_params("sc_ti_te", base))
    assert {"no_gt@1%", "no_gt@5%", "unl10%@1%", "unl10%@5%", "sc@1%", "sc@5%"} <= set(arms)
    # narrowed: Table 2 at both fractions, Tables 3 and 4 at 1% only
    arms = chapter_arms("sc_ti_te", load_chapter_params("sc_ti_te", {**base, "table34_fractions": [0.01]}))
    assert {"no_gt@1%", "unl10%@1%", "sc@1%", "sc@5%"} <= set(arms)
    assert not {"no_gt@5%", "unl10%@5%"} & set(arms)
    c = arms["unl10%@1%"][0]
    assert c.data.label_fraction == 0.01 and c.options().unlabeled_fraction == 0.1
    with pytest.raises(ConfigError, match="table34_fractions"):
        load_chapter_params("sc_ti_te", {**base, "table34_fractions": [0.2]})


def test_curve_fractions_add_supervised_and_ours_only():
    from landmark_study.config import ConfigError

    p = load_chapter_params("sc_ti_te", {"label_fractions": [0.05], "ablation_fractions": [0.05],
                                         "curve_fractions": [0.2, 0.5], "baselines": ["pl", "elt", "gen"]})
    arms = chapter_arms("sc_ti_te", p)
    for f in (0.2, 0.5):
        got = sorted(a for a in arms if a.endswith(f"@{f * 100:g}%"))
        assert got == [arm_name("ours", f), arm_name("supervised", f)]
        assert all(c.data.label_fraction == f for c in arms[arm_name("ours", f)])
    with pytest.raises(ConfigError, match="curve_fractions"):
        load_chapter_params("sc_ti_te", {"label_fractions": [0.05], "ablation_fractions": [0.05],
                                         "curve_fractions": [0.05]})


def test_sensitivity_arms_scale_one_weight_at_a_time():
    from landmark_study.chapters.sc_ti_te import sensitivity_name

    p = load_chapter_params("sc_ti_te", ROOT / "params" / "sc_ti_te" / "full.yaml")
    assert p.sensitivity_factors
    arms = chapter_arms("sc_ti_te", p)
    f = p.ablation_fractions[0]
    base = arms[f"ours@{f * 100:g}%"][0].loss_weights
    for loss in ("sc", "te", "ti"):
        for k in p.sensitivity_factors:
            c = arms[f"{sensitivity_name(loss, k)}@{f * 100:g}%"][0]
            w = c.loss_weights
            assert w[loss] == pytest.approx(base[loss] * k)
            assert all(w[o] == base[o] for o in base if o != loss)
            assert c.method == "sc_ti_te" and c.seed == p.sensitivity_seeds[0]


def test_extended_profile_only_adds_runs_to_the_full_grid():
    """extended.yaml shares the store with full.yaml: it may only widen the grid (fractions, rows),
    so every full-profile run is one of its runs and nothing else (schedule, data, weights) drifts."""
    import dataclasses

    from landmark_study.chapters import chapter_grid
    from landmark_study.runs import run_key

    full = load_chapter_params("sc_ti_te", ROOT / "params" / "sc_ti_te" / "full.yaml")
    ext = load_chapter_params("sc_ti_te", ROOT / "params" / "sc_ti_te" / "extended.yaml")
    widened = {"label_fractions", "curve_fractions", "ablations"}
    for f in dataclasses.fields(full):
        if f.name not in widened:
            assert getattr(ext, f.name) == getattr(full, f.name), f"extended.yaml changes {f.name}"
    keys_full = {run_key(c) for c in chapter_grid("sc_ti_te", full)}
    keys_ext = {run_key(c) for c in chapter_grid("sc_ti_te", ext)}
    assert keys_full < keys_ext
