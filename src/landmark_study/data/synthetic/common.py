"""Pieces shared by the procedural generators."""

from __future__ import annotations

import numpy as np


def check_generator_args(fn: str, n, seed, size, start, size_range: tuple[int, int] = (16, 256)) -> None:
    """Validate the arguments every ``generate_<name>(n, seed, size, start=...)`` takes."""
    lo, hi = size_range
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{fn}: n must be a non-negative int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or not lo <= size <= hi:
        raise ValueError(f"{fn}: size must be an int in [{lo}, {hi}], got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: seed must be a non-negative int, got {seed!r}")
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"{fn}: start must be a non-negative int, got {start!r}")
