"""Faults: SIGKILL mid-training, torn results entries, concurrent writers, NaN, full disk."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from landmark_study.config import to_dict
from landmark_study import train as train_mod
from landmark_study.runs import ResultsStore, RunResult, run, run_key
from landmark_study.train import CheckpointError, NonFiniteLoss, train
import torch

pytestmark = pytest.mark.slow


def _run_cli(cfg_path: Path, store: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "landmark_study", "run", str(cfg_path), "--store", str(store)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_training_resumes_to_identical_result(tmp_path):
    cfg = tiny_config(**{"train.steps": 60, "train.checkpoint_every": 5, "train.eval_every": 20})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(to_dict(cfg)))
    key = run_key(cfg)
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="1")

    # reference: uninterrupted, in a subprocess with the same thread count
    env_ref = dict(env, LANDMARK_STUDY_CHECKPOINTS=str(tmp_path / "ck_ref"))
    ref = _run_cli(cfg_path, tmp_path / "ref", env_ref)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    env_kill = dict(env, LANDMARK_STUDY_CHECKPOINTS=str(tmp_path / "ck_kill"))
    ckpt = tmp_path / "ck_kill" / f"{key}.pt"
    proc = _run_cli(cfg_path, tmp_path / "killed", env_kill)
    deadline = time.time() + 240
    while not ckpt.exists():
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / f"{key}.json").exists(), "killed run left a result"
    resumed = _run_cli(cfg_path, tmp_path / "killed", env_kill)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    a = ResultsStore(tmp_path / "ref").get(key)
    b = ResultsStore(tmp_path / "killed").get(key)
    assert a is not None and b is not None
    strip = lambda h: [{k: v for k, v in e.items() if k != "ms_per_step"} for e in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)  # bit-for-bit on CPU
    assert a.final["pck@0.1"] == b.final["pck@0.1"]
    assert a.predictions == b.predictions
    assert not ckpt.exists(), "checkpoint not cleaned up after the run finished"


def test_torn_write_leaves_old_entry_or_none(tmp_path):
    store = ResultsStore(tmp_path)
    good = RunResult(key="a" * 16, config={}, method_version="1", status="done", final={"x": 1})
    store.put(good)
    # a writer killed after writing part of its temp file, before the rename
    (tmp_path / f".{'a' * 16}.123.tmp").write_text('{"digest": "0", "payl')
    (tmp_path / f".{'b' * 16}.456.tmp").write_text("{")
    assert store.get("a" * 16).final == {"x": 1}  # the old entry, untouched
    assert store.get("b" * 16) is None  # no entry, not a half-written one
    assert [r.key for r in store.entries()] == ["a" * 16]


def _writer(root: str, worker: int, n: int) -> None:
    store = ResultsStore(root)
    for i in range(n):
        key = f"{(i if i % 3 else 999):016d}" if worker else f"{i:016d}"  # some keys shared by both
        store.put(RunResult(key=key, config={"i": i}, method_version="1", status="done",
                            final={"worker": worker, "i": i}, history=[{"step": s} for s in range(200)]))


def test_two_writers_at_once_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ResultsStore(tmp_path)
    with_warnings = list(store.entries())
    expected = {f"{i:016d}" for i in range(40)} | {f"{(i if i % 3 else 999):016d}" for i in range(40)}
    assert {r.key for r in with_warnings} == expected
    for r in with_warnings:
        assert len(r.history) == 200
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_store_holds_json_only(tmp_path):
    from landmark_study.runs import run

    store = ResultsStore(tmp_path)
    run(tiny_config(), store, progress=False)
    files = [p for p in tmp_path.iterdir()]
    assert files and all(p.suffix == ".json" for p in files)
    for p in files:
        json.loads(p.read_text())


def test_nan_loss_stops_with_step_and_key(tmp_path, monkeypatch):
    from landmark_study.methods.supervised import Supervised

    orig = Supervised.training_step

    def poisoned(self, lb, ub, step):
        out = orig(self, lb, ub, step)
        if step == 2:
            out["sup"] = out["sup"] * float("nan")
        return out

    monkeypatch.setattr(Supervised, "training_step", poisoned)
    store = ResultsStore(tmp_path)
    with pytest.raises(NonFiniteLoss, match=r"step 2: loss 'sup' is nan \(config key loss_weights.sup"):
        run(tiny_config(), store, progress=False)
    entries = list(tmp_path.glob("*.json"))
    assert len(entries) == 1
    key = entries[0].stem
    assert store.read(key).status == "failed" and store.get(key) is None


def test_checkpoint_failure_keeps_previous(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.pt"
    cfg = tiny_config()
    train(cfg, checkpoint_path=ckpt, progress=False, stop_after=3)
    before = ckpt.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # a partial file appears ...
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is intact"):
        train(cfg, checkpoint_path=ckpt, progress=False)
    assert ckpt.read_bytes() == before
    assert not list(tmp_path.glob("run.pt*.tmp"))


def test_two_processes_checkpointing_the_same_run_do_not_collide(tmp_path):
    """Two sweep workers can train the same (teacher) run at once: their temporary
    checkpoint files must not share a name, or one os.replace fails mid-run."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ckpt = tmp_path / "shared.pt"
    procs = [ctx.Process(target=_save_many, args=(str(ckpt), i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))


def _save_many(path: str, who: int) -> None:
    from pathlib import Path

    import torch

    from landmark_study.train import save_checkpoint

    for i in range(200):
        save_checkpoint(Path(path), {"who": who, "i": i, "x": torch.zeros(1000)})
