"""The collapse chapter: Xie et al. 2021, sections 3 and 6.3, on ``figures``.

Every arm is one configuration of the ``consistency`` method (the supervised
baseline included: ``loss_weights.cons = 0``, so it logs the same response
diagnostics on unlabeled images). One seed of every arm shares data, model,
schedule and batch composition; arms differ only in ``method_options``,
``loss_weights`` and, for the "many labels" pair, ``data.num_labels``.

Arms:

* ``supervised`` / ``naive``: Fig. 3 -- the standard consistency method (easy
  augmentation for both views, gradients through both, the same network,
  lambda = 1) against supervised only; ``supervised`` also evaluates its final
  model under the perturbations of Fig. 5 (left).
* ``naive_small_lambda``, ``naive_many`` (+ ``supervised_many``): sec. 3.2 --
  a smaller lambda, many more labels.
* ``easy_easy``, ``hard_hard``, ``hard_easy``, ``easy_hard`` (teacher_student,
  all with stop-gradient) and ``easy_hard_no_sg``: Fig. 5 (right) / Fig. 7 / sec. 3.3.
* ``threshold_<t>``, ``ema_<a>``, ``reweight``: Fig. 8 (A1-A4, B1-B2, C), each
  on the easy-easy pair with stop-gradient (the failed attempts add one device
  to the consistency method that has no easy-hard gap).

Arms listed in ``claim_arms`` run every seed of ``seeds`` (the claims may only
use those); the others (figures only) run the first ``figure_seeds`` seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import (ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig, register_chapter_params,
                      spec)
from ..methods.consistency import COLLAPSE_RATIO
from . import register_arms, register_grid

if TYPE_CHECKING:
    import pandas as pd

#: arms the claims in params/claims/collapse.yaml use: the default of ``claim_arms``
CLAIM_ARMS = ("supervised", "naive", "supervised_many", "naive_many", "easy_easy", "easy_hard")
PAIRS = ("easy_easy", "hard_hard", "hard_easy", "easy_hard")
PERTURBATIONS = ("affine30", "affine60", "jc5", "affine60+jc5")


@register_chapter_params("collapse")
@dataclass(frozen=True)
class CollapseParams(ChapterParams):
    figure_seeds: int = spec(1, range=(1, 100), help="seeds for the arms only figures use")
    claim_arms: tuple[str, ...] = spec(CLAIM_ARMS, help="arms that run every seed (the claims use only these)")
    pairs: tuple[str, ...] = spec(PAIRS, choices=PAIRS, help="teacher_student augmentation pairs (stop-gradient)")
    num_labels: int = spec(40, range=(1, None), help="labeled images of the main arms")
    many_labels: int = spec(1000, range=(1, None), help="labeled images of the 'many labels' arms")
    small_lambda: float = spec(0.1, range=(0.0, None), help="lambda of naive_small_lambda")
    thresholds: tuple[float, ...] = spec((0.2, 0.4, 0.6, 0.8), range=(0.0, 1.0))
    ema_decays: tuple[float, ...] = spec((0.99, 0.999), range=(0.0, 1.0))
    reweight_gain: float = spec(30.0, range=(0.0, None))
    steps: int = spec(20, range=(1, 1_000_000))
    batch_size: int = spec(8, range=(1, 1024), help="labeled images per step")
    unlabeled_batch_size: int = spec(8, range=(1, 1024), help="unlabeled images per step (two views each)")
    lr: float = spec(1e-3, range=(1e-6, 1.0))
    lr_milestones: tuple[float, ...] = spec((), range=(0.0, 1.0), help="fractions of steps where lr *= 0.1")
    n_train: int | None = spec(200, range=(20, None))
    n_val: int | None = spec(50, range=(10, None))
    eval_size: int = spec(50, range=(10, None))
    evals: int = spec(4, range=(1, 1000), help="periodic evaluations (response and PCK) per run")
    size: int = spec(32, choices=(32, 48, 64, 96, 128, 192, 256))
    dataset: str = spec("figures")
    model: str = spec("unet_small")
    width: int = spec(8, range=(4, 256))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    sigma: float = spec(1.5, range=(0.1, 20.0))

    def validate(self) -> None:
        from ..config import ConfigError

        if self.figure_seeds > len(self.seeds):
            raise ConfigError(f"figure_seeds: {self.figure_seeds} > number of seeds {len(self.seeds)}")
        missing = sorted(set(self.claim_arms) - set(arm_options(self)))
        if missing:
            raise ConfigError(f"claim_arms: {missing[0]!r} is not an arm at these parameters; "
                              f"arms: {', '.join(arm_options(self))}")


def base_config(p: CollapseParams, seed: int, num_labels: int | None = None) -> RunConfig:
    every = max(1, p.steps // p.evals)
    return RunConfig(
        method="consistency",
        seed=seed,
        data=DataConfig(name=p.dataset, size=p.size, n_train=p.n_train, n_val=p.n_val,
                        num_labels=num_labels or p.num_labels),
        model=ModelConfig(name=p.model, width=p.width, heatmap_stride=p.heatmap_stride),
        train=TrainConfig(steps=p.steps, batch_size=p.batch_size, unlabeled_batch_size=p.unlabeled_batch_size,
                          lr=p.lr, lr_milestones=p.lr_milestones, sigma=p.sigma, eval_every=every, eval_size=p.eval_size,
                          checkpoint_every=max(every, p.steps // 2)),
    )


def _variant(base: RunConfig, options: dict[str, Any], lam: float = 1.0) -> RunConfig:
    return base.with_overrides(method_options=options, loss_weights={"cons": lam})


def arm_options(p: CollapseParams) -> dict[str, tuple[dict[str, Any], float, bool]]:
    """arm -> (method_options, lambda, many_labels)."""
    naive = {"teacher_aug": "easy", "student_aug": "easy", "stop_gradient": False}
    ee = {"teacher_aug": "easy", "student_aug": "easy", "stop_gradient": True}
    arms: dict[str, tuple[dict[str, Any], float, bool]] = {
        "supervised": ({"perturbations": list(PERTURBATIONS)}, 0.0, False),
        "naive": (naive, 1.0, False),
        "naive_small_lambda": (naive, p.small_lambda, False),
        "supervised_many": ({}, 0.0, True),
        "naive_many": (naive, 1.0, True),
    }
    for pair in p.pairs:
        t, s = pair.split("_")
        arms[pair] = ({"teacher_aug": t, "student_aug": s, "stop_gradient": True}, 1.0, False)
    arms["easy_hard_no_sg"] = ({"teacher_aug": "easy", "student_aug": "hard", "stop_gradient": False}, 1.0, False)
    for t in p.thresholds:
        arms[f"threshold_{t:g}"] = ({**ee, "confidence_threshold": t}, 1.0, False)
    for a in p.ema_decays:
        arms[f"ema_{a:g}"] = ({**ee, "teacher": "ema", "ema_decay": a}, 1.0, False)
    arms["reweight"] = ({**ee, "reweight_gain": p.reweight_gain}, 1.0, False)
    return arms


@register_arms("collapse")
def arms(p: CollapseParams) -> dict[str, list[RunConfig]]:
    out: dict[str, list[RunConfig]] = {}
    for name, (opts, lam, many) in arm_options(p).items():
        seeds = p.seeds if name in p.claim_arms else p.seeds[:p.figure_seeds]
        out[name] = [_variant(base_config(p, s, p.many_labels if many else None), opts, lam) for s in seeds]
    return out


@register_grid("collapse")
def grid(p: CollapseParams) -> list[RunConfig]:
    return [c for runs in arms(p).values() for c in runs]


# ---------------------------------------------------------------------------
# reading the results
# ---------------------------------------------------------------------------

def collapsed(result) -> bool:
    """The chapter's one rule: the final unlabeled (teacher-view) peak response is below
    ``COLLAPSE_RATIO`` of its maximum after the burn-in (``diag/collapse_ratio``)."""
    return float(result.history[-1]["diag/collapse_ratio"]) < COLLAPSE_RATIO


def run_table(p: CollapseParams, store) -> "pd.DataFrame":
    """One row per stored run of every arm: final PCK@0.1, responses, the collapse verdict."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for arm, cfgs in arms(p).items():
        for c in cfgs:
            r = store.get(run_key(c))
            if r is None:
                continue
            last = r.history[-1]
            rows.append({"arm": arm, "seed": c.seed, "labels": c.data.num_labels,
                         "pck@0.1": r.final["pck@0.1"],
                         "best val pck@0.1": max(e["val/pck@0.1"] for e in r.history),
                         "peak labeled": last["diag/peak_labeled"], "peak teacher": last["diag/peak_teacher"],
                         "peak student": last["diag/peak_student"], "collapse ratio": last["diag/collapse_ratio"],
                         "collapsed": collapsed(r), "collapsed at": last["diag/collapsed_at"],
                         "ms/step": last["ms_per_step"], "key": r.key})
    return pd.DataFrame(rows)


def curves_frame(p: CollapseParams, store) -> "pd.DataFrame":
    """Long table of the logged curves: arm, seed, step, labeled/teacher/student response, val PCK@0.1."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for arm, cfgs in arms(p).items():
        for c in cfgs:
            r = store.get(run_key(c))
            if r is None:
                continue
            for e in r.history:
                rows.append({"arm": arm, "seed": c.seed, "step": e["step"],
                             "labeled": e["diag/peak_labeled"], "teacher": e["diag/peak_teacher"],
                             "student": e["diag/peak_student"], "val pck@0.1": e["val/pck@0.1"],
                             "mass teacher": e["diag/mass_teacher"], "kept": e["diag/kept"]})
    return pd.DataFrame(rows)


def perturbation_frame(p: CollapseParams, store) -> "pd.DataFrame":
    """Test PCK@0.1 of the supervised arm's final models under each perturbation (Fig. 5 left)."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for c in arms(p)["supervised"]:
        r = store.get(run_key(c))
        if r is None:
            continue
        rows.append({"perturbation": "none", "seed": c.seed, "pck@0.1": r.final["pck@0.1"]})
        for k in PERTURBATIONS:
            rows.append({"perturbation": k, "seed": c.seed, "pck@0.1": r.final[f"pck@0.1/{k}"]})
    return pd.DataFrame(rows)
