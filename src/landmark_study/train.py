"""The one training loop for every method.

Each step draws a labeled batch (with replacement, as Xie et al.'s code does)
and, when the method uses them, an unlabeled batch (epoch-wise without
replacement); the method's ``training_step`` returns named losses, which the
loop weights, sums, checks for NaN/inf and back-propagates. The loop evaluates
PCK on a schedule, checkpoints atomically and resumes exactly, picks CUDA when
present, seeds everything and records ms/step.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DataConfig, RunConfig
from .runs import runtime_options
from .data.sample import ArrayDataset
from .methods import Batch, get_method
from .metrics import pck

VIS_SET_SIZE = 16


class TrainingError(RuntimeError):
    """A run could not finish (non-finite loss, ...)."""


class NonFiniteLoss(TrainingError):
    pass


class CheckpointError(TrainingError):
    pass


def progress_default() -> bool:
    return not os.environ.get("CI")


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Keep freed memory in the process instead of returning it to the OS after every step.

    Profiling a full sweep showed the training thread spending as much time in the
    kernel as in PyTorch: dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``,
    so glibc gave every step's large activation buffers back to the OS and faulted them
    in again (about 68,000 page faults per step; 1690 vs 430 ms/step for the SC/TI/TE
    method). With a 1 GiB trim threshold, a 32 MiB mmap threshold and 256 MiB of top
    padding the buffers are reused. glibc only (Linux); a no-op elsewhere. Returns
    whether the settings were applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = (libc.mallopt(m_trim_threshold, 1 << 30) == 1 and libc.mallopt(m_mmap_threshold, 32 << 20) == 1
              and libc.mallopt(m_top_pad, 256 << 20) == 1)
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

@dataclass
class RunData:
    labeled: ArrayDataset
    unlabeled: ArrayDataset | None
    val: ArrayDataset
    test: ArrayDataset


def load_run_data(dc: DataConfig) -> RunData:
    """Train/val/test splits and the nested labeled subset for a data config."""
    from .data import labeled_subset
    from .data.synthetic import SYNTHETIC, get_dataset

    if dc.name in SYNTHETIC:
        size = dc.size
        train = get_dataset(dc.name, "train", n=dc.n_train, seed=dc.split_seed, size=size, **dc.options)
        val = get_dataset(dc.name, "val", n=dc.n_val, seed=dc.split_seed, size=size, **dc.options)
        test = get_dataset(dc.name, "test", n=dc.n_val, seed=dc.split_seed, size=size, **dc.options)
    else:
        train, val, test = _load_real(dc)
    idx = np.arange(len(train))
    if dc.num_labels is not None:
        from .data.splits import labeled_count

        lab, unl = labeled_count(idx, dc.num_labels, seed=dc.split_seed)
    else:
        lab, unl = labeled_subset(idx, dc.label_fraction, seed=dc.split_seed)
    return RunData(labeled=train.subset(lab), unlabeled=train.subset(unl) if len(unl) else None, val=val, test=test)


REAL_OPTIONS = ("protocol", "splits", "padding", "root")


def _load_real(dc: DataConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    """A real dataset through its manifest: crops around each box, resized to ``data.size``.

    ``data.options``: ``protocol`` (a paper's split protocol; default the
    manifest's), ``splits`` (our train/val/test -> the protocol's split names),
    ``padding`` (box padding, default 0.1), ``root`` (folder holding the data;
    default the data root). A missing dataset raises the error naming the
    manifest and the fetch command.
    """
    from .config import ConfigError
    from .data.real import load_dataset

    unknown = sorted(set(dc.options) - set(REAL_OPTIONS))
    if unknown:
        raise ConfigError(f"data.options: unknown key {unknown[0]!r} for a real dataset; allowed keys: "
                          f"{', '.join(REAL_OPTIONS)}")
    names = {"train": "train", "val": "val", "test": "test", **dc.options.get("splits", {})}
    out = []
    for ours, limit in (("train", dc.n_train), ("val", dc.n_val), ("test", dc.n_val)):
        rd = load_dataset(dc.name, names[ours], dc.options.get("protocol"), size=(dc.size, dc.size),
                          padding=dc.options.get("padding", 0.1), root=dc.options.get("root"))
        idx = None if limit is None else list(range(min(limit, len(rd))))
        out.append(rd.to_arrays(indices=idx))
    return out[0], out[1], out[2]


class _Tensors:
    """A dataset's arrays as device tensors (images stay uint8 until batched)."""

    def __init__(self, ds: ArrayDataset, device: torch.device):
        self.n = len(ds)
        self.images = torch.from_numpy(np.ascontiguousarray(ds.images.transpose(0, 3, 1, 2))).to(device)
        self.keypoints = torch.from_numpy(ds.keypoints.astype(np.float32)).to(device)
        self.visibility = torch.from_numpy(ds.visibility.astype(np.float32)).to(device)
        self.labels = None if ds.labels is None else torch.from_numpy(ds.labels.astype(np.int64)).to(device)

    def batch(self, idx: torch.Tensor) -> Batch:
        idx = idx.to(self.images.device)
        return Batch(images=self.images[idx].float().div_(255.0), keypoints=self.keypoints[idx],
                     visibility=self.visibility[idx],
                     labels=None if self.labels is None else self.labels[idx], index=idx)


class _WithReplacement:
    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.size = n, batch
        self.gen = torch.Generator().manual_seed(seed)

    def next(self) -> torch.Tensor:
        return torch.randint(self.n, (self.size,), generator=self.gen)

    def state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load(self, s: dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])


class _Epochs:
    """Walks a random permutation; a new one each epoch."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.size = n, batch
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def next(self) -> torch.Tensor:
        out = []
        need = self.size
        while need:
            if self.pos >= self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
            take = self.perm[self.pos:self.pos + need]
            self.pos += len(take)
            need -= len(take)
            out.append(take)
        return torch.cat(out)

    def state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load(self, s: dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos = s["perm"], s["pos"]


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

def predict_dataset(method, ds: ArrayDataset, device: torch.device, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    t = _Tensors(ds, device)
    pts, conf = [], []
    for s in range(0, t.n, chunk):
        b = t.batch(torch.arange(s, min(s + chunk, t.n)))
        p, c = method.predict(b.images)
        pts.append(p.float().cpu().numpy())
        conf.append(c.float().cpu().numpy())
    return np.concatenate(pts), np.concatenate(conf)


def evaluate(method, ds: ArrayDataset, device: torch.device) -> dict[str, Any]:
    pred, _ = predict_dataset(method, ds, device)
    norm = ds.normaliser_values()
    out: dict[str, Any] = {}
    for alpha in (0.05, 0.1, 0.2):
        r = pck(pred, ds.keypoints, ds.visibility, norm, alpha=alpha)
        out[f"pck@{alpha}"] = float(r["mean"])
        if alpha == 0.1:
            out["pck@0.1_per_joint"] = [None if not np.isfinite(v) else round(float(v), 4) for v in r["per_joint"]]
    return out


# ---------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic: write a temp file beside ``path``, then rename. On failure (disk
    full, ...) the previous checkpoint is left intact and CheckpointError raised."""
    # unique per process: two sweep workers may train the same teacher run at once
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path} ({e}); the previous checkpoint is intact") from e


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------

def build_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def train(config: RunConfig, *, checkpoint_path: str | Path | None = None, progress: bool | None = None,
          device: torch.device | None = None, data: RunData | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train ``config`` to the end and return history, final metrics, predictions.

    ``checkpoint_path``: resume from it if it exists, save to it every
    ``train.checkpoint_every`` steps. ``stop_after``: stop (after checkpointing)
    at that step -- used by tests to simulate an interruption.
    """
    from tqdm import tqdm

    device = device or pick_device()
    progress = progress_default() if progress is None else progress
    tune_malloc()
    seed_everything(config.seed)
    data = data or load_run_data(config.data)
    cls = get_method(config.method)
    data = cls.prepare_data(config, data, device)
    t = config.train
    gen = torch.Generator().manual_seed(config.seed)
    method = cls(config, data.labeled.spec, data.labeled.image_size, device, gen)
    weights = method.loss_weights()
    opt = build_optimizer(config, method.parameters())
    milestones = sorted({max(1, int(round(f * t.steps))) for f in t.lr_milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)

    lab = _Tensors(data.labeled, device)
    lab_sampler = _WithReplacement(lab.n, t.batch_size, config.seed + 1)
    unl = unl_sampler = None
    if method.uses_unlabeled and t.unlabeled_batch_size > 0:
        if data.unlabeled is None:
            raise TrainingError(f"method {config.method!r} needs unlabeled images but data.label_fraction leaves none")
        unl = _Tensors(data.unlabeled, device)
        unl_sampler = _Epochs(unl.n, t.unlabeled_batch_size, config.seed + 2)
    val = data.val.subset(np.arange(min(t.eval_size, len(data.val))))

    history: list[dict[str, Any]] = []
    running: dict[str, float] = {}  # loss sums since the last log entry
    step = 0
    train_time = 0.0
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        try:
            state = torch.load(ckpt, weights_only=True)  # never unpickle arbitrary objects
        except Exception as e:  # a torn or foreign file: start over rather than trust it
            import warnings

            warnings.warn(f"checkpoint {ckpt} is unreadable ({e}); training from scratch", stacklevel=2)
            state = None
        if state is not None:
            method.load_state_dict(state["method"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            lab_sampler.load(state["lab_sampler"])
            if unl_sampler is not None:
                unl_sampler.load(state["unl_sampler"])
            history, step, train_time = state["history"], state["step"], state["train_time"]
            running = dict(state["running"])
            torch.set_rng_state(state["torch_rng"])
            name, keys, pos, has_gauss, cached = state["numpy_rng"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(state["python_rng"])

    autocast = _autocast(device)
    if device.type == "cuda" and runtime_options()["channels_last"]:
        method.module.to(memory_format=torch.channels_last)
    bar = tqdm(total=t.steps, initial=step, disable=not progress, desc=f"{config.method}", leave=False)
    method.module.train()
    while step < t.steps:
        t0 = time.perf_counter()
        lb = lab.batch(lab_sampler.next())
        ub = unl.batch(unl_sampler.next()) if unl is not None else None
        with autocast:
            losses = method.training_step(lb, ub, step)
        total = torch.zeros((), device=device)
        for name, value in losses.items():
            if name not in weights:
                raise TrainingError(f"method {config.method!r} returned loss {name!r} with no weight")
            if not torch.isfinite(value):
                raise NonFiniteLoss(
                    f"step {step}: loss {name!r} is {float(value.detach())} (config key loss_weights.{name}, "
                    f"weight {weights[name]}; train.lr {t.lr}); the run is marked failed")
            total = total + weights[name] * value
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        step += 1
        train_time += time.perf_counter() - t0
        for name, value in losses.items():
            running[name] = running.get(name, 0.0) + float(value.detach())
        running["_n"] = running.get("_n", 0) + 1
        bar.update(1)
        if step % t.eval_every == 0 or step == t.steps:
            n = running.pop("_n")
            entry: dict[str, Any] = {"step": step, "lr": sched.get_last_lr()[0]}
            entry.update({f"loss/{k}": v / n for k, v in running.items()})
            entry.update({f"diag/{k}": v for k, v in method.diagnostics.items()})
            ev = method.evaluate(val, device)
            entry.update({f"val/{k}": v for k, v in ev.items() if isinstance(v, (int, float))})
            entry["ms_per_step"] = 1000.0 * train_time / step
            history.append(entry)
            running = {}
            if "pck@0.1" in ev:
                bar.set_postfix(pck=f"{ev['pck@0.1']:.3f}")
        if ckpt is not None and (step % t.checkpoint_every == 0 or (stop_after is not None and step == stop_after)):
            save_checkpoint(ckpt, {
                "step": step, "method": method.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "lab_sampler": lab_sampler.state(),
                "unl_sampler": unl_sampler.state() if unl_sampler is not None else None,
                "history": history, "running": dict(running), "train_time": train_time,
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": _numpy_rng_state(), "python_rng": random.getstate(),
            })
        if stop_after is not None and step == stop_after and step < t.steps:
            bar.close()
            return {"interrupted_at": step}
    bar.close()

    final = method.evaluate(data.test, device)
    final["ms_per_step"] = 1000.0 * train_time / max(step, 1)
    final["train_time_s"] = train_time
    vis = data.test.subset(np.arange(min(VIS_SET_SIZE, len(data.test))))
    vp, vc = predict_dataset(method, vis, device)
    predictions = {
        "split": "test", "indices": list(range(len(vis))),
        "points": np.round(vp, 2).tolist(), "confidence": np.round(vc, 3).tolist(),
    }
    return {"history": _jsonable(history), "final": _jsonable(final), "predictions": predictions,
            "device": str(device), "weights": method.module.state_dict()}


def _autocast(device: torch.device):
    """bfloat16 autocast on CUDA when ``LANDMARK_STUDY_AMP=1`` (bf16 needs no loss scaling); else a no-op.

    All data lives on the device for the whole run (see ``_Tensors``), so there
    are no per-step host-to-device copies to pin or overlap."""
    import contextlib

    if device.type == "cuda" and runtime_options()["amp"]:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _numpy_rng_state() -> tuple:
    """numpy's global RNG state with its key array as a tensor (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
