"""Chapter definitions: each chapter's parameter schema and its grid of runs.

A chapter notebook validates its papermill parameters against the schema
registered here and asks :func:`chapter_grid` for the runs it needs; the
sweep command expands the same grid, so the book and a cluster sweep train
exactly the same configs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

_CHAPTER_MODULES = ("datasets", "scorecard", "sc_ti_te", "clustering", "self_training", "seq_mt", "collapse", "easy_hard",)
_GRIDS: dict[str, Callable[[Any], list]] = {}
_ARMS: dict[str, Callable[[Any], dict]] = {}


def register_grid(name: str):
    def deco(fn):
        _GRIDS[name] = fn
        return fn
    return deco


def register_arms(name: str):
    """Register ``fn(params) -> {arm_name: [RunConfig, one per seed]}`` for chapter ``name``.

    Arms are the named conditions a chapter's claims compare (``params/claims/<name>.yaml``
    refers to them by name); :mod:`landmark_study.claims` reads their runs from the store.
    """
    def deco(fn):
        _ARMS[name] = fn
        return fn
    return deco


def chapter_arms(name: str, params: Any) -> dict:
    """The named arms of chapter ``name`` for ``params`` ({} if it registers none)."""
    fn = _ARMS.get(name)
    return {} if fn is None else fn(params)


for _m in _CHAPTER_MODULES:
    import_module(f"{__name__}.{_m}")


def chapter_names() -> list[str]:
    return list(_CHAPTER_MODULES)


def chapter_grid(name: str, params: Any) -> list:
    """The run configs chapter ``name`` needs for ``params``."""
    from ..config import ConfigError

    if name not in _GRIDS:
        raise ConfigError(f"unknown chapter {name!r}; chapters with runs: {', '.join(sorted(_GRIDS))}")
    return _GRIDS[name](params)
