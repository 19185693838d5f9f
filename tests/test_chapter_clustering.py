from pathlib import Path

import pytest

from landmark_study.chapters import chapter_arms, chapter_grid
from landmark_study.claims import load_claims
from landmark_study.config import load_chapter_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["quick", "full", "paper"])
def test_params_load_and_grid_builds(profile):
    p = load_chapter_params("clustering", ROOT / "params" / "clustering" / f"{profile}.yaml")
    assert p.profile == profile
    g = chapter_grid("clustering", p)
    assert g and all(c.method in ("clustering_correspondence", "clustering_landmarks", "self_training") for c in g)
    # the template arm: the self-training method on this chapter's data, scored by stage 2's protocol
    from landmark_study.runs import run_key

    tmpl = chapter_arms("clustering", p)["template"]
    assert len(tmpl) == len(p.seeds) and {c.seed for c in tmpl} == set(p.seeds)
    stage1 = next(c for c in g if c.method == "clustering_correspondence")
    keys = [run_key(c) for c in g]
    for c in tmpl:
        assert c.data == stage1.data and c.method_options["clustering_protocol"] is True
        assert c.method_options["stage"] == "landmarks"
        assert c.method_options["reg_images"] == min(p.n_regress, p.n_train)
        # its whole chain is in the grid, every round after the one it learns from
        from landmark_study.methods.self_training import previous_config

        cur = c
        while (prev := previous_config(cur)) is not None:
            assert keys.index(run_key(prev)) < keys.index(run_key(cur))
            cur = prev
    g = [c for c in g if c.method != "self_training"]
    # dependencies come first: every round r > 0 appears after a round r - 1
    rounds = [c.method_options.get("round", 99) for c in g]
    first_stage2 = next(i for i, c in enumerate(g) if c.method == "clustering_landmarks")
    assert max(rounds[:first_stage2]) <= p.rounds and rounds == sorted(rounds[:first_stage2]) + rounds[first_stage2:]
    if profile != "quick":
        assert len(p.seeds) >= 3


def test_claims_arms_exist():
    cf = load_claims(ROOT / "params" / "claims" / "clustering.yaml")
    p = load_chapter_params("clustering", ROOT / "params" / "clustering" / "full.yaml")
    arms = chapter_arms("clustering", p)
    for c in cf.claims:
        for a in c.arms():
            assert a in arms, f"claim {c.id} uses unknown arm {a}"
            assert len(arms[a]) >= 3


def test_notebook_parameters_match_quick_yaml():
    import yaml

    quick = yaml.safe_load((ROOT / "params" / "clustering" / "quick.yaml").read_text())
    src = (ROOT / "book" / "clustering.py").read_text()
    cell = src.split('# %% tags=["parameters"]')[1].split("# %%")[0]
    ns: dict = {}
    exec(cell, ns)
    for k, v in quick.items():
        assert ns[k] == v, k


def test_template_arm_can_be_switched_off():
    p = load_chapter_params("clustering", ROOT / "params" / "clustering" / "quick.yaml")
    assert "template" in chapter_arms("clustering", p)
    from dataclasses import replace

    p2 = replace(p, template=False)
    assert "template" not in chapter_arms("clustering", p2)
    assert all(c.method != "self_training" for c in chapter_grid("clustering", p2))


def test_init_arms_change_only_the_initial_detector():
    from dataclasses import replace

    p = load_chapter_params("clustering", ROOT / "params" / "clustering" / "full.yaml")
    p = replace(p, init="orb", init_arms=("sift", "orb", "gftt"))
    arms = chapter_arms("clustering", p)
    assert "init_orb" not in arms  # the main arm already starts from ORB
    for name in ("sift", "gftt"):
        for c, ref in zip(arms[f"init_{name}"], arms["tpami"]):
            assert c.method_options["init"] == name
            assert {k: v for k, v in c.method_options.items() if k != "init"} == \
                {k: v for k, v in ref.method_options.items() if k != "init"}
            assert c.data == ref.data and c.train == ref.train and c.seed == ref.seed
