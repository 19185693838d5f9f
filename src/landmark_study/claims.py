"""Paper-vs-ours verdicts, computed from the results store.

Each chapter keeps its claims in ``params/claims/<chapter>.yaml``: the paper's
published numbers (verbatim, with table and page) and the claims the chapter
tests. A claim names a metric of a run entry and a rule comparing the chapter's
*arms* (named conditions registered by the chapter module, one run per seed).
Verdicts come only from stored runs:

- ``greater``/``less``: the 95% bootstrap interval of mean(a) - mean(b) (seeds
  resampled within each arm) lies above 0 in the paper's direction ->
  *reproduced*; below ``min_effect`` (default 0) -> *not reproduced*; otherwise
  *inconclusive*.
- ``above``/``below``: the interval of mean(a) against a threshold ``value``.
- ``within``: the interval of mean(a) inside ``[value - tol, value + tol]`` ->
  reproduced; entirely outside -> not reproduced.

Fewer than :data:`MIN_SEEDS` seeds in an arm gives *inconclusive*. Runs that exist
but lack the metric or give it as NaN (e.g. the precision of a detector that
detected nothing) give *undefined*, with how many runs. An arm whose
runs are absent is *not run*; one whose runs exist only under another method
or data-generator version (the method or the data changed since the run) is *stale*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import ConfigError, load_yaml, to_dict
from .paths import REPO_ROOT

MIN_SEEDS = 3
N_BOOT = 10_000
AGGREGATES = ("last", "min", "max", "first", "mean", "drop")
RULES = ("greater", "less", "above", "below", "within", "gap_greater", "gap_less")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "undefined", "not run", "stale")
COLUMNS = ["chapter", "claim_id", "claim", "paper_value", "ours_mean", "ours_spread", "seeds", "profile",
           "verdict"]


def claims_dir() -> Path:
    return REPO_ROOT / "params" / "claims"


@dataclass(frozen=True)
class Rule:
    kind: str
    a: str
    b: str | None = None
    value: float | None = None
    c: str | None = None  # gap rules: (a - b) against (c - d)
    d: str | None = None
    tol: float | None = None
    min_effect: float = 0.0

    def describe(self) -> str:
        if self.kind in ("gap_greater", "gap_less"):
            op = ">" if self.kind == "gap_greater" else "<"
            return (f"mean({self.a}) - mean({self.b}) {op} mean({self.c}) - mean({self.d}): 95% bootstrap CI "
                    "of the difference of the two gaps excludes 0")
        if self.kind in ("greater", "less"):
            op = ">" if self.kind == "greater" else "<"
            extra = f" (not reproduced below an effect of {self.min_effect:g})" if self.min_effect else ""
            return f"mean({self.a}) {op} mean({self.b}): 95% bootstrap CI of the difference excludes 0{extra}"
        if self.kind in ("above", "below"):
            op = ">" if self.kind == "above" else "<"
            return f"mean({self.a}) {op} {self.value:g}: 95% bootstrap CI on that side"
        return f"mean({self.a}) within {self.value:g} ± {self.tol:g}: 95% bootstrap CI inside"


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    metric: str
    rule: Rule
    paper_evidence: str = ""
    paper_value: float | None = None

    def arms(self) -> list[str]:
        return [x for x in (self.rule.a, self.rule.b, self.rule.c, self.rule.d) if x]


@dataclass(frozen=True)
class ClaimsFile:
    chapter: str
    paper: str
    path: Path
    claims: tuple[Claim, ...]
    published: tuple[dict[str, Any], ...] = ()
    differences: str = ""
    paper_file: str | None = None


def _need(d: dict, key: str, where: str, types: type | tuple = str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing key {key!r}")
    if not isinstance(d[key], types):
        raise ConfigError(f"{where}.{key}: {d[key]!r} has type {type(d[key]).__name__}")
    return d[key]


def parse_metric(metric: str, where: str = "metric") -> tuple[str, str | None, str]:
    """``final.<key>`` -> ("final", None, key); ``history.<agg>.<key>`` -> ("history", agg, key)."""
    head, _, rest = metric.partition(".")
    if head == "final" and rest:
        return "final", None, rest
    if head == "history":
        agg, _, key = rest.partition(".")
        if agg in AGGREGATES and key:
            return "history", agg, key
        raise ConfigError(f"{where}: {metric!r}: history metrics read history.<agg>.<key> with agg in "
                          f"{', '.join(AGGREGATES)}")
    raise ConfigError(f"{where}: {metric!r} is not final.<key> or history.<agg>.<key>")


def _parse_rule(d: Any, where: str) -> Rule:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping")
    kind = _need(d, "kind", where)
    if kind not in RULES:
        raise ConfigError(f"{where}.kind: {kind!r} is not allowed; allowed values: {', '.join(RULES)}")
    allowed = {"kind", "a", "b", "value", "tol", "min_effect"}
    if kind in ("gap_greater", "gap_less"):
        allowed |= {"c", "d"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}")
    a = _need(d, "a", where)
    num = (int, float)
    if kind in ("gap_greater", "gap_less"):
        return Rule(kind, a, b=_need(d, "b", where), c=_need(d, "c", where), d=_need(d, "d", where),
                    min_effect=float(d.get("min_effect", 0.0)))
    if kind in ("greater", "less"):
        return Rule(kind, a, b=_need(d, "b", where), min_effect=float(d.get("min_effect", 0.0)))
    value = float(_need(d, "value", where, num))
    if kind == "within":
        tol = float(_need(d, "tol", where, num))
        if tol <= 0:
            raise ConfigError(f"{where}.tol: {tol!r} must be > 0")
        return Rule(kind, a, value=value, tol=tol)
    return Rule(kind, a, value=value)


def load_claims(path: str | Path) -> ClaimsFile:
    """Parse and validate one claims file; errors name the file and the key."""
    path = Path(path)
    doc = load_yaml(path)
    where = str(path)
    chapter = _need(doc, "chapter", where)
    paper = _need(doc, "paper", where)
    raw = _need(doc, "claims", where, list)
    claims, seen = [], set()
    for i, c in enumerate(raw):
        w = f"{where}: claims[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(f"{w}: expected a mapping")
        cid = _need(c, "id", w)
        if cid in seen:
            raise ConfigError(f"{w}.id: duplicate claim id {cid!r}")
        seen.add(cid)
        metric = _need(c, "metric", w)
        parse_metric(metric, f"{w}.metric")
        pv = c.get("paper_value")
        if pv is not None and not isinstance(pv, (int, float)):
            raise ConfigError(f"{w}.paper_value: {pv!r} is not a number or null")
        claims.append(Claim(id=cid, claim=_need(c, "claim", w), metric=metric,
                            rule=_parse_rule(_need(c, "rule", w, dict), f"{w}.rule"),
                            paper_evidence=str(c.get("paper_evidence", "")),
                            paper_value=None if pv is None else float(pv)))
    published = doc.get("published") or []
    if not isinstance(published, list):
        raise ConfigError(f"{where}.published: expected a list")
    for i, row in enumerate(published):
        for k in ("table", "value"):
            _need(row, k, f"{where}: published[{i}]", (str, int, float) if k == "value" else str)
    return ClaimsFile(chapter=chapter, paper=paper, path=path, claims=tuple(claims),
                      published=tuple(published), differences=str(doc.get("differences", "")),
                      paper_file=doc.get("paper_file"))


def claims_files() -> list[ClaimsFile]:
    return [load_claims(p) for p in sorted(claims_dir().glob("*.yaml"))]


# ---------------------------------------------------------------------------
# metrics of stored runs
# ---------------------------------------------------------------------------

def metric_value(result, metric: str) -> float:
    """The number ``metric`` names in a stored run (NaN if the run lacks it)."""
    src, agg, key = parse_metric(metric)
    if src == "final":
        v = result.final.get(key)
        return float(v) if isinstance(v, (int, float)) else math.nan
    series = [h[key] for h in result.history if isinstance(h.get(key), (int, float))]
    if not series:
        return math.nan
    s = np.asarray(series, dtype=float)
    return float({"last": s[-1], "min": s.min(), "max": s.max(), "first": s[0], "mean": s.mean(),
                  "drop": s.max() - s[-1]}[agg])


def bootstrap_ci(a: np.ndarray, b: np.ndarray | None = None, n: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of mean(a) (or mean(a) - mean(b)), resampling within each group."""
    rng = np.random.default_rng(seed)
    ma = rng.choice(a, (n, len(a))).mean(axis=1)
    stat = ma if b is None else ma - rng.choice(b, (n, len(b))).mean(axis=1)
    return float(np.percentile(stat, 2.5)), float(np.percentile(stat, 97.5))


def _gap_bootstrap_ci(groups: list[np.ndarray], n: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of (mean a - mean b) - (mean c - mean d), each group resampled."""
    rng = np.random.default_rng(seed)
    m = [rng.choice(g, (n, len(g))).mean(axis=1) for g in groups]
    stat = (m[0] - m[1]) - (m[2] - m[3])
    return float(np.percentile(stat, 2.5)), float(np.percentile(stat, 97.5))


def decide(rule: Rule, a: np.ndarray, b: np.ndarray | None = None, c: np.ndarray | None = None,
           d: np.ndarray | None = None) -> dict[str, Any]:
    """The verdict of ``rule`` on per-seed values (pure: used by tests with known cases)."""
    present = [x for x in (a, b, c, d) if x is not None]
    out: dict[str, Any] = {"seeds": int(min(len(x) for x in present))}
    if rule.kind in ("gap_greater", "gap_less"):
        if b is None or c is None or d is None:
            raise ValueError(f"rule {rule.kind} needs the values of four arms (a, b, c, d)")
        sign = 1.0 if rule.kind == "gap_greater" else -1.0
        lo, hi = _gap_bootstrap_ci([a, b, c, d])
        gap1, gap2 = float(a.mean() - b.mean()), float(c.mean() - d.mean())
        d_lo, d_hi = (lo, hi) if sign > 0 else (-hi, -lo)
        out.update(ours_mean=gap1 - gap2, ci95=(lo, hi), gap_ab=gap1, gap_cd=gap2,
                   ours_spread=float(np.sqrt(sum(x.var(ddof=1) / len(x) for x in (a, b, c, d))))
                   if min(len(x) for x in (a, b, c, d)) > 1 else math.nan)
        v = "reproduced" if d_lo > 0 else "not reproduced" if d_hi < rule.min_effect else "inconclusive"
    elif rule.kind in ("greater", "less"):
        sign = 1.0 if rule.kind == "greater" else -1.0
        lo, hi = bootstrap_ci(a, b)
        diff = float(a.mean() - b.mean())
        # in the paper's direction: positive means "as claimed"
        d_lo, d_hi = (lo, hi) if sign > 0 else (-hi, -lo)
        out.update(ours_mean=diff, ours_spread=float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
                   if len(a) > 1 and len(b) > 1 else math.nan, ci95=(lo, hi),
                   a_mean=float(a.mean()), b_mean=float(b.mean()))
        if d_lo > 0:
            v = "reproduced"
        elif d_hi < rule.min_effect:
            v = "not reproduced"
        else:
            v = "inconclusive"
    else:
        lo, hi = bootstrap_ci(a)
        out.update(ours_mean=float(a.mean()), ours_spread=float(a.std(ddof=1)) if len(a) > 1 else math.nan,
                   ci95=(lo, hi))
        if rule.kind == "above":
            v = "reproduced" if lo > rule.value else "not reproduced" if hi < rule.value else "inconclusive"
        elif rule.kind == "below":
            v = "reproduced" if hi < rule.value else "not reproduced" if lo > rule.value else "inconclusive"
        else:
            inside = rule.value - rule.tol <= lo and hi <= rule.value + rule.tol
            outside = hi < rule.value - rule.tol or lo > rule.value + rule.tol
            v = "reproduced" if inside else "not reproduced" if outside else "inconclusive"
    if out["seeds"] < MIN_SEEDS and v != "inconclusive":
        out["note"] = f"{v} on fewer than {MIN_SEEDS} seeds"
        v = "inconclusive"
    out["verdict"] = v
    return out


# ---------------------------------------------------------------------------
# arms -> stored runs
# ---------------------------------------------------------------------------

def _config_index(store) -> dict[str, list]:
    """Stored runs by their config alone (to detect runs made with another method version)."""
    import json

    idx: dict[str, list] = {}
    for res in store.entries():
        idx.setdefault(json.dumps(res.config, sort_keys=True), []).append(res)
    return idx


def arm_runs(configs: Iterable, store, index: dict | None = None) -> dict[str, Any]:
    """Look up each config of an arm: ``{"results": [...], "missing": n, "stale": n}``."""
    import json

    from .runs import run_key

    found, missing, stale = [], 0, 0
    for cfg in configs:
        res = store.get(run_key(cfg))
        if res is not None:
            found.append(res)
            continue
        if index is None:
            index = _config_index(store)
        # the same config stored under another key: made by another method or data version
        others = index.get(json.dumps(to_dict(cfg), sort_keys=True), [])
        if others:
            stale += 1
        else:
            missing += 1
    return {"results": found, "missing": missing, "stale": stale}


def evaluate_claims(cf: ClaimsFile, params, store, strict: bool | None = None) -> list[dict[str, Any]]:
    """One row per claim of ``cf`` (the :data:`COLUMNS` plus details) from ``store``.

    An arm the chapter does not define at these parameters is an error when
    ``strict`` (default: at the full profile, where every claim must be
    testable); at the quick and paper profiles the claim shows as "not run"."""
    if strict is None:
        strict = getattr(params, "profile", "full") in ("full", None)
    from .chapters import chapter_arms

    arms = chapter_arms(cf.chapter, params)
    index = None
    rows = []
    for c in cf.claims:
        row: dict[str, Any] = {"chapter": cf.chapter, "claim_id": c.id, "claim": c.claim,
                               "paper_value": c.paper_value, "paper_evidence": c.paper_evidence,
                               "ours_mean": math.nan, "ours_spread": math.nan, "seeds": 0,
                               "profile": getattr(params, "profile", None), "rule": c.rule.describe(),
                               "metric": c.metric, "detail": ""}
        unknown = [a for a in c.arms() if a not in arms]
        if unknown and strict:
            raise ConfigError(f"{cf.path}: claim {c.id!r} uses arm {unknown[0]!r}, which chapter "
                              f"{cf.chapter!r} does not define; its arms: {', '.join(sorted(arms)) or '(none)'}")
        if unknown:
            row["verdict"] = "not run"
            row["detail"] = f"arm {unknown[0]!r} is not part of the {row['profile']} profile"
            rows.append(row)
            continue
        if index is None:
            index = _config_index(store)
        looked = {a: arm_runs(arms[a], store, index) for a in c.arms()}
        if any(v["stale"] for v in looked.values()):
            row["verdict"] = "stale"
            row["detail"] = "; ".join(f"{a}: {v['stale']} run(s) made with an older method or data version"
                                      for a, v in looked.items() if v["stale"])
        elif any(v["missing"] for v in looked.values()):
            row["verdict"] = "not run"
            row["detail"] = "; ".join(f"{a}: {v['missing']} of {len(arms[a])} run(s) missing"
                                      for a, v in looked.items() if v["missing"])
        else:
            vals = {a: np.array([metric_value(r, c.metric) for r in v["results"]]) for a, v in looked.items()}
            bad = [a for a, x in vals.items() if len(x) == 0 or not np.all(np.isfinite(x))]
            if bad:
                # the runs exist, but the number is undefined in some (e.g. precision of a detector
                # that detected nothing): that is an outcome to report, not a missing run
                row["verdict"] = "undefined"
                row["detail"] = "; ".join(
                    f"{a}: {c.metric} absent or not finite in {int((~np.isfinite(vals[a])).sum())} of "
                    f"{len(vals[a])} run(s)" for a in bad)
            else:
                d = decide(c.rule, vals[c.rule.a], *(vals.get(x) if x else None
                                                     for x in (c.rule.b, c.rule.c, c.rule.d)))
                row.update({k: d[k] for k in ("ours_mean", "ours_spread", "seeds", "verdict")})
                lo, hi = d["ci95"]
                if c.rule.c:
                    row["detail"] = (f"{c.rule.a} - {c.rule.b} = {d['gap_ab']:.4g} vs {c.rule.c} - {c.rule.d} = "
                                     f"{d['gap_cd']:.4g}; difference 95% CI [{lo:.4g}, {hi:.4g}]")
                elif c.rule.b:
                    row["detail"] = (f"{c.rule.a} {d['a_mean']:.4g} vs {c.rule.b} {d['b_mean']:.4g}; "
                                     f"difference 95% CI [{lo:.4g}, {hi:.4g}]")
                else:
                    row["detail"] = f"{c.rule.a} mean 95% CI [{lo:.4g}, {hi:.4g}]"
                if "note" in d:
                    row["detail"] += f"; {d['note']}"
        rows.append(row)
    return rows


def chapter_params(chapter: str, profile: str = "full"):
    from .config import load_chapter_params

    path = REPO_ROOT / "params" / chapter / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: no {profile} parameters for chapter {chapter!r}")
    return load_chapter_params(chapter, path)


def claims_table(chapter: str | None = None, profile: str = "full", store=None):
    """Every claim (of one chapter, or all) with its verdict, as a DataFrame."""
    import pandas as pd

    from .runs import chapter_store

    files = claims_files()
    if chapter is not None:
        files = [f for f in files if f.chapter == chapter]
        if not files:
            known = ", ".join(f.chapter for f in claims_files())
            raise ConfigError(f"claims: no claims file for chapter {chapter!r}; chapters with claims: {known}")
    rows = []
    for cf in files:
        params = chapter_params(cf.chapter, profile)
        rows += evaluate_claims(cf, params, store or chapter_store(params))
    df = pd.DataFrame(rows, columns=COLUMNS + ["paper_evidence", "rule", "metric", "detail"])
    return df


def counts(df) -> dict[str, int]:
    out = {"claims": int(len(df))}
    out.update({v: int((df.verdict == v).sum()) for v in VERDICTS})
    out["tested"] = int(df.verdict.isin(["reproduced", "not reproduced", "inconclusive"]).sum())
    return out


def published_frame(cf: ClaimsFile):
    import pandas as pd

    return pd.DataFrame(list(cf.published))


def format_table(df, fmt: str = "table") -> str:
    if fmt == "json":
        return df.to_json(orient="records", indent=1)
    if fmt == "csv":
        return df[COLUMNS].to_csv(index=False)
    show = df[COLUMNS].copy()
    for col in ("ours_mean", "ours_spread"):
        show[col] = show[col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}")
    show["claim"] = show["claim"].str.slice(0, 60)
    return show.to_string(index=False)


VERDICT_MARK = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced",
                "inconclusive": "❔ inconclusive", "undefined": "⚠️ undefined", "not run": "⏳ not run",
                "stale": "♻️ stale"}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown_table(df, link: bool = True) -> str:
    """The claims table as Markdown: claim, paper's evidence, ours, verdict (one row per claim)."""
    lines = ["| chapter | claim | paper's evidence | ours (profile, seeds) | how decided | verdict |",
             "|---|---|---|---|---|---|"]
    for r in df.itertuples(index=False):
        ch = f"[{r.chapter}]({r.chapter}.ipynb)" if link else r.chapter
        if r.verdict in ("not run", "stale", "undefined"):
            ours = _cell(r.detail)
        else:
            ours = f"{_fmt(r.ours_mean)} ± {_fmt(r.ours_spread, 2)} ({r.profile}, {r.seeds} seeds); {_cell(r.detail)}"
        lines.append(f"| {ch} | {_cell(r.claim)} | {_cell(r.paper_evidence) or '–'} | {ours} | "
                     f"`{r.metric}`: {_cell(r.rule)} | {VERDICT_MARK.get(r.verdict, r.verdict)} |")
    return "\n".join(lines)


def published_markdown(cf: ClaimsFile) -> str:
    """The paper's own numbers, verbatim, as a Markdown table."""
    if not cf.published:
        return "_(no published numbers recorded)_"
    keys = ["table", "page", "row", "column", "metric", "value"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in cf.published:
        lines.append("| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)
