"""Method registry: one module per paper method, each a :class:`Method` subclass.

A method composes losses and geometry into a ``training_step`` for the shared
loop in :mod:`landmark_study.train`. An unknown name is an error listing the
known ones.
"""

from __future__ import annotations

from importlib import import_module

from .base import Method, Batch

_MODULES = ("landmark_study.methods.supervised", "landmark_study.methods.sc_ti_te", "landmark_study.methods.clustering_correspondence", "landmark_study.methods.self_training", "landmark_study.methods.seq_mt", "landmark_study.methods.consistency", "landmark_study.methods.easy_hard", "landmark_study.methods.generation",)
_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not getattr(cls, "name", None) or not getattr(cls, "version", None):
        raise TypeError(f"{cls.__name__} needs class attributes 'name' and 'version'")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for m in _MODULES:
        import_module(m)


def get_method(name: str) -> type[Method]:
    _load_all()
    if name not in _REGISTRY:
        from ..config import ConfigError

        raise ConfigError(f"method: unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def known_methods() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


__all__ = ["Method", "Batch", "register", "get_method", "known_methods"]
