"""The seq_mt chapter: Honari et al. 2018 (sequential multitasking, ELT) on the
paper's own toy sets, Shapes and Blocks.

Runs:

* Shapes (Sec. 4.1): Seq-MT with the class cross-entropy only (no landmark
  labels, no ELT), all training images; arm ``shapes_A``.
* Blocks, Table 1: the eight rows (Seq-MT L, L+A, L+ELT, L+ELT+A; Comm-MT L, L+A;
  Heatmap-MT L, L+A) at every fraction of ``fractions``; the ELT rows have no
  100% cell (no image is left without landmark labels, as in the paper's table).
  Arms are named ``<row>@<pct>%``, e.g. ``seq_L+ELT+A@5%``.
* Optionally (``figures_fractions``), the four Seq-MT rows on ``figures`` with its
  action class as the attribute (the issue's experiment 3), arms ``figures_<row>@<pct>%``.

Every run of one seed and fraction sees the same class-balanced labeled images
(see :mod:`landmark_study.methods.seq_mt`), the same number of steps and the
same labeled batch; rows that use unlabeled images (A, ELT) add an unlabeled
batch of ``unlabeled_batch_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import (AugmentConfig, ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig,
                      register_chapter_params, spec)
from . import register_arms, register_grid

#: Table 1 rows: name -> (method, landmarks, attribute, elt)
ROWS: dict[str, tuple[str, bool, bool, bool]] = {
    "seq_L": ("seq_mt", True, False, False),
    "seq_L+A": ("seq_mt", True, True, False),
    "seq_L+ELT": ("seq_mt", True, False, True),
    "seq_L+ELT+A": ("seq_mt", True, True, True),
    "comm_L": ("comm_mt", True, False, False),
    "comm_L+A": ("comm_mt", True, True, False),
    "heatmap_L": ("heatmap_mt", True, False, False),
    "heatmap_L+A": ("heatmap_mt", True, True, False),
}
#: The paper's row labels (Table 1, p. 5)
PAPER_ROW = {"seq_L": "Seq-MT (L)", "seq_L+A": "Seq-MT (L+A)", "seq_L+ELT": "Seq-MT (L+ELT)",
             "seq_L+ELT+A": "Seq-MT (L+ELT+A)", "comm_L": "Comm-MT (L)", "comm_L+A": "Comm-MT (L+A)",
             "heatmap_L": "Heatmap-MT (L)", "heatmap_L+A": "Heatmap-MT (L+A)"}
SEQ_ROWS = ("seq_L", "seq_L+A", "seq_L+ELT", "seq_L+ELT+A")
NO_AUGMENT = AugmentConfig(rotation=0.0, scale=(1.0, 1.0), translation=0.0, flip=0.0)


@register_chapter_params("seq_mt")
@dataclass(frozen=True)
class SeqMTParams(ChapterParams):
    fractions: tuple[float, ...] = spec((0.05,), range=(0.001, 1.0), help="Table 1 columns (landmark-labeled share)")
    rows: tuple[str, ...] = spec(tuple(ROWS), choices=tuple(ROWS), help="Table 1 rows")
    shapes: bool = spec(True, help="the Shapes run (class labels only)")
    figures_fractions: tuple[float, ...] = spec((), range=(0.001, 0.999),
                                                help="experiment 3: Seq-MT rows on figures at these fractions")
    steps: int = spec(30, range=(1, 1_000_000))
    shapes_steps: int = spec(30, range=(1, 1_000_000))
    batch_size: int = spec(8, range=(1, 1024), help="labeled images per step (every row)")
    unlabeled_batch_size: int = spec(8, range=(1, 1024), help="unlabeled images per step (rows with A or ELT)")
    lr: float = spec(1e-3, range=(1e-6, 1.0))
    weight_decay: float = spec(0.0, range=(0.0, 1.0), help="gamma of Eq. 2 (L2 on the weights)")
    n_train: int | None = spec(400, range=(20, None))
    n_val: int | None = spec(100, range=(10, None), help="validation and test images")
    eval_size: int = spec(100, range=(10, None))
    evals: int = spec(3, range=(1, 100), help="periodic validations per run")
    size: int = spec(60, range=(32, 256))
    width: int = spec(16, range=(4, 256))
    kernel: int = spec(3, range=(1, 15))
    dilations: tuple[int, ...] = spec((1, 2, 4, 8, 16, 1), range=(1, 64))
    stride: int = spec(2, choices=(1, 2), help="1: every layer at input resolution (paper); 2: CPU stand-in")
    beta: float = spec(1.0, range=(1e-3, 1e3), help="soft-argmax temperature")
    comm_width: int = spec(16, range=(4, 256))
    attr_weight: float = spec(1.0, range=(0.0, None), help="weight of the class cross-entropy (A)")
    elt_weight: float = spec(1.0, range=(0.0, None), help="alpha (ELT, px^2)")
    lm_weight: float = spec(1.0, range=(0.0, None), help="lambda (landmark L2, px^2)")
    figures_size: int = spec(64, range=(32, 256))
    figures_steps: int | None = spec(None, range=(1, 1_000_000), help="experiment 3's schedule (default: steps)")
    figures_rotation: float | None = spec(None, range=(0.0, 180.0),
                                          help="experiment 3's figures rotation range (default: the generator's)")
    figures_outline_prob: float | None = spec(None, range=(0.0, 1.0),
                                              help="experiment 3's share of line-art figures (default: the generator's)")
    hidden: tuple[int, ...] = spec((256, 256), range=(1, 4096), help="Seq-MT classifier MLP on Blocks/figures")
    point_norm: str = spec("centre", choices=("none", "centre", "centre_scale"),
                           help="Seq-MT classifier input on Blocks/figures")
    shapes_hidden: tuple[int, ...] = spec((40,), range=(1, 4096), help="Seq-MT classifier MLP on Shapes (paper: 40)")
    near_px: float = spec(2.0, range=(0.0, 30.0), help="Shapes: a point within this many px of its shape is on it")

    def validate(self) -> None:
        from ..config import ConfigError

        if len(set(self.rows)) != len(self.rows):
            raise ConfigError(f"rows: duplicates in {list(self.rows)}")


def arm_name(row: str, fraction: float, prefix: str = "") -> str:
    """E.g. ``arm_name('seq_L+A', 0.05) == 'seq_L+A@5%'``."""
    return f"{prefix}{row}@{fraction * 100:g}%"


def has_cell(row: str, fraction: float) -> bool:
    """The ELT rows have no 100% cell: ELT is applied to images without landmark labels only."""
    return not (ROWS[row][3] and fraction >= 1.0)


def _train(p: SeqMTParams, steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=p.batch_size, unlabeled_batch_size=p.unlabeled_batch_size, lr=p.lr,
                       weight_decay=p.weight_decay, eval_every=max(1, steps // p.evals),
                       checkpoint_every=max(1, steps // 4), eval_size=p.eval_size, augment=NO_AUGMENT)


def _options(p: SeqMTParams, method: str, landmarks: bool, attribute: bool, elt: bool) -> dict[str, Any]:
    if method == "comm_mt":
        return {"landmarks": landmarks, "attribute": attribute, "width": p.comm_width}
    opts = {"landmarks": landmarks, "attribute": attribute, "width": p.width, "kernel": p.kernel,
            "dilations": list(p.dilations), "stride": p.stride}
    if method == "seq_mt":
        opts.update({"elt": elt, "beta": p.beta, "hidden": list(p.hidden), "point_norm": p.point_norm})
    return opts


def row_config(p: SeqMTParams, row: str, fraction: float, seed: int, dataset: str = "blocks") -> RunConfig:
    method, lm, attr, elt = ROWS[row]
    size = p.figures_size if dataset == "figures" else p.size
    weights = {"lm": p.lm_weight, "attr": p.attr_weight}
    if method == "seq_mt":
        weights["elt"] = p.elt_weight
    options: dict[str, Any] = {}
    steps = p.steps
    if dataset == "figures":
        steps = p.figures_steps or p.steps
        if p.figures_rotation is not None:
            options["rotation"] = p.figures_rotation
        if p.figures_outline_prob is not None:
            options["outline_prob"] = p.figures_outline_prob
    return RunConfig(
        method=method, seed=seed,
        data=DataConfig(name=dataset, size=size, n_train=p.n_train, n_val=p.n_val, label_fraction=fraction,
                        options=options),
        model=ModelConfig(name=method, width=p.comm_width if method == "comm_mt" else p.width, heatmap_stride=1),
        train=_train(p, steps), method_options=_options(p, method, lm, attr, elt), loss_weights=weights)


def shapes_config(p: SeqMTParams, seed: int) -> RunConfig:
    """Sec. 4.1: class cross-entropy only, every training image, no landmark labels, no ELT."""
    return RunConfig(
        method="seq_mt", seed=seed,
        data=DataConfig(name="shapes", size=p.size, n_train=p.n_train, n_val=p.n_val, label_fraction=1.0),
        model=ModelConfig(name="seq_mt", width=p.width, heatmap_stride=1),
        train=_train(p, p.shapes_steps),
        method_options={**_options(p, "seq_mt", False, True, False), "balanced": False,
                        "hidden": list(p.shapes_hidden), "point_norm": "none", "near_px": p.near_px},
        loss_weights={"attr": p.attr_weight})


def _arm_makers(p: SeqMTParams) -> dict[str, Any]:
    arms: dict[str, Any] = {}
    if p.shapes:
        arms["shapes_A"] = lambda s: shapes_config(p, s)
    for f in p.fractions:
        for row in p.rows:
            if has_cell(row, f):
                arms[arm_name(row, f)] = lambda s, row=row, f=f: row_config(p, row, f, s)
    for f in p.figures_fractions:
        for row in SEQ_ROWS:
            arms[arm_name(row, f, "figures_")] = lambda s, row=row, f=f: row_config(p, row, f, s, "figures")
    return arms


@register_arms("seq_mt")
def arms(p: SeqMTParams) -> dict[str, list[RunConfig]]:
    return {name: [make(s) for s in p.seeds] for name, make in _arm_makers(p).items()}


@register_grid("seq_mt")
def grid(p: SeqMTParams) -> list[RunConfig]:
    return [c for runs in arms(p).values() for c in runs]


def results_frame(p: SeqMTParams, store) -> Any:
    """One row per (arm, seed) with the final test metrics; runs missing from the store are skipped."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for name, configs in arms(p).items():
        row, _, pct = name.partition("@")
        dataset = "figures" if row.startswith("figures_") else ("shapes" if row == "shapes_A" else "blocks")
        row = row.removeprefix("figures_")
        for c in configs:
            r = store.get(run_key(c))
            if r is None:
                continue
            f = r.final
            rows.append({"arm": name, "row": row, "paper_row": PAPER_ROW.get(row, row), "dataset": dataset,
                         "label_fraction": c.data.label_fraction, "seed": c.seed, "err_px": f.get("err_px"),
                         "acc": f.get("acc"), "pck@0.1": f.get("pck@0.1"),
                         "on_shape_triangle": f.get("on_shape_triangle"), "on_shape_square": f.get("on_shape_square"),
                         "on_shape_both": f.get("on_shape_both"), "swapped": f.get("swapped"),
                         "ms/step": f.get("ms_per_step"), "key": r.key})
    return pd.DataFrame(rows)
