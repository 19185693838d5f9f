"""Chapter definitions: each chapter's parameter schema and its grid of runs.

A chapter notebook validates its papermill parameters against the schema
registered here and asks :func:`chapter_grid` for the runs it needs; the
sweep command expands the same grid, so the book and a cluster sweep train
exactly the same configs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

_CHAPTER_MODULES = ("datasets",)
_GRIDS: dict[str, Callable[[Any], list]] = {}


def register_grid(name: str):
    def deco(fn):
        _GRIDS[name] = fn
        return fn
    return deco


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
