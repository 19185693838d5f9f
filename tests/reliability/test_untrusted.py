"""Untrusted files: pickled checkpoints are refused, YAML is loaded safely, no network."""

from __future__ import annotations

import socket

import pytest
import torch

from conftest import tiny_config
from landmark_study.config import ConfigError, load_yaml
from landmark_study.train import train


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_is_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "run.pt"
    torch.save({"step": 3, "payload": _Evil(str(marker))}, ckpt)
    with pytest.warns(UserWarning, match="unreadable"):
        out = train(tiny_config(), checkpoint_path=ckpt, progress=False)
    assert not marker.exists(), "the checkpoint's pickle payload was executed"
    assert out["final"]["pck@0.1"] >= 0.0  # trained from scratch instead


def test_yaml_tags_are_not_executed(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(p)


def test_tests_cannot_reach_the_network():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError, match="network access"):
        s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed
    s.close()
