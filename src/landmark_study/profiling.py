"""Where a chapter's training time goes: ``python -m landmark_study profile CHAPTER``.

For each method of a chapter's grid (its first run), train a short copy of the run
(``--steps``, one evaluation at the end) under :mod:`cProfile` and report

* the wall time split into phases: data loading, ``prepare_data`` (teachers,
  pseudo-labels), the method's ``training_step`` (forward and losses), backward,
  optimizer, validation/test evaluation and the final predictions;
* the functions with the most self time (the hot spots).

Nothing is written to the book's results stores: the run is trained by
:func:`landmark_study.train.train` directly, and the teachers a short run needs
(a self-training round's previous round, a stage-2 run's stage 1, with the same
short schedule) are trained into a throwaway store, so ``prepare_data`` includes
their (short) training.
"""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
import time
from typing import Any

from .config import RunConfig

#: phase name -> (file suffix, function name) of the frames whose cumulative time it is
PHASES: dict[str, tuple[str, str]] = {
    "load data": ("landmark_study/train.py", "load_run_data"),
    "prepare_data": ("", "prepare_data"),
    "training_step": ("", "training_step"),
    "backward": ("torch/_tensor.py", "backward"),
    "optimizer": ("torch/optim/optimizer.py", "wrapper"),
    "evaluate": ("", "evaluate"),
    "predictions": ("landmark_study/train.py", "predict_dataset"),
}


def short_config(config: RunConfig, steps: int) -> RunConfig:
    """``config`` trained for ``steps`` steps with one evaluation and no intermediate checkpoint."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = dataclasses.replace(config.train, steps=steps, eval_every=steps, checkpoint_every=steps)
    return dataclasses.replace(config, train=t)


def _phase_times(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """phase -> (cumulative seconds, calls) of its outermost frames."""
    out = {}
    for phase, (suffix, func) in PHASES.items():
        total, calls = 0.0, 0
        for (filename, _line, name), (cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if name == func and filename.replace("\\", "/").endswith(suffix or filename):
                if phase in ("prepare_data", "training_step", "evaluate") and "landmark_study" not in filename:
                    continue
                total += ct
                calls += cc  # primitive (non-recursive) calls
        out[phase] = (total, calls)
    return out


def full_run_estimate(res: dict[str, Any], config: RunConfig) -> dict[str, float]:
    """Seconds a full run of ``config`` would spend per phase, from a short profile: the
    loop at its measured ms/step, validation at the measured seconds per evaluation, the
    set-up and the final test evaluation once."""
    ph = res["phases"]
    t = config.train
    n_evals = t.steps // t.eval_every + (t.steps % t.eval_every != 0)
    ev_s, ev_calls = ph["evaluate"]
    per_eval = ev_s / max(ev_calls, 1)
    return {"set-up (data, teachers)": ph["load data"][0] + ph["prepare_data"][0],
            "training loop": res["ms_per_step"] / 1000.0 * t.steps,
            "validation": per_eval * n_evals,
            "test and predictions": per_eval + ph["predictions"][0]}


def profile_config(config: RunConfig, steps: int = 50, top: int = 12) -> dict[str, Any]:
    """Train a ``steps``-step copy of ``config`` under cProfile; phase times and hot spots."""
    from .train import train

    import tempfile

    from .runs import _CURRENT_STORE, ResultsStore

    cfg = short_config(config, steps)
    with tempfile.TemporaryDirectory(prefix="landmark_profile_") as tmp:
        token = _CURRENT_STORE.set(ResultsStore(tmp))  # teachers of short runs never reach the book's store
        try:
            train(short_config(config, 1), progress=False)  # imports and data cache: not the hot spots
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            try:
                out = train(cfg, progress=False)
            finally:
                prof.disable()
            wall = time.perf_counter() - t0
        finally:
            _CURRENT_STORE.reset(token)
    stats = pstats.Stats(prof)
    phases = _phase_times(stats)
    # nested phases (prepare_data loads teachers that evaluate; evaluate calls predict) are not
    # subtracted: each number is the time spent inside that phase, the rest is "other"
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    hot = [{"function": f"{name} ({_short(filename)}:{line})", "self_s": tt, "cum_s": ct, "calls": nc}
           for (filename, line, name), (_cc, nc, tt, ct, _callers) in rows]
    res = {"method": config.method, "steps": steps, "wall_s": wall, "phases": phases,
           "ms_per_step": out["final"].get("ms_per_step"), "hot": hot}
    res["full_run"] = full_run_estimate(res, config)
    res["full_steps"] = config.train.steps
    return res


def _short(filename: str) -> str:
    f = filename.replace("\\", "/")
    for marker in ("site-packages/", "src/"):
        if marker in f:
            return f.split(marker, 1)[1]
    return f.rsplit("/", 2)[-1] if "/" in f else f


def representative_configs(chapter: str, params_file: str, methods: list[str] | None = None) -> list[RunConfig]:
    """The first run of each method in a chapter's grid (or of the named methods)."""
    from .chapters import chapter_grid
    from .config import load_chapter_params

    p = load_chapter_params(chapter, params_file)
    seen: dict[str, RunConfig] = {}
    for c in chapter_grid(chapter, p):
        if c.method not in seen and (not methods or c.method in methods):
            seen[c.method] = c
    if methods:
        missing = sorted(set(methods) - set(seen))
        if missing:
            raise ValueError(f"{params_file}: no run of method(s) {missing} in chapter {chapter!r}'s grid "
                             f"(it has {sorted({c.method for c in chapter_grid(chapter, p)})})")
    return list(seen.values())


def format_profile(res: dict[str, Any]) -> str:
    lines = [f"## {res['method']}: {res['steps']} steps in {res['wall_s']:.1f} s "
             f"({res['ms_per_step']:.0f} ms/step in the loop)"]
    wall = max(res["wall_s"], 1e-9)
    lines.append(f"{'phase (this short run)':<24}{'seconds':>10}{'share':>8}{'calls':>7}")
    for k, (v, n) in res["phases"].items():
        lines.append(f"{k:<24}{v:>10.2f}{v / wall:>8.0%}{n:>7}")
    est = res["full_run"]
    tot = max(sum(est.values()), 1e-9)
    lines.append(f"estimated full run ({res['full_steps']} steps): {tot:.0f} s")
    for k, v in est.items():
        lines.append(f"  {k:<24}{v:>8.0f} s{v / tot:>6.0%}")
    lines.append(f"{'function (self time)':<72}{'self s':>8}{'cum s':>8}{'calls':>9}")
    for h in res["hot"]:
        lines.append(f"{h['function'][:71]:<72}{h['self_s']:>8.2f}{h['cum_s']:>8.2f}{h['calls']:>9}")
    return "\n".join(lines)


def save_profiles(chapter: str, results: list[dict[str, Any]], path) -> None:
    """Merge ``results`` into the JSON file ``path`` under ``chapter`` (other chapters kept)."""
    import json
    import platform
    from datetime import datetime, timezone
    from pathlib import Path

    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[chapter] = {"measured": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "machine": platform.machine(), "results": results}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def profiles_markdown(data: dict[str, Any]) -> list[str]:
    """The status page's table: each method's estimated full run split into phases."""
    lines = ["| chapter | method | full run (est.) | set-up | training loop | validation | test | "
             "top self-time function |", "|---|---|---|---|---|---|---|---|"]
    for chapter in sorted(data):
        for r in data[chapter]["results"]:
            est = r["full_run"]
            tot = max(sum(est.values()), 1e-9)
            shares = [est[k] / tot for k in ("set-up (data, teachers)", "training loop", "validation",
                                            "test and predictions")]
            top = r["hot"][0]["function"].split(" (")[0] if r["hot"] else "–"
            lines.append(f"| {chapter} | {r['method']} | {tot:.0f} s | " + " | ".join(f"{x:.0%}" for x in shares)
                         + f" | `{top}` |")
    return lines
