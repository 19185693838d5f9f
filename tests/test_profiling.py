from __future__ import annotations

import pytest

from landmark_study.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from landmark_study.profiling import format_profile, profile_config, representative_configs, short_config


def _tiny() -> RunConfig:
    return RunConfig(method="supervised", seed=0,
                     data=DataConfig(name="figures", size=32, n_train=40, n_val=10, label_fraction=1.0),
                     model=ModelConfig(name="unet_small", width=4),
                     train=TrainConfig(steps=400, batch_size=4, eval_every=100, eval_size=10))


def test_short_config_keeps_everything_but_the_schedule():
    c = _tiny()
    s = short_config(c, 3)
    assert (s.train.steps, s.train.eval_every, s.train.checkpoint_every) == (3, 3, 3)
    assert s.data == c.data and s.model == c.model and s.train.batch_size == c.train.batch_size
    with pytest.raises(ValueError, match="steps"):
        short_config(c, 0)


def test_profile_counts_every_step_and_extrapolates_to_the_full_schedule():
    res = profile_config(_tiny(), steps=4, top=5)
    assert res["phases"]["training_step"][1] == 4 and res["phases"]["backward"][1] == 4
    assert res["full_steps"] == 400 and len(res["hot"]) == 5
    est = res["full_run"]
    # the loop estimate is the measured ms/step times the full schedule's 400 steps
    assert est["training loop"] == pytest.approx(res["ms_per_step"] / 1000 * 400)
    assert all(v >= 0 for v in est.values())
    assert "estimated full run (400 steps)" in format_profile(res)


def test_representative_configs_one_per_method_and_unknown_method_named():
    cfgs = representative_configs("datasets", "params/datasets/quick.yaml")
    assert [c.method for c in cfgs] == ["supervised"]
    with pytest.raises(ValueError, match="no_such_method"):
        representative_configs("datasets", "params/datasets/quick.yaml", ["no_such_method"])


def test_teachers_of_a_short_run_stay_out_of_the_results_store(tmp_path, monkeypatch):
    store = tmp_path / "full"
    monkeypatch.setenv("LANDMARK_STUDY_STORE", str(store))
    cfgs = representative_configs("sc_ti_te", "params/sc_ti_te/quick.yaml", ["pseudo_label"])
    small = cfgs[0].with_overrides(**{"data.n_train": 40, "data.n_val": 10, "train.eval_size": 10})
    res = profile_config(small, steps=2, top=3)
    assert res["phases"]["prepare_data"][0] > 0  # the (short) teacher was trained and used
    assert not store.exists() or not any(store.iterdir())


def test_saved_profiles_merge_by_chapter_and_render(tmp_path):
    from landmark_study.profiling import profiles_markdown, save_profiles

    res = {"method": "supervised", "full_run": {"set-up (data, teachers)": 1.0, "training loop": 6.0,
                                                "validation": 2.0, "test and predictions": 1.0},
           "hot": [{"function": "conv2d (~:0)"}]}
    path = tmp_path / "profile.json"
    save_profiles("a", [res], path)
    save_profiles("b", [dict(res, method="other")], path)
    save_profiles("a", [dict(res, method="again")], path)  # replaces chapter a only
    import json

    data = json.loads(path.read_text())
    assert sorted(data) == ["a", "b"] and data["a"]["results"][0]["method"] == "again"
    md = profiles_markdown(data)
    assert md[2].startswith("| a | again | 10 s | 10% | 60% | 20% | 10% | `conv2d` |")
