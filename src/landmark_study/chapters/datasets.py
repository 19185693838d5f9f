"""The datasets chapter: galleries and the calibration of ``figures``.

Calibration asks whether labels are scarce in a meaningful way: a supervised
heatmap model trained on 5%, 20% and 100% of the ``figures`` training labels
must show a clear gap (>= 15 PCK points between 5% and 100%) and the 100%
model must be clearly good (PCK@0.1 >= 0.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import (AugmentConfig, ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig,
                      register_chapter_params, spec)
from . import register_grid

if TYPE_CHECKING:
    import pandas as pd

CALIBRATION_GAP = 0.15
CALIBRATION_FULL_PCK = 0.8


@register_chapter_params("datasets")
@dataclass(frozen=True)
class DatasetsParams(ChapterParams):
    label_fractions: tuple[float, ...] = spec((0.05, 1.0), range=(0.001, 1.0))
    no_augment_fractions: tuple[float, ...] = spec((), range=(0.001, 1.0),
                                                   help="fractions also trained without flip/affine augmentation")
    steps: int = spec(40, range=(1, 1_000_000))
    batch_size: int = spec(32, range=(1, 1024))
    lr: float = spec(1e-3, range=(1e-6, 1.0))
    n_train: int | None = spec(200, range=(20, None), help="figures training images; None = the default 4000")
    n_val: int | None = spec(100, range=(10, None))
    size: int = spec(64, choices=(32, 48, 64, 96, 128, 192, 256))
    model: str = spec("unet_small")
    width: int = spec(12, range=(4, 256))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    gallery_size: int = spec(8, range=(1, 64))
    detector_images: int = spec(50, range=(1, 5000), help="faces used for the generic-detector check")


NO_AUGMENT = AugmentConfig(rotation=0.0, scale=(1.0, 1.0), translation=0.0, flip=0.0)


def calibration_config(p: DatasetsParams, fraction: float, seed: int, augment: bool = True) -> RunConfig:
    return RunConfig(
        method="supervised",
        seed=seed,
        data=DataConfig(name="figures", size=p.size, n_train=p.n_train, n_val=p.n_val,
                        label_fraction=fraction),
        model=ModelConfig(name=p.model, width=p.width, heatmap_stride=p.heatmap_stride),
        train=TrainConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr,
                          eval_every=max(1, p.steps // 10), checkpoint_every=max(1, p.steps // 5),
                          eval_size=p.n_val or 500, augment=AugmentConfig() if augment else NO_AUGMENT),
    )


@register_grid("datasets")
def grid(p: DatasetsParams) -> list[RunConfig]:
    runs = [calibration_config(p, f, s, True) for f in p.label_fractions for s in p.seeds]
    return runs + [calibration_config(p, f, s, False) for f in p.no_augment_fractions for s in p.seeds]


def calibration_frame(results) -> "pd.DataFrame":
    """One row per run: label fraction, seed, test PCK@0.05/0.1/0.2, ms/step."""
    import pandas as pd

    rows = []
    for r in results:
        c = r.config
        aug = c["train"]["augment"]
        rows.append({"augment": bool(aug["flip"] > 0 or aug["rotation"] > 0),
                     "label_fraction": c["data"]["label_fraction"], "seed": c["seed"],
                     "pck@0.05": r.final["pck@0.05"], "pck@0.1": r.final["pck@0.1"],
                     "pck@0.2": r.final["pck@0.2"], "ms/step": r.final["ms_per_step"],
                     "key": r.key})
    return pd.DataFrame(rows)


def calibration_verdict(df) -> dict:
    """The two calibration conditions, computed from the runs (means over seeds).

    ``gap``: mean PCK@0.1 at the largest fraction minus at the smallest, with a
    95% bootstrap interval over seeds; ``ok_gap`` needs the whole interval
    above 0.15 when there are >= 3 seeds per fraction (else the mean alone,
    flagged ``inconclusive``).
    """
    import numpy as np

    lo_f, hi_f = df.label_fraction.min(), df.label_fraction.max()
    lo = df[df.label_fraction == lo_f]["pck@0.1"].to_numpy()
    hi = df[df.label_fraction == hi_f]["pck@0.1"].to_numpy()
    rng = np.random.default_rng(0)
    boots = [rng.choice(hi, len(hi)).mean() - rng.choice(lo, len(lo)).mean() for _ in range(2000)]
    ci = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
    enough = min(len(lo), len(hi)) >= 3
    gap = float(hi.mean() - lo.mean())
    return {
        "fraction_low": float(lo_f), "fraction_high": float(hi_f),
        "pck_low": float(lo.mean()), "pck_high": float(hi.mean()), "gap": gap, "gap_ci95": ci,
        "ok_gap": (ci[0] >= CALIBRATION_GAP) if enough else None,
        "ok_full": (float(hi.mean()) >= CALIBRATION_FULL_PCK) if hi_f == 1.0 else None,
        "seeds_low": int(len(lo)), "seeds_high": int(len(hi)),
    }


SUPERPOINT_RADIUS_AT_256 = 10.0  # px; the papers' precision radius for SuperPoint on CelebA


def detector_table(n_images: int, sizes: tuple[int, ...] = (64, 128), max_points: int = 30) -> "pd.DataFrame":
    """Precision/recall of the classical detectors against the ``faces`` landmarks.

    The radius is the papers' 10 px at 256x256, scaled to each size; with and
    without the face-box filter the papers apply.
    """
    import pandas as pd

    from ..data.synthetic import get_dataset
    from ..keypoints import METHODS, detect_dataset, precision_recall

    rows = []
    for size in sizes:
        ds = get_dataset("faces", "test", n=n_images, seed=0, size=size)
        radius = SUPERPOINT_RADIUS_AT_256 * size / 256.0
        for method in METHODS:
            for use_bbox in (False, True):
                dets = detect_dataset(ds, method, use_bbox=use_bbox, max_points=max_points, progress=False)
                pr = precision_recall(dets, ds.keypoints, ds.visibility, radius)
                rows.append({"size": size, "radius px": radius, "detector": method, "face box": use_bbox,
                             "points/image": round(pr["n_detections"] / len(ds), 1),
                             "precision": round(pr["precision"], 3), "recall": round(pr["recall"], 3)})
    return pd.DataFrame(rows)
