"""The self_training chapter: parameter files, grid, arms and claims."""

from __future__ import annotations

import pytest

from landmark_study.chapters import chapter_arms, chapter_grid
from landmark_study.claims import load_claims
from landmark_study.config import load_chapter_params
from landmark_study.paths import REPO_ROOT
from landmark_study.runs import run_key


def _params(profile):
    return load_chapter_params("self_training", REPO_ROOT / "params" / "self_training" / f"{profile}.yaml")


@pytest.mark.parametrize("profile", ["quick", "full", "paper"])
def test_profiles_load_and_build_the_grid(profile):
    p = _params(profile)
    assert p.profile == profile
    grid = chapter_grid("self_training", p)
    keys = [run_key(c) for c in grid]
    assert len(keys) == len(set(keys))
    arms = chapter_arms("self_training", p)
    assert {run_key(c) for runs in arms.values() for c in runs} <= set(keys)  # every arm run is in the grid
    for name, runs in arms.items():
        assert len(runs) == len(p.seeds), name
    if profile != "quick":
        assert len(p.seeds) >= 3


def test_full_profile_uses_faces_and_no_labels():
    p = _params("full")
    for c in chapter_grid("self_training", p):
        assert c.data.name == "faces"
        assert c.method in ("self_training", "magicpoint")
    paper = _params("paper")
    assert chapter_grid("self_training", paper)[1].data.name == "celeba"


def test_claims_name_existing_arms():
    cf = load_claims(REPO_ROOT / "params" / "claims" / "self_training.yaml")
    assert cf.chapter == "self_training" and cf.claims
    arms = chapter_arms("self_training", _params("full"))
    for c in cf.claims:
        for a in c.arms():
            assert a in arms, a


def test_shared_rounds_are_one_run():
    p = _params("full")
    arms = chapter_arms("self_training", p)
    key = lambda a: [run_key(c) for c in arms[a]]  # noqa: E731
    assert key("recipe@r1") == key("no_distill@r1") == key("gftt@r1")
    assert key("recipe@r3") == key("no_distill@r3")  # distillation (from round 3) acts on round 4 onwards
    assert key("recipe@r4") != key("no_distill@r4")
    assert arms["recipe@r5"][0].method_options["distill_from"] == p.distill_from
    assert "distill_from" not in arms["no_distill@r5"][0].method_options
    lm = arms["landmarks@r1"][0]
    from landmark_study.methods.self_training import previous_config

    assert run_key(previous_config(lm)) == run_key(arms[f"recipe@r{p.rounds}"][0])
    grid = chapter_grid("self_training", p)
    assert grid[0].method == "magicpoint"
    assert run_key(grid[1]) == run_key(arms[f"recipe@r{p.rounds}"][0])  # the long chain starts first


def test_ablations_change_one_knob():
    p = _params("full")
    arms = chapter_arms("self_training", p)
    r, a = arms["recipe@r3"][0], arms
    assert a["large_lr@r3"][0].train.lr == p.large_lr != r.train.lr
    assert a["small_batch@r3"][0].train.batch_size == p.small_batch
    assert a["many_steps@r3"][0].train.steps == p.steps * p.many_steps_factor
    assert a["no_wd@r3"][0].train.weight_decay == 0.0 < r.train.weight_decay
    assert a["batchnorm@r3"][0].model.options["norm"] == "bn" and r.model.options["norm"] == "gn"
    for k in ("large_lr", "small_batch", "no_wd", "batchnorm"):
        c = a[f"{k}@r3"][0]
        assert c.method_options == r.method_options and c.data == r.data
