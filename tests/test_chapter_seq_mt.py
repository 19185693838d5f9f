"""The seq_mt chapter: params load, grids build, claims name existing arms, Table 1 structure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from landmark_study.chapters import chapter_arms, chapter_grid
from landmark_study.chapters.seq_mt import PAPER_ROW, ROWS, arm_name
from landmark_study.config import ConfigError, load_chapter_params, to_dict
from landmark_study.runs import run_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["quick", "full", "paper"])
def test_params_load_and_grid_builds(profile):
    p = load_chapter_params("seq_mt", ROOT / "params" / "seq_mt" / f"{profile}.yaml")
    grid = chapter_grid("seq_mt", p)
    arms = chapter_arms("seq_mt", p)
    assert len(grid) == sum(len(v) for v in arms.values())
    assert len({run_key(c) for c in grid}) == len(grid)
    assert all(len(v) == len(p.seeds) for v in arms.values())
    if profile != "quick":
        assert len(p.seeds) >= 3
        assert set(p.rows) == set(ROWS)  # every Table 1 row is kept


def test_elt_rows_have_no_100pct_cell_and_every_other_cell_exists():
    p = load_chapter_params("seq_mt", ROOT / "params" / "seq_mt" / "full.yaml")
    arms = chapter_arms("seq_mt", p)
    for f in p.fractions:
        for row in ROWS:
            assert (arm_name(row, f) in arms) == (not (f >= 1.0 and "ELT" in row))
    assert "shapes_A" in arms


def test_rows_of_a_cell_share_data_schedule_and_labeled_batch():
    p = load_chapter_params("seq_mt", ROOT / "params" / "seq_mt" / "full.yaml")
    arms = chapter_arms("seq_mt", p)
    for f in p.fractions:
        cfgs = [arms[arm_name(r, f)][0] for r in ROWS if arm_name(r, f) in arms]
        assert len({(repr(to_dict(c.data)), c.train.steps, c.train.batch_size, c.train.lr) for c in cfgs}) == 1
    for row, (method, lm, attr, elt) in ROWS.items():
        c = arms[arm_name(row, p.fractions[0])][0]
        o = c.options()
        assert c.method == method and o.landmarks == lm and o.attribute == attr
        assert getattr(o, "elt", False) == elt
        assert c.train.augment.flip == 0.0  # a mirrored Blocks figure is another class


def test_shapes_run_uses_class_labels_only():
    p = load_chapter_params("seq_mt", ROOT / "params" / "seq_mt" / "full.yaml")
    c = chapter_arms("seq_mt", p)["shapes_A"][0]
    o = c.options()
    assert c.data.name == "shapes" and c.data.label_fraction == 1.0
    assert not o.landmarks and o.attribute and not o.elt and o.hidden == (40,) and o.point_norm == "none"


def test_figures_rows_are_the_seq_rows_on_figures_with_the_blocks_schedule():
    p = load_chapter_params("seq_mt", ROOT / "params" / "seq_mt" / "full.yaml")
    arms = chapter_arms("seq_mt", p)
    fig = {k: v for k, v in arms.items() if k.startswith("figures_")}
    assert len(fig) == 4 * len(p.figures_fractions) and p.figures_fractions
    blocks = arms[arm_name("seq_L", p.fractions[0])][0]
    for f in p.figures_fractions:
        for row in ("seq_L", "seq_L+A", "seq_L+ELT", "seq_L+ELT+A"):
            c = arms[arm_name(row, f, "figures_")][0]
            assert c.data.name == "figures" and c.data.size == p.figures_size and c.data.label_fraction == f
            assert c.method == "seq_mt" and c.train.steps == (p.figures_steps or blocks.train.steps)
            assert c.data.options == {"rotation": p.figures_rotation, "outline_prob": p.figures_outline_prob}
            assert c.train.lr == blocks.train.lr and c.train.batch_size == blocks.train.batch_size
            assert c.options().elt == ("ELT" in row) and c.options().attribute == ("A" in row.split("+")[1:])
    # the four rows of a fraction see the same labeled images
    assert len({repr(to_dict(arms[arm_name(r, 0.05, "figures_")][0].data))
                for r in ("seq_L", "seq_L+A", "seq_L+ELT", "seq_L+ELT+A")}) == 1


def test_claims_name_existing_arms_and_published_rows_are_the_paper_rows():
    claims = yaml.safe_load((ROOT / "params" / "claims" / "seq_mt.yaml").read_text())
    p = load_chapter_params("seq_mt", ROOT / "params" / "seq_mt" / "full.yaml")
    arms = chapter_arms("seq_mt", p)
    for c in claims["claims"]:
        for key in ("a", "b"):
            if key in c["rule"]:
                assert c["rule"][key] in arms, c["id"]
    table1 = [r for r in claims["published"] if r["table"] == "Table 1"]
    for row in claims["published"]:
        assert {"table", "page", "row", "column", "metric", "value"} <= set(row)
    assert {r["row"] for r in table1} == set(PAPER_ROW.values())
    assert len(table1) == 8 * 6 - 2  # the ELT rows have no 100% cell


def test_notebook_parameters_equal_quick_yaml():
    text = (ROOT / "book" / "seq_mt.py").read_text()
    cell = text.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    ns: dict = {}
    exec(cell, ns)
    values = {k: v for k, v in ns.items() if not k.startswith("__")}
    quick = yaml.safe_load((ROOT / "params" / "seq_mt" / "quick.yaml").read_text())
    for k, v in quick.items():
        assert (list(values[k]) if isinstance(values[k], tuple) else values[k]) == v, k
    assert set(values) - set(quick) <= {"store", "workers"}
    assert set(quick) <= set(values)


def test_unknown_row_is_rejected():
    with pytest.raises(ConfigError, match="rows"):
        load_chapter_params("seq_mt", {"rows": ["seq_L", "nope"]})
