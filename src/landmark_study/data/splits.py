"""Deterministic train/val/test splits and nested labeled subsets.

``make_splits`` is for real datasets without official splits. ``labeled_subset``
and ``labeled_count`` pick the samples whose landmarks are used as labels in the
semi-supervised experiments; for one seed they are *nested* by construction: one
permutation of the (sorted) pool is drawn from the seed and the labeled set is
always a prefix of it, so the 5% set lies inside the 10% set, the 100-label set
inside the 200-label set, and so on.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["make_splits", "labeled_subset", "labeled_count", "fraction_to_count"]

_SPLIT_NAMES = ("train", "val", "test")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def make_splits(n: int, fractions: Sequence[float] | Mapping[str, float] = (0.8, 0.1, 0.1),
                seed: int = 0) -> dict[str, np.ndarray]:
    """Split ``range(n)`` into disjoint, covering, sorted index arrays.

    ``fractions`` is ``(train, val, test)`` or a mapping ``{split_name: fraction}``;
    fractions must be non-negative and sum to 1. Split sizes come from rounding the
    cumulative fractions times ``n`` (so they always add up to ``n``); membership
    comes from one permutation drawn from ``np.random.default_rng(seed)``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"make_splits: n must be a non-negative int, got {n!r}")
    seed = _check_seed(seed)
    if isinstance(fractions, Mapping):
        names = tuple(str(k) for k in fractions)
        fr = np.array([float(v) for v in fractions.values()])
    else:
        fr = np.array([float(v) for v in fractions])
        if len(fr) != 3:
            raise ValueError(f"make_splits: fractions must be (train, val, test) or a mapping, got {fractions!r}")
        names = _SPLIT_NAMES
    if len(fr) == 0 or np.any(~np.isfinite(fr)) or np.any(fr < 0):
        raise ValueError(f"make_splits: fractions must be finite and >= 0, got {fractions!r}")
    if abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"make_splits: fractions must sum to 1, got {fractions!r} (sum {fr.sum():.6g})")
    bounds = np.rint(np.cumsum(fr) * n).astype(np.int64)
    bounds[-1] = n
    bounds = np.concatenate([[0], np.maximum.accumulate(np.clip(bounds, 0, n))])
    perm = np.random.default_rng(seed).permutation(n)
    return {name: np.sort(perm[bounds[j]: bounds[j + 1]]) for j, name in enumerate(names)}


def _pool(indices: int | Sequence[int] | np.ndarray, fn: str) -> np.ndarray:
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        if indices < 0:
            raise ValueError(f"{fn}: pool size must be >= 0, got {indices}")
        return np.arange(int(indices), dtype=np.int64)
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"{fn}: indices must be 1-D, got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{fn}: indices must be integers, got dtype {idx.dtype}")
    idx = np.sort(idx.astype(np.int64))
    if idx.size > 1 and np.any(idx[1:] == idx[:-1]):
        raise ValueError(f"{fn}: indices contain duplicates, e.g. {int(idx[1:][idx[1:] == idx[:-1]][0])}")
    return idx


def _take(pool: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(pool))
    return np.sort(pool[order[:k]]), np.sort(pool[order[k:]])


def fraction_to_count(fraction: float, n: int) -> int:
    """Number of labels for ``fraction`` of ``n`` samples: round half up, at least 1 (if ``n > 0``)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)) \
            or not math.isfinite(fraction) or not (0.0 < fraction <= 1.0):
        raise ValueError(f"labeled fraction must be in (0, 1], got {fraction!r}")
    if n == 0:
        return 0
    return min(n, max(1, int(math.floor(float(fraction) * n + 0.5))))


def labeled_subset(indices: int | Sequence[int] | np.ndarray, fraction: float,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a pool into ``(labeled_idx, unlabeled_idx)`` with ``fraction`` labeled.

    ``indices`` is the pool (an int ``n`` means ``range(n)``; order does not
    matter, duplicates are an error). The labeled count is
    :func:`fraction_to_count` (round half up, at least 1). The labeled set is a
    prefix of one seed-determined permutation of the sorted pool, so for a fixed
    seed and pool a smaller fraction gives a subset of a larger one, and the
    result agrees with :func:`labeled_count`. Both outputs are sorted.
    """
    pool = _pool(indices, "labeled_subset")
    seed = _check_seed(seed)
    return _take(pool, fraction_to_count(fraction, len(pool)), seed)


def labeled_count(indices: int | Sequence[int] | np.ndarray, count: int,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`labeled_subset` with an absolute number of labels ``count`` (1..pool size)."""
    pool = _pool(indices, "labeled_count")
    seed = _check_seed(seed)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not (1 <= count <= len(pool)):
        raise ValueError(f"labeled_count: count must be an int in [1, {len(pool)}], got {count!r}")
    return _take(pool, int(count), seed)
