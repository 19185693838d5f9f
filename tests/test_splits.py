"""Deterministic splits and nested labeled subsets."""

from __future__ import annotations

import numpy as np
import pytest

from landmark_study.data.splits import fraction_to_count, labeled_count, labeled_subset, make_splits


def test_make_splits_disjoint_covering_sizes():
    s = make_splits(100, (0.8, 0.1, 0.1), seed=0)
    assert list(s) == ["train", "val", "test"]
    assert [len(v) for v in s.values()] == [80, 10, 10]
    allidx = np.concatenate(list(s.values()))
    np.testing.assert_array_equal(np.sort(allidx), np.arange(100))
    for v in s.values():
        assert np.all(np.diff(v) > 0)  # sorted, unique


def test_make_splits_deterministic_and_seeded():
    a, b, c = make_splits(57, seed=3), make_splits(57, seed=3), make_splits(57, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    # rounding never loses or duplicates samples
    assert sum(len(v) for v in a.values()) == 57


def test_make_splits_mapping_and_edge_cases():
    s = make_splits(10, {"a": 0.5, "b": 0.5}, seed=1)
    assert set(s) == {"a", "b"} and len(s["a"]) == 5 and not set(s["a"]) & set(s["b"])
    z = make_splits(0)
    assert all(len(v) == 0 for v in z.values())
    s = make_splits(7, (1.0, 0.0, 0.0))
    assert len(s["train"]) == 7 and len(s["val"]) == 0


@pytest.mark.parametrize("fractions, match", [
    ((0.5, 0.2, 0.2), "sum to 1"),
    ((1.2, -0.1, -0.1), ">= 0"),
    ((0.5, 0.5), r"\(train, val, test\)"),
])
def test_make_splits_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        make_splits(10, fractions)


def test_make_splits_bad_n():
    with pytest.raises(ValueError, match="n must be"):
        make_splits(-1)


def test_labeled_subset_sizes_partition_and_determinism():
    pool = np.arange(3200)
    lab, unl = labeled_subset(pool, 0.05, seed=0)
    assert len(lab) == 160 and len(unl) == 3040
    np.testing.assert_array_equal(np.sort(np.concatenate([lab, unl])), pool)
    lab2, _ = labeled_subset(pool, 0.05, seed=0)
    np.testing.assert_array_equal(lab, lab2)
    lab3, _ = labeled_subset(pool, 0.05, seed=1)
    assert not np.array_equal(lab, lab3)


def test_labeled_subsets_are_nested():
    pool = np.arange(1000, 4200)  # non-trivial index values
    prev: set[int] = set()
    for f in (0.01, 0.05, 0.1, 0.2, 0.5, 1.0):
        lab, _ = labeled_subset(pool, f, seed=7)
        assert prev <= set(lab.tolist()), f
        prev = set(lab.tolist())
    assert prev == set(pool.tolist())
    # counts nest with fractions under the same seed
    c100, _ = labeled_count(pool, 100, seed=7)
    f5, _ = labeled_subset(pool, 0.05, seed=7)
    assert set(c100.tolist()) <= set(f5.tolist())
    np.testing.assert_array_equal(labeled_count(pool, 160, seed=7)[0], f5)


def test_labeled_subset_pool_order_irrelevant_and_int_pool():
    pool = np.arange(50)
    a, _ = labeled_subset(pool, 0.2, seed=2)
    b, _ = labeled_subset(pool[::-1].copy(), 0.2, seed=2)
    c, _ = labeled_subset(50, 0.2, seed=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_fraction_to_count_rounding():
    assert fraction_to_count(0.07, 100) == 7  # 0.07 * 100 = 7.000000000000001
    assert fraction_to_count(0.001, 100) == 1  # at least one label
    assert fraction_to_count(0.025, 100) == 3  # half up
    assert fraction_to_count(1.0, 9) == 9
    assert len(labeled_subset(10, 1.0)[1]) == 0


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.5, float("nan"), True])
def test_labeled_subset_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        labeled_subset(10, fraction)


def test_labeled_bad_inputs():
    with pytest.raises(ValueError, match="duplicates"):
        labeled_subset([1, 2, 2], 0.5)
    with pytest.raises(ValueError, match="1-D"):
        labeled_subset(np.zeros((2, 2), int), 0.5)
    with pytest.raises(ValueError, match="integers"):
        labeled_subset(np.array([0.5, 1.5]), 0.5)
    with pytest.raises(ValueError, match=r"count must be an int in \[1, 10\]"):
        labeled_count(10, 11)
    with pytest.raises(ValueError, match="count"):
        labeled_count(10, 0)
    with pytest.raises(ValueError, match="seed"):
        labeled_subset(10, 0.5, seed=-1)
