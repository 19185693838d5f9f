"""The results store: content-addressed training runs.

A run's key is a hash of its resolved config plus the method's version string.
Each entry is one small JSON file ``<root>/<key>.json`` holding the metric
history, final metrics, predictions on a small fixed visualisation set and
provenance. Writes are atomic (temp file + ``os.replace``); every entry
carries a digest of its payload, so a truncated or edited file is reported,
set aside and recomputed, never trusted.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .config import RunConfig, to_dict
from .paths import REPO_ROOT, data_root

STORE_FORMAT = 1


class CorruptEntry(RuntimeError):
    pass


def method_version(config: RunConfig) -> str:
    from .methods import get_method

    return get_method(config.method).version


def data_version(config: RunConfig) -> Any:
    """The version of the generator behind a synthetic dataset (None for real datasets):
    a generator whose output changes bumps it, so runs on the old data are not reused."""
    from .data.synthetic import SYNTHETIC, resolve_generator

    return resolve_generator(config.data.name)[1] if config.data.name in SYNTHETIC else None


def run_key(config: RunConfig, version: str | None = None) -> str:
    """Hash of the resolved config, the method version and the data generator version (16 hex chars)."""
    payload = {"config": to_dict(config), "method_version": version or method_version(config),
               "data_version": data_version(config)}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass
class RunResult:
    key: str
    config: dict[str, Any]
    method_version: str
    status: str  # "done" | "failed"
    final: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    data_version: Any = None

    @property
    def run_config(self) -> RunConfig:
        from .config import run_config_from_dict

        return run_config_from_dict(self.config, f"store entry {self.key}")

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT, "key": self.key, "config": self.config,
            "method_version": self.method_version, "status": self.status, "final": self.final,
            "history": self.history, "predictions": self.predictions,
            "provenance": self.provenance, "error": self.error, "data_version": self.data_version,
        }

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> "RunResult":
        return cls(key=p["key"], config=p["config"], method_version=p["method_version"],
                   status=p["status"], final=p.get("final", {}), history=p.get("history", []),
                   predictions=p.get("predictions", {}), provenance=p.get("provenance", {}),
                   error=p.get("error"), data_version=p.get("data_version"))


def provenance(device: str, wall_time: float) -> dict[str, Any]:
    import torch

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit, "git_dirty": bool(status) if status is not None else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(),
        "python": platform.python_version(), "torch": torch.__version__, "device": device,
        "threads": torch.get_num_threads(), "wall_time_s": round(wall_time, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1), "runtime": runtime_options(),
    }


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; a sweep worker's covers its earlier runs)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def runtime_options() -> dict[str, Any]:
    """Execution settings that are not part of a run's config (they do not change its key):
    ``LANDMARK_STUDY_AMP=1`` (bfloat16 autocast) and ``LANDMARK_STUDY_CHANNELS_LAST=1``, used on
    CUDA only. Recorded in every run's provenance."""
    return {"amp": os.environ.get("LANDMARK_STUDY_AMP", "0") == "1",
            "channels_last": os.environ.get("LANDMARK_STUDY_CHANNELS_LAST", "0") == "1"}


class ResultsStore:
    """A folder of run entries."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def read(self, key: str) -> RunResult | None:
        """The entry for ``key``; None if absent. Raises CorruptEntry if unreadable."""
        p = self.path(key)
        if not p.exists():
            return None
        try:
            doc = json.loads(p.read_text())
            payload, digest = doc["payload"], doc["digest"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CorruptEntry(f"{p}: unreadable results entry ({type(e).__name__}: {e})") from None
        if _digest(payload) != digest:
            raise CorruptEntry(f"{p}: digest mismatch (the file was truncated or edited)")
        if payload.get("key") != key:
            raise CorruptEntry(f"{p}: entry claims key {payload.get('key')!r}")
        return RunResult.from_payload(payload)

    def get(self, key: str) -> RunResult | None:
        """A finished result for ``key``, or None. Corrupt entries are reported and set aside."""
        try:
            res = self.read(key)
        except CorruptEntry as e:
            warnings.warn(f"{e}; it is set aside and the run will be recomputed", stacklevel=2)
            bad = self.path(key).with_suffix(f".corrupt-{int(time.time())}")
            os.replace(self.path(key), bad)
            return None
        if res is None or res.status != "done":
            return None
        return res

    def put(self, result: RunResult) -> Path:
        payload = result.to_payload()
        doc = {"digest": _digest(payload), "payload": payload}
        target = self.path(result.key)
        fd, tmp = tempfile.mkstemp(prefix=f".{result.key}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def entries(self) -> Iterator[RunResult]:
        for p in sorted(self.root.glob("*.json")):
            try:
                res = self.read(p.stem)
            except CorruptEntry as e:
                warnings.warn(str(e), stacklevel=2)
                continue
            if res is not None:
                yield res


def default_store(profile: str = "full") -> ResultsStore:
    """``full``/``paper`` results live in the repository (committed); ``quick`` in a
    temporary folder (``$LANDMARK_STUDY_QUICK_STORE`` to choose), so CI really trains."""
    if profile == "quick":
        root = os.environ.get("LANDMARK_STUDY_QUICK_STORE") or os.path.join(tempfile.gettempdir(), f"landmark_study_quick_{os.getuid()}")
        return ResultsStore(root)
    return ResultsStore(os.environ.get("LANDMARK_STUDY_STORE") or REPO_ROOT / "book" / "results" / profile)


def chapter_store(params) -> ResultsStore:
    """The store a chapter's parameters select: ``params.store`` or the profile's default."""
    return ResultsStore(params.store) if params.store else default_store(params.profile)


def checkpoint_dir() -> Path:
    root = Path(os.environ.get("LANDMARK_STUDY_CHECKPOINTS") or data_root() / "checkpoints")
    root.mkdir(parents=True, exist_ok=True)
    return root


_CURRENT_STORE: "contextvars.ContextVar[ResultsStore | None]" = contextvars.ContextVar("landmark_store", default=None)


def weights_path(key: str) -> Path:
    """Final weights of run ``key`` (outside the repository: they are not results)."""
    return checkpoint_dir() / f"{key}.final.pt"


def _save_weights(key: str, state: dict[str, Any]) -> None:
    from .train import save_checkpoint

    save_checkpoint(weights_path(key), {k: v.detach().cpu() for k, v in state.items()})


def trained_method(config: RunConfig, store: ResultsStore | None = None, device=None):
    """The trained :class:`~landmark_study.methods.Method` of ``config``, weights loaded, in eval mode.

    Trains the run (and stores its result) if the store lacks it. If the result
    is stored but its weights are not on this machine (a fresh clone of the
    committed results), the run is retrained deterministically to recover the
    weights; the stored entry is left as it is. Used by methods that need a
    teacher (pseudo-labels, self-training rounds, stage 2 of clustering).
    """
    import torch

    from .methods import get_method
    from .train import load_run_data, pick_device, train

    store = store or _CURRENT_STORE.get() or default_store("full")
    device = device or pick_device()
    res = run(config, store)
    path = weights_path(res.key)
    if not path.exists():
        token = _CURRENT_STORE.set(store)
        try:
            out = train(config, checkpoint_path=checkpoint_dir() / f"{res.key}.pt", progress=False)
        finally:
            _CURRENT_STORE.reset(token)
        _save_weights(res.key, out["weights"])
        (checkpoint_dir() / f"{res.key}.pt").unlink(missing_ok=True)
    cls = get_method(config.method)
    data = cls.prepare_data(config, load_run_data(config.data), device)
    method = cls(config, data.labeled.spec, data.labeled.image_size, device,
                 torch.Generator().manual_seed(config.seed))
    method.module.load_state_dict(torch.load(path, weights_only=True, map_location=device))
    method.module.eval()
    return method


def run(config: RunConfig, store: ResultsStore | None = None, *, force: bool = False,
        progress: bool | None = None, resume: bool = True) -> RunResult:
    """The cached result of ``config`` or, if absent, train it and store the result.

    A failed run (NaN loss, ...) is stored with status "failed" and the error
    re-raised; it is not served as a cached result.
    """
    from .train import TrainingError, train

    store = store or _CURRENT_STORE.get() or default_store("full")
    version = method_version(config)
    key = run_key(config, version)
    if not force:
        cached = store.get(key)
        if cached is not None:
            return cached
    ckpt = checkpoint_dir() / f"{key}.pt" if resume else None
    t0 = time.time()
    token = _CURRENT_STORE.set(store)  # runs this one depends on (teachers) go to the same store
    try:
        out = train(config, checkpoint_path=ckpt, progress=progress)
    except TrainingError as e:
        res = RunResult(key=key, config=to_dict(config), method_version=version, status="failed",
                        data_version=data_version(config),
                        provenance=provenance("?", time.time() - t0), error=str(e))
        store.put(res)
        raise
    finally:
        _CURRENT_STORE.reset(token)
    _save_weights(key, out.pop("weights"))
    res = RunResult(key=key, config=to_dict(config), method_version=version, status="done",
                    data_version=data_version(config),
                    final=out["final"], history=out["history"], predictions=out["predictions"],
                    provenance=provenance(out["device"], time.time() - t0))
    store.put(res)
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return res
