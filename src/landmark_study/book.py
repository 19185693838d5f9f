"""Execute the chapter notebooks with papermill and build the Jupyter Book.

``jupyter-book build`` exits 0 even when a notebook fails, so the book is
built with execution "off" from notebooks that papermill executed first; a
failing chapter stops the build here, with its name and the failing cell.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .paths import REPO_ROOT

BOOK_DIR = REPO_ROOT / "book"
PARAMS_DIR = REPO_ROOT / "params"
BUILD_DIR = REPO_ROOT / "_build"


class ChapterFailed(RuntimeError):
    pass


def chapters_in_toc() -> list[str]:
    """Chapter names in the order of ``_toc.yml`` (notebooks only, not index/status)."""
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            f = node.get("file")
            if f and (REPO_ROOT / (f + ".ipynb")).exists():
                names.append(Path(f).name)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return names


@dataclass
class ChapterStatus:
    name: str
    profile: str
    seconds: float
    ok: bool
    message: str = ""


def params_file(chapter: str, profile: str) -> Path:
    p = PARAMS_DIR / chapter / f"{profile}.yaml"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no {profile!r} parameters for chapter {chapter!r}")
    return p


def parameter_names(notebook: Path) -> list[str]:
    """Names assigned in a notebook's ``parameters``-tagged cell (its quick-profile defaults)."""
    import re

    raw = json.loads(Path(notebook).read_text())
    for cell in raw.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return re.findall(r"^([A-Za-z_]\w*)\s*=", "".join(cell["source"]), re.M)
    return []


def complete_parameters(values: dict, validated, names: list[str]) -> dict:
    """The parameters to inject: the profile's values, plus, for every other name the notebook's
    parameters cell sets, the dataclass default. Without this a key set only in quick.yaml keeps its
    quick value in a full-profile execution, and the notebook asks for runs the sweep never made."""
    from .config import to_dict

    out = dict(values)
    if validated is None:
        return out
    full = to_dict(validated)
    for n in names:
        if n not in out and n in full:
            out[n] = full[n]
    return out


def execute_chapter(chapter: str, profile: str = "full", out_dir: Path | None = None,
                    log_output: bool = False) -> ChapterStatus:
    """Run ``book/<chapter>.ipynb`` with ``params/<chapter>/<profile>.yaml``."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from .config import load_chapter_params

    pfile = params_file(chapter, profile)
    validated = load_chapter_params(chapter, pfile)  # fail before any compute
    params = yaml.safe_load(pfile.read_text()) or {}
    src = BOOK_DIR / f"{chapter}.ipynb"
    params = complete_parameters(params, validated, parameter_names(src))
    out_dir = out_dir or BUILD_DIR / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        pm.execute_notebook(str(src), str(out_dir / f"{chapter}.ipynb"), parameters=params,
                            cwd=str(BOOK_DIR), kernel_name="python3", progress_bar=False,
                            log_output=log_output)
    except PapermillExecutionError as e:
        msg = (f"chapter {chapter!r} ({profile}) failed in cell {e.exec_count}:\n"
               f"--- cell source ---\n{e.source}\n--- error ---\n{e.ename}: {e.evalue}")
        return ChapterStatus(chapter, profile, time.time() - t0, False, msg)
    return ChapterStatus(chapter, profile, time.time() - t0, True)


def _environment() -> dict[str, str]:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "git commit": commit or "?", "python": platform.python_version(), "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "cpu cores": str(os.cpu_count()),
        "platform": platform.platform(), "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def training_cost(chapter: str, profile: str = "full") -> dict[str, object]:
    """What a chapter's grid at ``profile`` cost, from the stored runs' provenance."""
    from .chapters import chapter_grid
    from .config import load_chapter_params
    from .runs import chapter_store, run_key

    try:
        params = load_chapter_params(chapter, params_file(chapter, profile))
    except FileNotFoundError:
        return {}
    grid = chapter_grid(chapter, params)
    store = chapter_store(params)
    found = [r for r in (store.get(run_key(c)) for c in grid) if r is not None]
    wall = sum(float(r.provenance.get("wall_time_s") or 0.0) for r in found)
    rss = [float(r.provenance["peak_rss_mb"]) for r in found if r.provenance.get("peak_rss_mb")]
    from .sweep import sweep_records

    sweeps = [r for r in sweep_records(store.root) if r.get("chapter") == chapter and r.get("trained")]
    workers = int(getattr(params, "workers", 1) or 1)
    last = _representative(sweeps)
    # from scratch: the last sweep that trained the whole grid, plus the runs trained after it (their
    # summed wall times over the workers); without such a sweep, every stored run that way
    whole = last if last and not last.get("cached") and not last.get("failed") else None
    later = [r for r in found if whole is None or str(r.provenance.get("time", "")) > str(whole.get("finished", ""))]
    from .bench import REFERENCE_PROBE_MS

    later_s = sum(float(r.provenance.get("wall_time_s") or 0.0) for r in later) / workers
    sweep_s = float(whole["wall_s"]) if whole else 0.0
    # the sweep at the reference machine speed where it recorded its machine's speed probe
    # (sweeps without one ran on the reference machine)
    probe = float(whole["speed_probe_ms"]) if whole and whole.get("speed_probe_ms") else None
    scratch = sweep_s + later_s
    scratch_ref = sweep_s * (REFERENCE_PROBE_MS / probe if probe else 1.0) + later_s
    return {"runs": len(grid), "stored": len(found), "seeds": len(params.seeds), "train_s": wall,
            "workers": workers, "scratch_s": scratch, "scratch_ref_s": scratch_ref, "speed_probe_ms": probe,
            "scratch_basis": (
                f"the whole-grid sweep of {whole['finished'][:10]} + {len(later)} later run(s)" if whole
                else f"{len(later)} stored runs' wall times over {workers} worker(s)"),
            "peak_rss_mb": max(rss) if rss else None, "last_sweep": last}


#: the budgets of the performance issue (this 2-core CPU)
CHAPTER_BUDGET_S = 45 * 60
BOOK_BUDGET_S = 5 * 3600
BUILD_BUDGET_S = 10 * 60
QUICK_BUDGET_S = 15 * 60


def budget_lines(costs: dict[str, dict], build_s: float | None = None, quick_s: float | None = None) -> list[str]:
    """Markdown bullets holding the measured costs against the budgets. A chapter's full profile
    from scratch is :func:`training_cost`'s ``scratch_s``: the wall time of its last whole-grid
    sweep plus the runs trained since (their wall times over the workers: timed side by side,
    they carry the contention already), or all its runs that way when no sweep trained the
    whole grid (an over-estimate where runs trained their own dependencies). Where that sweep
    recorded its machine's speed probe, its wall time is scaled to the reference machine
    (``scratch_ref_s``; :data:`landmark_study.bench.REFERENCE_PROBE_MS`) and the line says both."""
    def mark(ok: bool) -> str:
        return "within" if ok else "**over**"

    lines, total = [], 0.0
    for name, c in costs.items():
        if not c or not c.get("runs"):
            continue
        est = float(c.get("scratch_ref_s", c["scratch_s"]))
        total += est
        note = "" if c["stored"] == c["runs"] else f"; {c['runs'] - c['stored']} of {c['runs']} runs not stored"
        probe = c.get("speed_probe_ms")
        if probe:
            from .bench import REFERENCE_PROBE_MS

            note += (f"; measured {float(c['scratch_s']) / 60:.1f} min on a machine whose speed probe took "
                     f"{probe:.1f} ms/step, scaled to the reference {REFERENCE_PROBE_MS:.1f} ms/step")
        lines.append(f"- {name}: full profile from scratch about {est / 60:.1f} min on {c.get('workers', 1)} "
                     f"worker(s) ({c['scratch_basis']}{note}): {mark(est <= CHAPTER_BUDGET_S)} the "
                     f"{CHAPTER_BUDGET_S // 60}-minute budget.")
    if lines:
        lines.append(f"- The whole book from scratch: about {total / 3600:.2f} h, {mark(total <= BOOK_BUDGET_S)} "
                     f"the {BOOK_BUDGET_S // 3600}-hour budget.")
    if build_s is not None:
        lines.append(f"- This build executed its chapters in {build_s / 60:.1f} min, {mark(build_s <= BUILD_BUDGET_S)} "
                     f"the {BUILD_BUDGET_S // 60}-minute budget for `make book` from committed results.")
    if quick_s is not None:
        lines.append(f"- Every chapter at the quick profile (`bench --chapters`): {quick_s / 60:.1f} min, "
                     f"{mark(quick_s <= QUICK_BUDGET_S)} the {QUICK_BUDGET_S // 60}-minute budget.")
    return lines


def _representative(sweeps: list[dict]) -> dict | None:
    """The last sweep that trained the whole grid from an empty store (its wall time is the
    chapter's cost), else the last sweep that trained anything."""
    whole = [r for r in sweeps if not r.get("cached") and not r.get("failed")]
    return whole[-1] if whole else (sweeps[-1] if sweeps else None)


def _sweep_cell(rec: dict | None) -> str:
    if not rec:
        return "–"
    return (f"{rec['wall_s'] / 60:.1f} min, {rec['trained']} trained ({rec['cached']} cached), "
            f"{rec['workers']} workers, {rec['finished'][:10]}")


def _bench_markdown() -> list[str]:
    p = REPO_ROOT / "book" / "results" / "bench.json"
    if not p.exists():
        return ["_No bench results committed (run `python -m landmark_study bench --save`)._"]
    from .bench import budget_lines, tables_markdown

    res = json.loads(p.read_text())
    return tables_markdown(res) + [""] + budget_lines(res)


def _profile_markdown() -> list[str]:
    p = REPO_ROOT / "book" / "results" / "profile.json"
    if not p.exists():
        return ["_No profiles committed (run `python -m landmark_study profile CHAPTER --save`)._"]
    from .profiling import profiles_markdown

    return ["One run per method of each chapter's full grid, trained for a few steps under cProfile",
            "(`python -m landmark_study profile CHAPTER --save`); the full run's time is estimated per",
            "phase from the measured ms/step and seconds per evaluation. For methods with a teacher",
            "(pseudo_label, data_distill, self-training rounds, clustering stage 2) the set-up share also",
            "contains training the short run's own short teachers, which a sweep trains as separate runs.", "",
            *profiles_markdown(json.loads(p.read_text()))]


def write_status(statuses: list[ChapterStatus], path: Path) -> None:
    lines = ["# Status", "",
             "How each chapter of this build was executed (papermill, before the book was rendered), and",
             "what its full profile cost to train: the sum of the stored runs' wall times (runs of a sweep",
             "overlap when it uses several workers), the wall time of the last full-profile sweep that",
             "trained the whole grid from scratch (as `sweep` recorded it; where there is none, the last",
             "sweep that trained runs, counting only its own part), and the",
             "largest peak resident memory a run recorded.", "",
             "| chapter | profile | execution time | result | full-profile runs stored | seeds | "
             "full-profile training | full sweep (wall time) | peak memory |",
             "|---|---|---|---|---|---|---|---|---|"]
    costs = {s.name: training_cost(s.name, "full") for s in statuses}
    for s in statuses:
        c = costs[s.name]
        runs = f"{c['stored']}/{c['runs']}" if c else "–"
        train = f"{c['train_s'] / 60:.1f} min" if c and c["runs"] else "–"
        rss = f"{c['peak_rss_mb']:.0f} MiB" if c and c.get("peak_rss_mb") else "–"
        lines.append(f"| [{s.name}]({s.name}.ipynb) | {s.profile} | {s.seconds:.1f} s | "
                     f"{'ok' if s.ok else 'FAILED'} | {runs} | {c.get('seeds', '–') if c else '–'} | {train} | "
                     f"{_sweep_cell(c.get('last_sweep') if c else None)} | {rss} |")
    quick_s = None
    bench = REPO_ROOT / "book" / "results" / "bench.json"
    if bench.exists():
        rows = json.loads(bench.read_text()).get("chapters_quick") or []
        quick_s = sum(float(r.get("seconds") or 0) for r in rows) if rows else None
    full = all(s.profile == "full" for s in statuses)
    lines += ["", "## Budgets", "",
              *budget_lines(costs,
                            sum(s.seconds for s in statuses) if full else None, quick_s)]
    lines += ["", "## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _environment().items()]
    lines += ["", "## Benchmarks", "", *_bench_markdown()]
    lines += ["", "## Where the training time goes", "", *_profile_markdown()]
    lines += ["", "Full-profile numbers come from the committed results store (`book/results/full`);",
              "a chapter retrains only the runs whose config or method version changed."]
    path.write_text("\n".join(lines) + "\n")


def build(profile: str = "full", chapters: list[str] | None = None) -> Path:
    """Execute every chapter and build the HTML book into ``_build/html``."""
    known = chapters_in_toc()
    unknown = [c for c in chapters or [] if c not in known]
    if unknown:
        raise ChapterFailed(f"unknown chapter {unknown[0]!r}; chapters in _toc.yml: {', '.join(known)}")
    chapters = chapters or known
    src = BUILD_DIR / "executed"
    if src.exists():
        shutil.rmtree(src)
    (src / "book").mkdir(parents=True)
    statuses = []
    for ch in chapters:
        print(f"[book] executing {ch} ({profile} profile) ...", flush=True)
        st = execute_chapter(ch, profile, src / "book")
        print(f"[book]   {ch}: {'ok' if st.ok else 'FAILED'} in {st.seconds:.1f} s", flush=True)
        statuses.append(st)
        if not st.ok:
            raise ChapterFailed(st.message)
    shutil.copy(REPO_ROOT / "_config.yml", src / "_config.yml")
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    skipped = set(known) - set(chapters)
    toc["chapters"] = [e for e in toc.get("chapters", []) if Path(e.get("file", "")).name not in skipped]
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    for f in BOOK_DIR.glob("*.md"):
        shutil.copy(f, src / "book" / f.name)
    write_status(statuses, src / "book" / "status.md")
    out = BUILD_DIR / "jb"
    print("[book] rendering with jupyter-book (execution off) ...", flush=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(src), "--path-output", str(out), "--all"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ChapterFailed(f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    html = BUILD_DIR / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(out / "_build" / "html", html)
    (BUILD_DIR / "status.json").write_text(json.dumps([s.__dict__ for s in statuses], indent=1))
    print(f"[book] done: {html / 'index.html'}", flush=True)
    return html
