"""Reproducibility check: retrain stored runs from scratch and compare their results.

``python -m landmark_study verify CHAPTER [--profile full] [--runs N] [--key K ...]``
retrains a few runs of a chapter's grid (by default the ``N`` cheapest stored ones, by
their recorded wall time) into a throwaway store, with their teachers retrained there
too, and compares every number of the new results with the committed ones. On the
machine that made them the results should be identical (the book's determinism
promise); on another machine or torch build, small differences are expected and the
report says how large they are.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

#: result keys that are measurements of speed, not of the model
_TIMING = ("ms_per_step", "train_time_s", "time_s", "seconds")


def _is_timing(key: str) -> bool:
    return any(t in key for t in _TIMING) or key.endswith("_s")


def _flatten(value: Any) -> np.ndarray | None:
    """Numbers in ``value`` (a number or nested lists of numbers/None) as a float array; None if not numeric."""
    if isinstance(value, bool):
        return np.array([float(value)])
    if isinstance(value, (int, float)):
        return np.array([float(value)])
    if isinstance(value, (list, tuple)):
        try:
            arr = np.array(value, dtype=float)  # None -> nan
        except (TypeError, ValueError):
            return None
        return arr.ravel()
    return None


def compare_finals(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Largest absolute difference between the numeric entries of two ``final`` dicts
    (timings ignored; nan equals nan), the keys whose values differ, and the keys only one
    of them has (e.g. a metric added to the method after the stored run was made)."""
    worst, differ, only = 0.0, [], []
    for k in sorted(set(a) | set(b)):
        if _is_timing(k):
            continue
        if k not in a or k not in b:
            only.append(k)
            continue
        x, y = _flatten(a[k]), _flatten(b[k])
        if x is None or y is None:
            if a[k] != b[k]:
                differ.append(k)
            continue
        if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
            differ.append(k)
            worst = math.inf
            continue
        ok = ~np.isnan(x)
        d = float(np.abs(x[ok] - y[ok]).max()) if ok.any() else 0.0
        if d > 0:
            differ.append(k)
            worst = max(worst, d)
    return {"identical": not differ and not only, "max_abs_diff": worst, "differing": differ, "only_in_one": only}


def verify_runs(configs: Sequence, reference, scratch_root: str | Path | None = None,
                progress: bool = False) -> list[dict[str, Any]]:
    """Retrain ``configs`` into an empty store under ``scratch_root`` (a temporary folder by
    default) and compare each with its result in the ``reference`` store."""
    from .runs import ResultsStore, run, run_key

    root = Path(scratch_root) if scratch_root else Path(tempfile.mkdtemp(prefix="landmark_verify_"))
    scratch = ResultsStore(root / "results")
    # checkpoints and final weights go to the scratch folder too, so the check leaves the
    # weights of the stored runs (the teachers of other runs) untouched
    old = os.environ.get("LANDMARK_STUDY_CHECKPOINTS")
    os.environ["LANDMARK_STUDY_CHECKPOINTS"] = str(root / "checkpoints")
    try:
        return _verify(configs, reference, scratch, run, run_key, progress)
    finally:
        if old is None:
            os.environ.pop("LANDMARK_STUDY_CHECKPOINTS", None)
        else:
            os.environ["LANDMARK_STUDY_CHECKPOINTS"] = old


def _verify(configs, reference, scratch, run, run_key, progress) -> list[dict[str, Any]]:
    rows = []
    for cfg in configs:
        key = run_key(cfg)
        ref = reference.get(key)
        if ref is None:
            raise KeyError(f"run {key} ({cfg.method}, seed {cfg.seed}) is not in the reference store {reference.root}")
        t0 = time.time()
        new = run(cfg, scratch, progress=progress)
        cmp = compare_finals(ref.final, new.final)
        rows.append({"key": key, "method": cfg.method, "seed": cfg.seed, "seconds": round(time.time() - t0, 1),
                     **cmp})
    return rows


def pick_runs(configs: Iterable, store, n: int) -> list:
    """The ``n`` stored, successful runs of ``configs`` with the smallest recorded wall time
    (ties by key), so that a check is cheap and deterministic."""
    from .runs import run_key

    found = []
    for c in configs:
        r = store.get(run_key(c))
        if r is not None and r.status == "done":
            found.append((float(r.provenance.get("wall_time_s") or math.inf), r.key, c))
    found.sort(key=lambda t: (t[0], t[1]))
    return [c for _, _, c in found[:n]]


def verify_chapter(chapter: str, profile: str = "full", runs: int = 3, keys: Sequence[str] | None = None,
                   scratch_root: str | Path | None = None) -> list[dict[str, Any]]:
    from .book import params_file
    from .chapters import chapter_grid
    from .config import ConfigError, load_chapter_params
    from .runs import chapter_store, run_key

    params = load_chapter_params(chapter, params_file(chapter, profile))
    grid = chapter_grid(chapter, params)
    store = chapter_store(params)
    if keys:
        by_key = {run_key(c): c for c in grid}
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            raise ConfigError(f"verify: run {unknown[0]!r} is not in the {profile} grid of chapter {chapter!r}")
        chosen = [by_key[k] for k in keys]
    else:
        chosen = pick_runs(grid, store, runs)
        if not chosen:
            raise ConfigError(f"verify: no stored run of chapter {chapter!r} at the {profile} profile "
                              f"in {store.root}")
    return verify_runs(chosen, store, scratch_root)


def report(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'run':16}  {'method':26} seed  seconds  result"]
    for r in rows:
        if r["identical"]:
            res = "identical"
        elif r["differing"]:
            res = f"differs by up to {r['max_abs_diff']:.3g} in " + ", ".join(r["differing"][:5])
        else:
            res = "same numbers"
        if r.get("only_in_one"):
            res += "; keys in one result only: " + ", ".join(r["only_in_one"][:5])
        lines.append(f"{r['key']:16}  {r['method']:26} {r['seed']:>4}  {r['seconds']:>7.1f}  {res}")
    n_same = sum(r["identical"] for r in rows)
    lines.append(f"{n_same} of {len(rows)} runs reproduced exactly")
    return "\n".join(lines)
