"""Where things live on disk: the data root and the default results store."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """``$LANDMARK_STUDY_DATA`` or ``~/.cache/landmark_study``; created on demand."""
    env = os.environ.get("LANDMARK_STUDY_DATA")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "landmark_study"
    root.mkdir(parents=True, exist_ok=True)
    return root
