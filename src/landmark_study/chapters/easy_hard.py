"""The easy-hard chapter: Xie et al. 2021, sections 4-6, on ``figures``.

Same data, model and batch composition as the collapse chapter (64x64 stick
figures, ``unet_small`` width 8, 8 labeled + 8 unlabeled images per step), at
three label budgets (``label_budgets``, named ``low``/``mid``/``high``: the
analogue of the paper's 1K/5K/10K). Arms are named ``<condition>_<budget>``.

Table 1 (``TABLE1``): ``supervised`` (the ``supervised`` method; it is also the
fixed teacher of PseudoPose and DataDistill, the same run), ``pseudopose``,
``datadistill``, ``single_a``, ``dual_a``, ``single_jc``, ``dual_ra``,
``dual_jc``. All of them run at the ``low`` budget; ``budget_conditions`` also
run at ``mid`` and ``high``.

Table 2 (``low`` budget, affine hard view as the paper's Table 2): ``dual_a``
is small+small; ``dual_small_large`` pairs the small network (network 1, the one
reported) with a larger partner; ``dual_large_large`` and ``supervised_large``.

Further arms (figures): ``supervised_hard`` at ``low`` and ``high`` (hard
augmentation -- Affine 60 + Joint Cutout around the ground truth -- in plain
supervised training, sec. 6.2); ``single_a_gauss`` (targets re-rendered as
fresh Gaussians at the teacher's mapped peak: a remedy to the widening of
warped targets); ``single_a_ramp`` (a ramp-up of the consistency weight);
``supervised_long`` and ``single_jc_long`` (``long_factor`` times the steps).

Arms in ``claim_arms`` run every seed; the others the first ``figure_seeds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import (ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig, register_chapter_params,
                      spec)
from ..methods.consistency import Consistency
from . import register_arms, register_grid

if TYPE_CHECKING:
    import pandas as pd

BUDGETS = ("low", "mid", "high")
TABLE1 = ("supervised", "pseudopose", "datadistill", "single_a", "dual_a", "single_jc", "dual_ra", "dual_jc")
TABLE2 = ("dual_small_large", "dual_large_large", "supervised_large")
EXTRAS = ("supervised_hard", "single_a_gauss", "single_a_ramp", "supervised_long", "single_jc_long")
CLAIM_ARMS = tuple(f"{c}_low" for c in TABLE1) + ("dual_small_large_low",)

#: condition -> (method, method_options, lambda); the supervised conditions are handled apart
CONDITIONS: dict[str, tuple[str, dict[str, Any], float]] = {
    "pseudopose": ("easy_hard", {"teacher": "fixed"}, 1.0),
    "datadistill": ("data_distill", {}, 1.0),
    "single_a": ("easy_hard", {}, 1.0),
    "dual_a": ("easy_hard_dual", {}, 1.0),
    "single_jc": ("easy_hard", {"hard": ["jc"]}, 1.0),
    "dual_ra": ("easy_hard_dual", {"hard": ["ra"]}, 1.0),
    "dual_jc": ("easy_hard_dual", {"hard": ["jc"]}, 1.0),
    "single_a_gauss": ("easy_hard", {"target": "gaussian"}, 1.0),
    "single_jc_long": ("easy_hard", {"hard": ["jc"]}, 1.0),
}


@register_chapter_params("easy_hard")
@dataclass(frozen=True)
class EasyHardParams(ChapterParams):
    figure_seeds: int = spec(1, range=(1, 100), help="seeds for the arms only figures use")
    claim_arms: tuple[str, ...] = spec(CLAIM_ARMS, help="arms that run every seed (the claims use only these)")
    label_budgets: tuple[int, ...] = spec((20, 100, 400), range=(1, None),
                                          help="labeled images of the low, mid and high budgets")
    budget_conditions: tuple[str, ...] = spec(("supervised", "dual_jc"), choices=TABLE1,
                                              help="Table 1 conditions also run at the mid and high budgets")
    large_model: str = spec("unet_small", help="backbone of the 'large' network (Table 2)")
    large_width: int = spec(16, range=(4, 512), help="width of the 'large' network")
    hard_budgets: tuple[str, ...] = spec(("low", "high"), choices=BUDGETS,
                                         help="budgets of supervised_hard")
    ramp_up: float = spec(0.3, range=(0.0, 1.0), help="ramp-up fraction of single_a_ramp")
    long_factor: float = spec(2.0, range=(1.0, 20.0), help="steps multiplier of the *_long arms")
    extras: tuple[str, ...] = spec(EXTRAS, choices=EXTRAS, help="further arms (figures)")
    table2: bool = spec(True, help="run the Table 2 arms")
    steps: int = spec(20, range=(1, 1_000_000))
    batch_size: int = spec(8, range=(1, 1024), help="labeled images per step")
    unlabeled_batch_size: int = spec(8, range=(1, 1024), help="unlabeled images per step")
    lr: float = spec(1e-3, range=(1e-6, 1.0))
    lr_milestones: tuple[float, ...] = spec((), range=(0.0, 1.0), help="fractions of steps where lr *= 0.1")
    n_train: int | None = spec(200, range=(20, None))
    n_val: int | None = spec(50, range=(10, None))
    eval_size: int = spec(50, range=(10, None))
    evals: int = spec(4, range=(1, 1000), help="periodic evaluations per run")
    size: int = spec(32, choices=(32, 48, 64, 96, 128, 192, 256))
    dataset: str = spec("figures")
    model: str = spec("unet_small")
    width: int = spec(8, range=(4, 256))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    sigma: float = spec(1.5, range=(0.1, 20.0))

    def validate(self) -> None:
        from ..config import ConfigError

        if len(self.label_budgets) != 3:
            raise ConfigError(f"label_budgets: need three (low, mid, high), got {list(self.label_budgets)}")
        if list(self.label_budgets) != sorted(self.label_budgets):
            raise ConfigError(f"label_budgets: must be increasing, got {list(self.label_budgets)}")
        if self.figure_seeds > len(self.seeds):
            raise ConfigError(f"figure_seeds: {self.figure_seeds} > number of seeds {len(self.seeds)}")
        missing = sorted(set(self.claim_arms) - set(arm_specs(self)))
        if missing:
            raise ConfigError(f"claim_arms: {missing[0]!r} is not an arm at these parameters; "
                              f"arms: {', '.join(arm_specs(self))}")


def budget_labels(p: EasyHardParams) -> dict[str, int]:
    return dict(zip(BUDGETS, p.label_budgets))


def base_config(p: EasyHardParams, seed: int, num_labels: int, steps: int | None = None) -> RunConfig:
    """The ``easy_hard`` run of one seed and budget (the supervised arms derive from it)."""
    steps = steps or p.steps
    every = max(1, steps // p.evals)
    return RunConfig(
        method="easy_hard",
        seed=seed,
        data=DataConfig(name=p.dataset, size=p.size, n_train=p.n_train, n_val=p.n_val, num_labels=num_labels),
        model=ModelConfig(name=p.model, width=p.width, heatmap_stride=p.heatmap_stride),
        train=TrainConfig(steps=steps, batch_size=p.batch_size, unlabeled_batch_size=p.unlabeled_batch_size,
                          lr=p.lr, lr_milestones=p.lr_milestones, sigma=p.sigma, eval_every=every,
                          eval_size=p.eval_size, checkpoint_every=max(every, steps // 2)),
    )


def supervised_config(base: RunConfig) -> RunConfig:
    """The supervised baseline: exactly the fixed teacher of PseudoPose/DataDistill (one run, shared)."""
    return Consistency.fixed_teacher_config(base)


def _variant(base: RunConfig, method: str, options: dict[str, Any], lam: float = 1.0) -> RunConfig:
    return base.with_overrides(method=method, method_options=options, loss_weights={"cons": lam})


def arm_specs(p: EasyHardParams) -> dict[str, Any]:
    """arm -> function(seed) -> RunConfig, in the order the grid runs them (supervised runs first:
    they are the teachers of PseudoPose and DataDistill)."""
    labels = budget_labels(p)
    specs: dict[str, Any] = {}

    def add(arm, fn):
        specs[arm] = fn

    budgets_of = {c: (BUDGETS if c in p.budget_conditions else ("low",)) for c in TABLE1}
    large = {"model.name": p.large_model, "model.width": p.large_width}
    for b in BUDGETS:
        if b in budgets_of["supervised"]:
            add(f"supervised_{b}", lambda s, n=labels[b]: supervised_config(base_config(p, s, n)))
    if p.table2:
        add("supervised_large_low", lambda s: supervised_config(base_config(p, s, labels["low"]).with_overrides(**large)))
    if "supervised_long" in p.extras:
        add("supervised_long_low", lambda s: supervised_config(
            base_config(p, s, labels["low"], steps=int(round(p.steps * p.long_factor)))))
    for c in TABLE1[1:]:
        for b in budgets_of[c]:
            m, o, lam = CONDITIONS[c]
            add(f"{c}_{b}", lambda s, n=labels[b], m=m, o=o, lam=lam: _variant(base_config(p, s, n), m, o, lam))
    if p.table2:
        add("dual_small_large_low", lambda s: _variant(
            base_config(p, s, labels["low"]), "easy_hard_dual",
            {"partner_model": p.large_model, "partner_width": p.large_width}))
        add("dual_large_large_low", lambda s: _variant(
            base_config(p, s, labels["low"]).with_overrides(**large), "easy_hard_dual", {}))
    if "supervised_hard" in p.extras:
        for b in p.hard_budgets:
            add(f"supervised_hard_{b}", lambda s, n=labels[b]: _variant(
                base_config(p, s, n).with_overrides(**{"train.unlabeled_batch_size": 0}), "easy_hard",
                {"labeled_aug": "hard", "hard": ["jc"]}, 0.0))
    if "single_a_gauss" in p.extras:
        m, o, lam = CONDITIONS["single_a_gauss"]
        add("single_a_gauss_low", lambda s, m=m, o=o, lam=lam: _variant(base_config(p, s, labels["low"]), m, o, lam))
    if "single_a_ramp" in p.extras:
        add("single_a_ramp_low", lambda s: _variant(base_config(p, s, labels["low"]), "easy_hard",
                                                    {"ramp_up": p.ramp_up}))
    if "single_jc_long" in p.extras:
        m, o, lam = CONDITIONS["single_jc_long"]
        add("single_jc_long_low", lambda s, m=m, o=o, lam=lam: _variant(
            base_config(p, s, labels["low"], steps=int(round(p.steps * p.long_factor))), m, o, lam))
    return specs


@register_arms("easy_hard")
def arms(p: EasyHardParams) -> dict[str, list[RunConfig]]:
    out: dict[str, list[RunConfig]] = {}
    for name, fn in arm_specs(p).items():
        seeds = p.seeds if name in p.claim_arms else p.seeds[:p.figure_seeds]
        out[name] = [fn(s) for s in seeds]
    return out


@register_grid("easy_hard")
def grid(p: EasyHardParams) -> list[RunConfig]:
    """Every run, supervised ones first (teachers), then by increasing seed within each arm's block."""
    cfgs = [c for runs in arms(p).values() for c in runs]
    sup = [c for c in cfgs if c.method == "supervised"]
    rest = [c for c in cfgs if c.method != "supervised"]
    return sup + rest


def split_arm(arm: str) -> tuple[str, str]:
    """``'dual_jc_low'`` -> ``('dual_jc', 'low')``."""
    cond, _, b = arm.rpartition("_")
    return cond, b


# ---------------------------------------------------------------------------
# reading the results
# ---------------------------------------------------------------------------

def run_table(p: EasyHardParams, store) -> "pd.DataFrame":
    """One row per stored run: arm, condition, budget, labels, seed, final test PCK (network 1;
    for dual runs also network 2 and the average), last logged diagnostics."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for arm, cfgs in arms(p).items():
        cond, b = split_arm(arm)
        for c in cfgs:
            r = store.get(run_key(c))
            if r is None:
                continue
            last = r.history[-1]
            f = r.final
            rows.append({"arm": arm, "condition": cond, "budget": b, "labels": c.data.num_labels, "seed": c.seed,
                         "steps": c.train.steps, "pck@0.1": f["pck@0.1"], "pck@0.05": f.get("pck@0.05"),
                         "net2 pck@0.1": f.get("net2/pck@0.1"), "avg pck@0.1": f.get("avg/pck@0.1", f["pck@0.1"]),
                         "peak labeled": last.get("diag/peak_labeled"), "peak teacher": last.get("diag/peak_teacher"),
                         "collapse ratio": last.get("diag/collapse_ratio"),
                         "mass teacher": last.get("diag/mass_teacher"), "mass target": last.get("diag/mass_target"),
                         "mass labeled": last.get("diag/mass_labeled"),
                         "ms/step": last["ms_per_step"], "key": r.key})
    return pd.DataFrame(rows)


def curves_frame(p: EasyHardParams, store) -> "pd.DataFrame":
    """Long table of the logged curves (arm, seed, step, val PCK@0.1, responses, heatmap masses)."""
    import pandas as pd

    from ..runs import run_key

    keys = {"val pck@0.1": "val/pck@0.1", "val avg pck@0.1": "val/avg/pck@0.1", "labeled": "diag/peak_labeled",
            "teacher": "diag/peak_teacher", "student": "diag/peak_student", "mass teacher": "diag/mass_teacher",
            "mass target": "diag/mass_target", "mass labeled": "diag/mass_labeled"}
    rows = []
    for arm, cfgs in arms(p).items():
        for c in cfgs:
            r = store.get(run_key(c))
            if r is None:
                continue
            for e in r.history:
                rows.append({"arm": arm, "seed": c.seed, "step": e["step"], **{k: e.get(v) for k, v in keys.items()}})
    return pd.DataFrame(rows)
