from __future__ import annotations

import os

import pytest

os.environ.setdefault("CI", "1")  # no progress bars in tests


@pytest.fixture(scope="session")
def _session_data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True)
def _isolated_dirs(_session_data_root, tmp_path_factory, monkeypatch):
    """Tests share one data root (generated sets are cached there, never in ~/.cache);
    every test gets its own checkpoint folder."""
    monkeypatch.setenv("LANDMARK_STUDY_DATA", str(_session_data_root))
    monkeypatch.setenv("LANDMARK_STUDY_CHECKPOINTS", str(tmp_path_factory.mktemp("ckpt")))


def tiny_config(**overrides):
    """A run that trains in about a second on the CPU."""
    from landmark_study.config import RunConfig

    base = RunConfig().with_overrides(**{
        "data.name": "figures", "data.size": 32, "data.n_train": 40, "data.n_val": 16,
        "model.width": 8, "train.steps": 6, "train.batch_size": 4, "train.eval_every": 3,
        "train.checkpoint_every": 3, "train.eval_size": 16,
    })
    return base.with_overrides(**overrides) if overrides else base


_real_connect = __import__("socket").socket.connect


def _loopback_only(self, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1", "")) \
            and self.family in (__import__("socket").AF_INET, __import__("socket").AF_INET6):
        raise OSError(f"network access to {host!r} is not allowed in tests (loopback only)")
    return _real_connect(self, address, *args, **kwargs)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests may talk to servers they start on loopback, nothing else."""
    import socket

    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
