"""The self_training chapter: Mallis (thesis ch. 4), landmarks from generic keypoints by self-training.

Chains of rounds (each round one run; see :mod:`landmark_study.methods.self_training`):

* ``recipe``: the noise-robust recipe (GroupNorm, weight decay, large batch, low lr,
  few steps per round, strong augmentation, data distillation from ``distill_from``)
  for ``rounds`` rounds from ``init`` keypoints;
* Fig. 4.3 ablations, one knob each, for ``ablation_rounds`` rounds;
* ``no_distill``: the recipe without distillation;
* the noise study (``real<p>%``): round 1 trained on a mixture of perturbed ground
  truth and random points;
* the detector study: each generic detector as round 1;
* ``landmarks``: template correspondence on the recipe's last round, then a K-channel
  detector for ``landmark_rounds`` rounds.

No run uses ground-truth labels for training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import (AugmentConfig, ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig,
                      register_chapter_params, spec)
from . import register_arms, register_grid

#: ablation knob -> human label
ABLATIONS: dict[str, str] = {
    "large_lr": "large learning rate",
    "small_lr": "very small learning rate",
    "small_batch": "small batch",
    "many_steps": "many steps per round",
    "no_wd": "no weight decay",
    "batchnorm": "BatchNorm instead of GroupNorm",
}
DETECTORS = ("sift", "orb", "gftt", "magicpoint")


@register_chapter_params("self_training")
@dataclass(frozen=True)
class SelfTrainingParams(ChapterParams):
    dataset: str = spec("faces")
    yaw: float | None = spec(30.0, range=(0.0, 90.0), help="faces: max |yaw| (None = the generator's 90)")
    size: int = spec(64, choices=(32, 48, 64, 96, 128, 192, 256))
    n_train: int = spec(1000, range=(20, None))
    n_val: int = spec(200, range=(10, None))
    model: str = spec("hourglass")
    width: int = spec(16, range=(4, 512))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    sigma: float = spec(1.0, range=(0.1, 20.0))
    # the recipe
    rounds: int = spec(5, range=(1, 50))
    steps: int = spec(150, range=(1, 1_000_000), help="training steps per single-channel round")
    batch_size: int = spec(32, range=(1, 4096))
    lr: float = spec(1e-3, range=(1e-8, 1.0))
    weight_decay: float = spec(1e-4, range=(0.0, 1.0))
    optimizer: str = spec("adam", choices=("adam", "adamw", "sgd", "rmsprop"))
    rotation: float = spec(30.0, range=(0.0, 180.0))
    scale: tuple[float, float] = spec((0.7, 1.3), range=(0.05, 10.0))
    init: str = spec("gftt", choices=DETECTORS)
    init_points: int = spec(30, range=(1, 500))
    box_padding: float | None = spec(0.15, range=(0.0, 2.0))
    threshold: float = spec(0.1, range=(0.0, 10.0))
    nms_radius: int = spec(2, range=(0, 16))
    max_points: int = spec(30, range=(1, 512))
    distill_from: int | None = spec(3, range=(1, 50), help="rounds whose detections are distilled; None = never")
    distill_views: int = spec(6, range=(2, 8))
    # Fig. 4.3 ablations
    ablations: tuple[str, ...] = spec(tuple(ABLATIONS), choices=tuple(ABLATIONS))
    ablation_rounds: int = spec(3, range=(1, 50))
    large_lr: float = spec(1e-2, range=(1e-8, 1.0))
    small_lr: float = spec(1e-4, range=(1e-8, 1.0))
    small_batch: int = spec(4, range=(1, 4096))
    many_steps_factor: int = spec(4, range=(2, 100))
    no_distill: bool = spec(True, help="also run the recipe without distillation")
    # noise study
    real_fractions: tuple[float, ...] = spec((0.1, 0.5, 1.0), range=(0.0, 1.0))
    noise_px: float = spec(1.0, range=(0.0, 50.0))
    noise_rounds: int = spec(3, range=(1, 50))
    noise_threshold: float | None = spec(None, range=(0.0, 10.0),
                                         help="detection threshold t of the noise study (None = threshold)")
    # detector study
    detectors: tuple[str, ...] = spec(DETECTORS, choices=DETECTORS)
    detector_rounds: int = spec(3, range=(1, 50))
    magicpoint_steps: int = spec(600, range=(1, 1_000_000))
    magicpoint_images: int = spec(2000, range=(10, 100_000))
    # correspondence + K-channel rounds
    landmark_rounds: int = spec(2, range=(0, 50))
    landmark_steps: int = spec(300, range=(1, 1_000_000))
    num_landmarks: int = spec(10, range=(1, 100))
    match_radius: float = spec(4.0, range=(0.0, None))
    min_matched: float = spec(0.5, range=(0.0, 1.0))
    reg_images: int = spec(200, range=(2, 100_000))
    # the generic-detector table (no training)
    table_images: int = spec(100, range=(1, 5000))

    def validate(self) -> None:
        from ..config import ConfigError

        if self.landmark_rounds and self.reg_images > self.n_train:
            raise ConfigError(f"reg_images {self.reg_images} > n_train {self.n_train}")


def arm(prefix: str, rnd: int) -> str:
    """E.g. ``arm('recipe', 5) == 'recipe@r5'``."""
    return f"{prefix}@r{rnd}"


def real_prefix(f: float) -> str:
    return f"real{f * 100:g}%"


def base_config(p: SelfTrainingParams, seed: int) -> RunConfig:
    """Round 1 of the recipe, not canonicalised (pass it through :func:`at_round`); every
    other run changes options, knobs or the round."""
    data_opts: dict[str, Any] = {} if (p.dataset != "faces" or p.yaw is None) else {"yaw": p.yaw}
    opts = {"init": p.init, "init_points": p.init_points, "box_padding": p.box_padding, "threshold": p.threshold,
            "nms_radius": p.nms_radius, "max_points": p.max_points, "distill_from": p.distill_from,
            "distill_views": p.distill_views, "magicpoint_steps": p.magicpoint_steps,
            "magicpoint_images": p.magicpoint_images, "round": 1}
    cfg = RunConfig(
        method="self_training", seed=seed,
        data=DataConfig(name=p.dataset, size=p.size, n_train=p.n_train, n_val=p.n_val, options=data_opts),
        model=ModelConfig(name=p.model, width=p.width, heatmap_stride=p.heatmap_stride, options={"norm": "gn"}),
        train=TrainConfig(steps=p.steps, batch_size=p.batch_size, lr=p.lr, lr_milestones=(),
                          weight_decay=p.weight_decay, optimizer=p.optimizer, sigma=p.sigma, eval_every=p.steps,
                          eval_size=p.n_val, checkpoint_every=p.steps,
                          augment=AugmentConfig(rotation=p.rotation, scale=p.scale, translation=0.05, flip=0.5)),
        method_options=opts,
    )
    return cfg


def at_round(cfg: RunConfig, rnd: int, **options: Any) -> RunConfig:
    from ..methods.self_training import canonical

    return canonical(cfg.with_overrides(method_options={**cfg.method_options, **options, "round": rnd}))


def ablated(p: SelfTrainingParams, seed: int, knob: str) -> RunConfig:
    from ..methods.self_training import with_steps

    c = base_config(p, seed)
    if knob == "large_lr":
        return c.with_overrides(**{"train.lr": p.large_lr})
    if knob == "small_lr":
        return c.with_overrides(**{"train.lr": p.small_lr})
    if knob == "small_batch":
        return c.with_overrides(**{"train.batch_size": p.small_batch})
    if knob == "many_steps":
        return with_steps(c, p.steps * p.many_steps_factor)
    if knob == "no_wd":
        return c.with_overrides(**{"train.weight_decay": 0.0})
    if knob == "batchnorm":
        return c.with_overrides(**{"model.options": {"norm": "bn"}})
    raise ValueError(f"unknown ablation {knob!r}; known: {', '.join(ABLATIONS)}")


def landmark_config(p: SelfTrainingParams, seed: int, rnd: int) -> RunConfig:
    from ..methods.self_training import with_steps

    c = base_config(p, seed)
    c = with_steps(c, p.landmark_steps)
    return at_round(c, rnd, stage="landmarks", detector_rounds=p.rounds, detector_steps=p.steps,
                    num_landmarks=p.num_landmarks, match_radius=p.match_radius, min_matched=p.min_matched,
                    reg_images=p.reg_images)


def _chains(p: SelfTrainingParams) -> dict[str, tuple[Any, int]]:
    """{prefix: (function(seed) -> round-1 config, last round)}."""
    chains: dict[str, tuple[Any, int]] = {"recipe": (lambda s: base_config(p, s), p.rounds)}
    if p.no_distill and p.distill_from is not None:
        chains["no_distill"] = (lambda s: at_round(base_config(p, s), 1, distill_from=None), p.rounds)
    for k in p.ablations:
        chains[k] = (lambda s, k=k: ablated(p, s, k), p.ablation_rounds)
    for f in p.real_fractions:
        thr = {} if p.noise_threshold is None else {"threshold": p.noise_threshold}
        chains[real_prefix(f)] = (lambda s, f=f, thr=thr: at_round(base_config(p, s), 1, init="noisy_gt",
                                                                   real_fraction=f, noise_px=p.noise_px, **thr),
                                  p.noise_rounds)
    for d in p.detectors:
        chains[d] = (lambda s, d=d: at_round(base_config(p, s), 1, init=d), p.detector_rounds)
    return chains


@register_arms("self_training")
def arms(p: SelfTrainingParams) -> dict[str, list[RunConfig]]:
    """Every round of every chain (``<chain>@r<k>``) and ``landmarks@r<k>``, one config per seed."""
    out: dict[str, list[RunConfig]] = {}
    for prefix, (first, last) in _chains(p).items():
        for r in range(1, last + 1):
            out[arm(prefix, r)] = [at_round(first(s), r) for s in p.seeds]
    for r in range(1, p.landmark_rounds + 1):
        out[arm("landmarks", r)] = [landmark_config(p, s, r) for s in p.seeds]
    return out


def magicpoint_run(p: SelfTrainingParams) -> RunConfig:
    from ..methods.self_training import magicpoint_config

    return magicpoint_config(at_round(base_config(p, 0), 1, init="magicpoint"))


@register_grid("self_training")
def grid(p: SelfTrainingParams) -> list[RunConfig]:
    """Leaves first, ordered so that two workers rarely train a shared prefix at once
    (each leaf trains its earlier rounds through the store): MagicPoint, the recipe of
    every seed, the independent chains, then the runs that reuse the recipe's rounds
    (no distillation, landmarks); every intermediate round last (cached by then)."""
    from ..runs import run_key

    chains = _chains(p)
    leaves: list[RunConfig] = []
    if "magicpoint" in p.detectors or p.init == "magicpoint":
        leaves.append(magicpoint_run(p))
    order = ["recipe"] + [c for c in chains if c not in ("recipe", "no_distill")] + \
        (["no_distill"] if "no_distill" in chains else [])
    for prefix in order:
        first, last = chains[prefix]
        leaves += [at_round(first(s), last) for s in p.seeds]
    if p.landmark_rounds:
        leaves += [landmark_config(p, s, p.landmark_rounds) for s in p.seeds]
    out, seen = [], set()
    for c in leaves + [c for runs in arms(p).values() for c in runs]:
        k = run_key(c)
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


def rounds_frame(p: SelfTrainingParams, store) -> Any:
    """One row per (chain, round, seed) with the detector's test precision/recall and the
    training pseudo-labels' precision/recall; round 0 rows are the initial keypoints
    (the pseudo-labels of round 1). Runs missing from the store are skipped."""
    import pandas as pd

    from ..runs import run_key

    rows = []
    for name, configs in arms(p).items():
        prefix, r = name.rsplit("@r", 1)
        for c in configs:
            res = store.get(run_key(c))
            if res is None:
                continue
            f = res.final
            row = {"chain": prefix, "round": int(r), "seed": c.seed, "precision": f.get("precision"),
                   "recall": f.get("recall"), "points": f.get("points_per_image"),
                   "pseudo_precision": f.get("pseudo_precision"), "pseudo_recall": f.get("pseudo_recall"),
                   "pseudo_points": f.get("pseudo_points"), "forward_nme": f.get("forward_nme"),
                   "backward_nme": f.get("backward_nme"), "ms/step": f.get("ms_per_step"), "key": res.key}
            rows.append(row)
            if int(r) == 1 and prefix != "landmarks":
                rows.append({"chain": prefix, "round": 0, "seed": c.seed, "precision": f.get("pseudo_precision"),
                             "recall": f.get("pseudo_recall"), "points": f.get("pseudo_points"), "key": res.key})
    return pd.DataFrame(rows)


def detector_table(p: SelfTrainingParams, store=None, datasets: tuple[str, ...] = ("faces", "figures")) -> Any:
    """Precision/recall of each generic detector's keypoints against the ground truth of
    ``table_images`` test images per dataset, within 8 px at 256 (scaled), with the
    object-box filter (the box grown by ``box_padding``) and without.
    MagicPoint is the chapter's trained detector (``trained_method``; trained if absent)."""
    import pandas as pd

    from ..data.synthetic import get_dataset
    from ..keypoints import detect, padded_box, precision_recall
    from ..methods.self_training import RADIUS_AT_256
    from ..runs import trained_method

    radius = RADIUS_AT_256 * p.size / 256.0
    mp = trained_method(magicpoint_run(p), store) if "magicpoint" in p.detectors else None
    rows = []
    for name in datasets:
        opts = {"yaw": p.yaw} if (name == "faces" and p.yaw is not None) else {}
        ds = get_dataset(name, "test", n=p.table_images, seed=0, size=p.size, **opts)
        boxes = padded_box(ds.bbox, p.box_padding or 0.0, ds.image_size)
        for det in p.detectors:
            for use_box in (False, True):
                if det == "magicpoint":
                    dets = mp.detect(ds.images, threshold=mp.options.threshold, radius=mp.options.nms_radius,
                                     max_points=p.init_points, bbox=boxes if use_box else None)
                else:
                    dets = [detect(ds.images[i], det, max_points=p.init_points, bbox=boxes[i] if use_box else None)
                            for i in range(len(ds))]
                pr = precision_recall(dets, ds.keypoints, ds.visibility, radius)
                rows.append({"dataset": name, "detector": det, "object box": use_box,
                             "points/image": round(pr["n_detections"] / len(ds), 1),
                             "precision": round(float(pr["precision"]), 3), "recall": round(float(pr["recall"]), 3)})
    return pd.DataFrame(rows)
