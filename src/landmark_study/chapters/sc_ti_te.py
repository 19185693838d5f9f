"""The sc_ti_te chapter: Moskvyak et al. 2021 (semantic consistency, transformation
invariance and equivariance) on ``figures``.

Runs: Table 1 analogue (supervised, pseudo-labels, ELT, Gen, ours) at every label
fraction (and the supervised baseline and ours at the curve fractions); Table 2
ablation (subsets of SC/TE/TI) at the ablation fractions; Table 4 (without
ground-truth heatmaps) and Table 3 (a share of the unlabeled pool) at the Table 3/4
fractions (by default the ablation fractions); Fig. 3 at the first ablation fraction.
Every run of one seed shares data, model, schedule and batch composition (the
labeled batch is the same size for every method; methods that use unlabeled
images add an unlabeled batch of the same size, the paper's 50/50).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import (AugmentConfig, ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig,
                      register_chapter_params, spec)
from . import register_arms, register_grid

#: Table 2 rows: arm prefix -> (sc, te, ti)
ABLATIONS: dict[str, tuple[bool, bool, bool]] = {
    "te+ti": (False, True, True),
    "sc": (True, False, False),
    "ti+sc": (True, False, True),
    "te+sc": (True, True, False),
    "ti": (False, False, True),
}
BASELINES = ("pl", "elt", "gen")


@register_chapter_params("sc_ti_te")
@dataclass(frozen=True)
class ScTiTeParams(ChapterParams):
    label_fractions: tuple[float, ...] = spec((0.05,), range=(0.001, 1.0), help="Table 1 label fractions")
    ablation_fractions: tuple[float, ...] = spec((0.05,), range=(0.001, 1.0),
                                                 help="fractions for the Table 2 arms (subset of label_fractions)")
    table34_fractions: tuple[float, ...] = spec((), range=(0.001, 1.0),
                                                help="fractions for the Table 3 and Table 4 arms (subset of "
                                                     "label_fractions); empty: the ablation_fractions")
    curve_fractions: tuple[float, ...] = spec((), range=(0.001, 0.999),
                                              help="more Table 1 columns with the supervised baseline and ours only "
                                                   "(how the gain changes as labels grow)")
    ablations: tuple[str, ...] = spec(("te+ti", "sc"), choices=tuple(ABLATIONS))
    baselines: tuple[str, ...] = spec(BASELINES, choices=BASELINES)
    gt_ablation: bool = spec(True, help="also train without ground-truth heatmaps in the unsupervised losses")
    unlabeled_fractions: tuple[float, ...] = spec((), range=(0.001, 0.999), help="Table 3: shares of the unlabeled pool")
    sensitivity_factors: tuple[float, ...] = spec((), range=(1e-4, 1e4),
                                                  help="Fig. 3: each of lambda_2..4 times these factors, one at a time")
    sensitivity_seeds: tuple[int, ...] = spec((0,), range=(0, None), help="seeds of the Fig. 3 arms")
    steps: int = spec(30, range=(1, 1_000_000))
    batch_size: int = spec(8, range=(1, 1024), help="labeled images per step (every method)")
    unlabeled_batch_size: int = spec(8, range=(1, 1024), help="unlabeled images per step (methods that use them)")
    lr: float = spec(1e-3, range=(1e-6, 1.0))
    n_train: int | None = spec(200, range=(20, None))
    n_val: int | None = spec(100, range=(10, None))
    eval_size: int = spec(100, range=(10, None))
    evals: int = spec(4, range=(1, 100), help="periodic validations per run")
    size: int = spec(64, choices=(32, 48, 64, 96, 128, 192, 256))
    model: str = spec("hrnet_small")
    width: int = spec(16, range=(4, 256))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    sigma: float = spec(1.5, range=(0.1, 20.0))
    fused_channels: int = spec(16, range=(1, 1024))
    distortion: float = spec(0.15, range=(0.0, 0.249))
    repr_images: int = spec(100, range=(10, 5000))
    sc_weight: float = spec(0.5, range=(0.0, None), help="lambda_2 (paper 0.5)")
    te_weight: float = spec(100.0, range=(0.0, None), help="lambda_3 (paper 1e2)")
    ti_weight: float = spec(100.0, range=(0.0, None), help="lambda_4 (paper 1e2)")
    dataset: str = spec("figures")

    def validate(self) -> None:
        from ..config import ConfigError

        missing = sorted(set(self.ablation_fractions) - set(self.label_fractions))
        if missing:
            raise ConfigError(f"ablation_fractions: {missing} not in label_fractions {list(self.label_fractions)}")
        missing = sorted(set(self.table34_fractions) - set(self.label_fractions))
        if missing:
            raise ConfigError(f"table34_fractions: {missing} not in label_fractions {list(self.label_fractions)}")
        both = sorted(set(self.curve_fractions) & set(self.label_fractions))
        if both:
            raise ConfigError(f"curve_fractions: {both} already in label_fractions {list(self.label_fractions)}")


def table34_fractions(p: ScTiTeParams) -> tuple[float, ...]:
    """The label fractions of the Table 3 and Table 4 arms (``table34_fractions``, else the ablation ones)."""
    return tuple(p.table34_fractions) or tuple(p.ablation_fractions)


def arm_name(prefix: str, fraction: float) -> str:
    """E.g. ``arm_name('ours', 0.01) == 'ours@1%'``."""
    return f"{prefix}@{fraction * 100:g}%"


def base_config(p: ScTiTeParams, fraction: float, seed: int) -> RunConfig:
    """The supervised run of one (fraction, seed); every other arm changes only the method."""
    return RunConfig(
        method="supervised",
        seed=seed,
        data=DataConfig(name=p.dataset, size=p.size, n_train=p.n_train, n_val=p.n_val, label_fraction=fraction),
        model=ModelConfig(name=p.model, width=p.width, heatmap_stride=p.heatmap_stride),
        train=TrainConfig(steps=p.steps, batch_size=p.batch_size, unlabeled_batch_size=p.unlabeled_batch_size,
                          lr=p.lr, sigma=p.sigma, eval_every=max(1, p.steps // p.evals),
                          checkpoint_every=max(1, p.steps // 4), eval_size=p.eval_size, augment=AugmentConfig()),
    )


def ours_config(p: ScTiTeParams, fraction: float, seed: int, **options: Any) -> RunConfig:
    opts = {"fused_channels": p.fused_channels, "distortion": p.distortion, "repr_images": p.repr_images, **options}
    weights = {"sup": 1e3, "sc": p.sc_weight, "te": p.te_weight, "ti": p.ti_weight}
    return base_config(p, fraction, seed).with_overrides(method="sc_ti_te", method_options=opts, loss_weights=weights)


def _arm_configs(p: ScTiTeParams) -> dict[str, Any]:
    """{arm: function(seed) -> RunConfig}, in the order the sweep should run them
    (supervised first: they are the pseudo-label teachers)."""
    arms: dict[str, Any] = {}
    for f in p.label_fractions + p.curve_fractions:
        arms[arm_name("supervised", f)] = lambda s, f=f: base_config(p, f, s)
    for f in p.label_fractions:
        arms[arm_name("ours", f)] = lambda s, f=f: ours_config(p, f, s)
        if "elt" in p.baselines:
            arms[arm_name("elt", f)] = lambda s, f=f: base_config(p, f, s).with_overrides(
                method="elt_heatmap", method_options={"distortion": p.distortion})
        if "gen" in p.baselines:
            arms[arm_name("gen", f)] = lambda s, f=f: base_config(p, f, s).with_overrides(
                method="generation", method_options={"distortion": p.distortion})
    for f in p.curve_fractions:
        arms[arm_name("ours", f)] = lambda s, f=f: ours_config(p, f, s)
    for f in p.ablation_fractions:
        for a in p.ablations:
            sc, te, ti = ABLATIONS[a]
            arms[arm_name(a, f)] = lambda s, f=f, sc=sc, te=te, ti=ti: ours_config(p, f, s, sc=sc, te=te, ti=ti)
    for f in table34_fractions(p):
        if p.gt_ablation:
            arms[arm_name("no_gt", f)] = lambda s, f=f: ours_config(p, f, s, gt_heatmaps=False)
        for u in p.unlabeled_fractions:
            arms[arm_name(f"unl{u * 100:g}%", f)] = lambda s, f=f, u=u: ours_config(p, f, s, unlabeled_fraction=u)
    if "pl" in p.baselines:
        for f in p.label_fractions:
            arms[arm_name("pl", f)] = lambda s, f=f: base_config(p, f, s).with_overrides(method="pseudo_label")
    return arms


#: Fig. 3 arm prefix -> the loss weight it scales
SENSITIVITY = {"sc": "sc_weight", "te": "te_weight", "ti": "ti_weight"}


def sensitivity_name(loss: str, factor: float) -> str:
    """E.g. ``sensitivity_name('te', 0.1) == 'lam_te*0.1'`` (an arm prefix)."""
    return f"lam_{loss}*{factor:g}"


def _sensitivity_configs(p: ScTiTeParams) -> dict[str, list[RunConfig]]:
    """Fig. 3: at the first ablation fraction, one weight of (lambda_2, lambda_3, lambda_4) scaled
    by each factor, the other two at the profile's values; seeds ``sensitivity_seeds``."""
    out: dict[str, list[RunConfig]] = {}
    if not p.sensitivity_factors:
        return out
    f = p.ablation_fractions[0]
    for loss, field in SENSITIVITY.items():
        for k in p.sensitivity_factors:
            q = dataclasses.replace(p, **{field: getattr(p, field) * k})
            out[arm_name(sensitivity_name(loss, k), f)] = [ours_config(q, f, s) for s in p.sensitivity_seeds]
    return out


@register_arms("sc_ti_te")
def arms(p: ScTiTeParams) -> dict[str, list[RunConfig]]:
    out = {name: [make(s) for s in p.seeds] for name, make in _arm_configs(p).items()}
    out.update(_sensitivity_configs(p))
    return out


@register_grid("sc_ti_te")
def grid(p: ScTiTeParams) -> list[RunConfig]:
    out: list[RunConfig] = []
    for runs in arms(p).values():
        out.extend(runs)
    return out


def results_frame(p: ScTiTeParams, store) -> "Any":
    """One row per (arm, seed) with the final test metrics; runs missing from the store are skipped."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for name, configs in arms(p).items():
        prefix, frac = name.split("@")
        for c in configs:
            r = store.get(run_key(c))
            if r is None:
                continue
            f = r.final
            rows.append({"arm": name, "method": prefix, "label_fraction": c.data.label_fraction,
                         "labels": round(c.data.label_fraction * (c.data.n_train or 4000)), "seed": c.seed,
                         "pck@0.05": f.get("pck@0.05"), "pck@0.1": f.get("pck@0.1"), "pck@0.2": f.get("pck@0.2"),
                         "repr_knn": f.get("repr_knn"), "repr_nmi": f.get("repr_nmi"), "kcn_acc": f.get("kcn_acc"),
                         "ms/step": f.get("ms_per_step"), "key": r.key})
    return pd.DataFrame(rows)


def bootstrap_diff(a, b, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% bootstrap interval (seeds resampled within each arm)."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    boots = [rng.choice(a, len(a)).mean() - rng.choice(b, len(b)).mean() for _ in range(n)]
    return float(a.mean() - b.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))
