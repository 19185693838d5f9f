"""Bench helpers: budget verdicts and the clustering comparison on a small known case."""

from __future__ import annotations

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
