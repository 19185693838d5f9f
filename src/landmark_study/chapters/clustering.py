"""The clustering chapter: unsupervised landmarks by recovering correspondence through
clustering (Mallis et al. NeurIPS 2020 / TPAMI), on the large-pose ``faces`` set.

Every stage-1 arm is a chain of runs (warm-up, rounds 1..R) linked through
``prepare_data``; arms that differ only in round options share one warm-up. Stage 2
runs take the final round of the ``tpami`` arm as their teacher. The grid lists runs
level by level (all warm-ups, then all round-1 runs, ...) so that parallel workers
rarely wait on (or duplicate) a dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import (AugmentConfig, ChapterParams, DataConfig, ModelConfig, RunConfig, TrainConfig,
                      register_chapter_params, spec, to_dict)
from . import register_arms, register_grid


@register_chapter_params("clustering")
@dataclass(frozen=True)
class ClusteringParams(ChapterParams):
    size: int = spec(64, choices=(32, 48, 64, 96, 128, 256))
    n_train: int = spec(1000, range=(20, None))
    n_val: int = spec(200, range=(10, None))
    model: str = spec("unet_small")
    width: int = spec(8, range=(4, 256))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    batch_size: int = spec(16, range=(2, 1024))
    lr: float = spec(1e-3, range=(1e-6, 1.0))
    optimizer: str = spec("adam", choices=("adam", "rmsprop"))
    warmup_steps: int = spec(400, range=(1, None))
    round_steps: int = spec(250, range=(1, None))
    rounds: int = spec(2, range=(1, 50))
    stage2_steps: int = spec(400, range=(1, None))
    init: str = spec("orb", choices=("orb", "sift", "gftt"))
    init_points: int = spec(20, range=(1, 500))
    init_arms: tuple[str, ...] = spec((), choices=("orb", "sift", "gftt"),
                                      help="other classical initialisations, one stage-1 arm init_<name> each "
                                           "(TPAMI Table 1 / thesis Table 6.2)")
    num_landmarks: int = spec(20, range=(1, 1000), help="K")
    num_clusters: int = spec(80, range=(1, 100_000), help="M of the main arm")
    m_small: int = spec(20, range=(1, 100_000), help="M of the M = K arm")
    m_large: int = spec(400, range=(1, 100_000), help="M of the very-large-M arm")
    noise_fractions: tuple[float, ...] = spec((0.0, 0.2, 1.0), range=(0.0, 1.0),
                                              help="real-point fractions of the GT + random initialisations")
    descriptor_dim: int = spec(32, range=(2, 1024))
    cluster_images: int = spec(600, range=(10, None))
    n_regress: int = spec(300, range=(10, None))
    max_detections: int = spec(30, range=(1, 1000))
    data_name: str = spec("faces")
    template: bool = spec(True, help="also run the self-training chapter's template method (thesis ch. 4) on this "
                                     "chapter's data: its recipe from params/self_training/<profile>.yaml")
    template_rounds: int | None = spec(None, range=(1, 50),
                                       help="landmark rounds of the template arm; None = the recipe's landmark_rounds")


AUGMENT = AugmentConfig(rotation=15.0, scale=(0.9, 1.1), translation=0.05, flip=0.0)


def _stage1(p: ClusteringParams, seed: int, **opts: Any) -> RunConfig:
    """Final-round config of a stage-1 arm."""
    o = dict(round=p.rounds, warmup_steps=p.warmup_steps, init=p.init, init_points=p.init_points,
             num_landmarks=p.num_landmarks, num_clusters=p.num_clusters, descriptor_dim=p.descriptor_dim,
             cluster_images=min(p.cluster_images, p.n_train), n_regress=min(p.n_regress, p.n_train),
             max_detections=p.max_detections, outlier_knn=min(100, max(5, p.n_train // 10)))
    o.update(opts)
    return RunConfig(
        method="clustering_correspondence", seed=seed,
        data=DataConfig(name=p.data_name, size=p.size, n_train=p.n_train, n_val=p.n_val),
        model=ModelConfig(name=p.model, width=p.width, heatmap_stride=p.heatmap_stride),
        train=TrainConfig(steps=p.round_steps, batch_size=p.batch_size, lr=p.lr, lr_milestones=(),
                          optimizer=p.optimizer, weight_decay=1e-5 if p.optimizer == "rmsprop" else 0.0,
                          eval_every=max(p.round_steps, p.warmup_steps), eval_size=p.n_val,
                          checkpoint_every=max(50, p.round_steps // 2), augment=AUGMENT),
        method_options=o)


def _stage2(p: ClusteringParams, seed: int, flip_train: bool) -> RunConfig:
    teacher = _stage1(p, seed)
    return RunConfig(
        method="clustering_landmarks", seed=seed,
        data=teacher.data, model=teacher.model,
        train=TrainConfig(steps=p.stage2_steps, batch_size=p.batch_size, lr=p.lr, lr_milestones=(0.75,),
                          sigma=0.75, eval_every=p.stage2_steps, eval_size=p.n_val,
                          checkpoint_every=max(50, p.stage2_steps // 2),
                          augment=AugmentConfig(rotation=15.0, scale=(0.9, 1.1), translation=0.05,
                                                flip=0.5 if flip_train else 0.0)),
        method_options={"teacher": to_dict(teacher), "flip_train": flip_train, "flip_test": True,
                        "n_regress": min(p.n_regress, p.n_train)})


def _noise_name(f: float) -> str:
    return f"gt{int(round(100 * f))}"


STAGE1_ARMS = {
    # name: method options that differ from the main (TPAMI) arm
    "tpami": {},
    "different_cluster_negatives": {"negatives": "different_cluster"},
    "equivariance_same_image": {"correspondence": "equivariance"},
    "equivariance_different_cluster": {"correspondence": "equivariance", "negatives": "different_cluster"},
    "neurips_variant": {"variant": "neurips"},
}


@register_arms("clustering")
def arms(p: ClusteringParams) -> dict[str, list[RunConfig]]:
    out: dict[str, list[RunConfig]] = {}
    for name, opts in STAGE1_ARMS.items():
        out[name] = [_stage1(p, s, **opts) for s in p.seeds]
    for name in p.init_arms:
        if name != p.init:
            out[f"init_{name}"] = [_stage1(p, s, init=name) for s in p.seeds]
    out["m_equal_k"] = [_stage1(p, s, num_clusters=p.m_small) for s in p.seeds]
    out["m_large"] = [_stage1(p, s, num_clusters=p.m_large) for s in p.seeds]
    for f in p.noise_fractions:
        out[_noise_name(f)] = [_stage1(p, s, init="gt_mix", real_fraction=float(f)) for s in p.seeds]
    out["stage2"] = [_stage2(p, s, True) for s in p.seeds]
    out["stage2_no_flip_train"] = [_stage2(p, s, False) for s in p.seeds]
    if p.template:
        out["template"] = [template_config(p, s) for s in p.seeds]
    return out


def template_params(p: ClusteringParams):
    """The self-training chapter's parameters at this profile, moved onto this chapter's data:
    same dataset, size, splits, seeds and regressor images; the recipe (rounds, steps, model,
    threshold, distillation) and the template's K stay the self-training chapter's, and so do
    its landmark rounds unless ``template_rounds`` says otherwise."""
    from ..config import ConfigError, load_chapter_params, load_yaml
    from ..paths import REPO_ROOT

    path = REPO_ROOT / "params" / "self_training" / f"{p.profile}.yaml"
    if not path.exists():
        raise ConfigError(f"template arm: the self-training recipe {path} does not exist; set template: false "
                          "to run the clustering chapter without it")
    values = load_yaml(path)
    values.update(dataset=p.data_name, yaw=None, size=p.size, n_train=p.n_train, n_val=p.n_val,
                  seeds=list(p.seeds), reg_images=min(p.n_regress, p.n_train))
    if p.template_rounds is not None:
        values["landmark_rounds"] = p.template_rounds
    return load_chapter_params("self_training", values, f"{path} (moved onto the clustering data)")


def template_config(p: ClusteringParams, seed: int) -> RunConfig:
    """The last landmark round of the template method on this chapter's data, evaluated also
    with stage 2's protocol (``final.fnme``/``final.bnme``)."""
    from .self_training import at_round, landmark_config

    tp = template_params(p)
    return at_round(landmark_config(tp, seed, tp.landmark_rounds), tp.landmark_rounds, clustering_protocol=True)


def chain(config: RunConfig) -> list[RunConfig]:
    """The runs a config depends on, itself last (warm-up first)."""
    from ..methods.clustering_correspondence import ClusteringCorrespondence as CC
    from ..config import run_config_from_dict

    if config.method == "self_training":  # the template arm: detector rounds, then landmark rounds
        from ..methods.self_training import previous_config

        prev = previous_config(config)
        return ([] if prev is None else chain(prev)) + [config]
    if config.method == "clustering_landmarks":
        t = run_config_from_dict(config.method_options["teacher"])
        return chain(t) + [config]
    r = int(config.method_options.get("round", 0))
    return [CC.round_config(config, i) for i in range(r + 1)]


@register_grid("clustering")
def grid(p: ClusteringParams) -> list[RunConfig]:
    from ..runs import run_key

    levels: dict[int, list[RunConfig]] = {}
    seen: set[str] = set()
    for configs in arms(p).values():
        for c in configs:
            for depth, cc in enumerate(chain(c)):
                k = run_key(cc)
                if k not in seen:
                    seen.add(k)
                    levels.setdefault(depth, []).append(cc)
    return [c for d in sorted(levels) for c in levels[d]]


def round_configs(config: RunConfig) -> list[RunConfig]:
    """Warm-up and rounds of a stage-1 final config (for the per-round figure)."""
    return chain(config)
