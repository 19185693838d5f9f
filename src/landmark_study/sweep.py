"""Grids of runs, on dask.distributed.

``python -m landmark_study sweep params/<chapter>/full.yaml`` expands the
chapter's grid (methods x label fractions x seeds ...) into run configs and
trains the ones missing from the results store, on a LocalCluster by default
or on an existing cluster (``--scheduler tcp://HOST:PORT``). Finished runs are
skipped, so a sweep that was killed resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .config import RunConfig, run_config_from_dict, to_dict
from .runs import ResultsStore, RunResult, run, run_key


@dataclass
class SweepReport:
    results: list[RunResult]
    cached: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{len(self.results)} runs: {len(self.cached)} from the store, {len(self.ran)} trained, "
                f"{len(self.failed)} failed")


def _run_one(config: dict[str, Any], store_root: str, threads: int) -> dict[str, Any]:
    """Worker entry point (module-level so dask can pickle it by reference)."""
    import torch

    torch.set_num_threads(threads)
    cfg = run_config_from_dict(config)
    try:
        res = run(cfg, ResultsStore(store_root), progress=False)
    except Exception as e:  # reported, not raised: other runs go on
        return {"key": run_key(cfg), "error": f"{type(e).__name__}: {e}"}
    return {"key": res.key, "error": None}


def run_grid(configs: Sequence[RunConfig], store: ResultsStore, *, workers: int = 1,
             scheduler: str | None = None, progress: bool | None = None) -> SweepReport:
    """Train every config not yet in ``store``; return all results in input order.

    ``workers == 1`` and no scheduler: in this process. Otherwise a dask
    LocalCluster of ``workers`` single-threaded processes (torch gets
    cores // workers threads each), or the cluster at ``scheduler``.
    """
    from tqdm import tqdm

    from .train import progress_default

    progress = progress_default() if progress is None else progress
    keys = [run_key(c) for c in configs]
    report = SweepReport(results=[])
    todo: dict[str, RunConfig] = {}
    for k, c in zip(keys, configs):
        if store.get(k) is not None:
            report.cached.append(k)
        else:
            todo.setdefault(k, c)
    if todo and workers == 1 and scheduler is None:
        for k, c in tqdm(todo.items(), disable=not progress, desc="runs"):
            try:
                run(c, store, progress=progress)
                report.ran.append(k)
            except Exception as e:
                report.failed[k] = f"{type(e).__name__}: {e}"
    elif todo:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        try:
            futures = [client.submit(_run_one, to_dict(c), str(store.root.resolve()), threads, key=f"run-{k}", pure=False)
                       for k, c in todo.items()]
            for fut in tqdm(as_completed(futures), total=len(futures), disable=not progress, desc="runs"):
                out = fut.result()
                if out["error"]:
                    report.failed[out["key"]] = out["error"]
                else:
                    report.ran.append(out["key"])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    for k in keys:
        r = store.get(k)
        if r is not None:
            report.results.append(r)
    return report


def sweep_params_file(path: str | Path, *, workers: int | None = None, scheduler: str | None = None,
                      store_root: str | None = None) -> SweepReport:
    """Run a chapter's grid from its params file (the chapter is the file's folder name). When
    something is to be trained, the machine's speed (:func:`landmark_study.bench.speed_probe`)
    is measured first and recorded with the sweep."""
    from .chapters import chapter_grid
    from .config import load_chapter_params
    from .runs import default_store

    path = Path(path)
    chapter = path.parent.name
    params = load_chapter_params(chapter, path)
    configs = chapter_grid(chapter, params)
    store = ResultsStore(store_root) if store_root else (
        ResultsStore(params.store) if params.store else default_store(params.profile))
    n_workers = workers or params.workers
    probe = None
    if any(store.get(run_key(c)) is None for c in configs):
        from .bench import speed_probe_subprocess

        probe = speed_probe_subprocess()  # before the workers start: the machine's speed, idle
    t0 = time.time()
    report = run_grid(configs, store, workers=n_workers, scheduler=scheduler)
    record_sweep(store, chapter=chapter, profile=params.profile, params_file=str(path), report=report,
                 wall_s=time.time() - t0, workers=n_workers, scheduler=scheduler, speed_probe_ms=probe)
    return report


SWEEP_LOG = "sweeps.jsonl"  # not *.json: the store lists runs by that suffix


def record_sweep(store: ResultsStore, *, chapter: str, profile: str, params_file: str, report: SweepReport,
                 wall_s: float, workers: int, scheduler: str | None = None,
                 speed_probe_ms: float | None = None) -> dict[str, Any]:
    """Append one line about a finished sweep to ``<store>/sweeps.jsonl`` (wall time as measured,
    how many runs were trained, cached or failed, on what machine and, when measured, that
    machine's :func:`~landmark_study.bench.speed_probe`) for the status page."""
    import json
    import platform

    rec = {"chapter": chapter, "profile": profile, "params_file": params_file, "runs": len(report.results)
           + len(report.failed), "trained": len(report.ran), "cached": len(report.cached),
           "failed": len(report.failed), "wall_s": round(float(wall_s), 1), "workers": int(workers),
           "scheduler": scheduler, "cpu_cores": os.cpu_count(), "machine": platform.machine(),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if speed_probe_ms is not None:
        rec["speed_probe_ms"] = round(float(speed_probe_ms), 2)
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / SWEEP_LOG, "a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def sweep_records(store_root: str | Path) -> list[dict[str, Any]]:
    """Every record of :func:`record_sweep` in a store, oldest first (unreadable lines skipped)."""
    import json

    p = Path(store_root) / SWEEP_LOG
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
