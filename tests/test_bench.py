"""Bench helpers: budget verdicts and the clustering comparison on a small known case."""

from __future__ import annotations

import os

import pytest

from landmark_study import bench


def test_budget_lines_flag_met_and_not_met():
    lines = bench.budget_lines({"loop_overhead": 0.12, "data_to_train_ratio": 7.0, "faiss_speedup_1m": 3.0})
    assert any("loop_overhead" in l and "not met" in l for l in lines)
    assert any("data_to_train_ratio" in l and l.endswith(": met") for l in lines)
    assert any("faiss_speedup_1m" in l and "not met" in l for l in lines)


def test_clustering_bench_faiss_and_sklearn_agree_on_separated_blobs():
    r = bench.clustering(n=3000, d=8, k=5, iters=20)
    assert r["max_points_per_centroid"] == 3000 // 5 + 1  # no subsampling unless asked
    # same initial centroids, same Lloyd iterations: the same partition, so the same inertia
    assert abs(r["faiss_inertia"] - r["sklearn_inertia"]) / r["sklearn_inertia"] < 1e-3


def test_tables_markdown_lists_every_section():
    res = {"loop": [{"size": 64, "overhead": 0.05}], "data": [{"size": 64}], "clustering": [{"n": 1}],
           "clustering_cap": [{"n": 1}], "machine": {"cpu_count": 2}}
    md = "\n".join(bench.tables_markdown(res))
    for title in ("Training loop", "Data generation", "faiss vs scikit-learn", "points-per-centroid"):
        assert title in md


def test_modified_kmeans_bench_keeps_at_most_one_point_per_image_and_cluster():
    r = bench.modified_kmeans(n=2000, d=8, k=10, m=10, per_image=20)
    assert r["n"] == 2000 and r["seconds"] > 0
    assert 0 < r["kept_points"] <= (2000 // 20) * 10  # one per (image, cluster) at most


@pytest.mark.slow
def test_chapters_quick_times_each_notebook_in_its_own_empty_store(tmp_path, monkeypatch):
    import nbformat

    from landmark_study import book, config

    (tmp_path / "book").mkdir()
    for name in ("a", "b"):
        (tmp_path / "params" / name).mkdir(parents=True)
        (tmp_path / "params" / name / "quick.yaml").write_text("steps: 1\n")
        nb = nbformat.v4.new_notebook()
        # each notebook records the store it was given and fails if that store is not empty
        nb.cells = [nbformat.v4.new_code_cell("steps = 0", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(
                        "import os, pathlib\n"
                        "s = pathlib.Path(os.environ['LANDMARK_STUDY_QUICK_STORE'])\n"
                        "assert not s.exists() or not any(s.iterdir())\n"
                        "s.mkdir(parents=True, exist_ok=True); (s / 'run.json').write_text('{}')\n"
                        f"open({str(tmp_path / 'seen.txt')!r}, 'a').write(str(s) + '\\n')")]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / "book" / f"{name}.ipynb")
    monkeypatch.setattr(book, "BOOK_DIR", tmp_path / "book")
    monkeypatch.setattr(book, "PARAMS_DIR", tmp_path / "params")
    monkeypatch.setattr(config, "load_chapter_params", lambda *a, **k: None)
    monkeypatch.setenv("LANDMARK_STUDY_QUICK_STORE", "/keep/me")
    res = bench.chapters_quick(["a", "b"])
    assert [r["chapter"] for r in res["chapters_quick"]] == ["a", "b"]
    assert all(r["ok"] and r["seconds"] > 0 for r in res["chapters_quick"])
    assert res["quick_book_minutes"] == pytest.approx(sum(r["seconds"] for r in res["chapters_quick"]) / 60, abs=0.01)
    seen = (tmp_path / "seen.txt").read_text().split()
    assert len(set(seen)) == 2  # a fresh store per chapter
    assert os.environ["LANDMARK_STUDY_QUICK_STORE"] == "/keep/me"  # the caller's setting is restored
    lines = bench.budget_lines({"quick_book_minutes": res["quick_book_minutes"]})
    assert lines == [f"- `quick_book_minutes` = {res['quick_book_minutes']} (budget < 15.0): met"]


def test_speed_probe_times_a_single_threaded_step_and_restores_the_threads():
    import torch

    before = torch.get_num_threads()
    ms = bench.speed_probe(steps=2, warmup=1, size=32, batch=2)
    assert isinstance(ms, float) and 0.0 < ms < 60_000.0
    assert torch.get_num_threads() == before
    assert bench.REFERENCE_PROBE_MS > 0
