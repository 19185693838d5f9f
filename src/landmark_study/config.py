"""Typed, validated configuration.

Two kinds of configuration exist:

* **Run configs** (:class:`RunConfig`): one training job -- method, data, model,
  schedule, seed. Its resolved form is hashed into the results-store key.
* **Chapter parameters**: the papermill parameters of one chapter notebook,
  stored as ``params/<chapter>/{quick,full,paper}.yaml``; each chapter
  registers a dataclass schema with :func:`register_chapter_params`.

Everything is validated once, here, before any compute: an unknown key, a
wrong type or an out-of-range value raises :class:`ConfigError` whose
one-line message names the source (file), the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration value was rejected; the message names source and key."""


def spec(default: Any = dataclasses.MISSING, *, range: tuple[float | None, float | None] | None = None,
         choices: tuple[Any, ...] | None = None, help: str = "", default_factory: Any = dataclasses.MISSING):
    """A dataclass field with validation metadata (numeric ``range`` inclusive, ``choices``)."""
    meta = {"range": range, "choices": choices, "help": help}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type ``tp``; return it (lists -> tuples for tuple types)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not allowed; allowed values: {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected {_type_name(tp)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items ({_type_name(tp)}), got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{where} key"): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected float")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected int")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected bool")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected str")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: {value!r} has type {type(value).__name__}, expected {tp.__name__}")
    return value


def _check_meta(value: Any, f: dataclasses.Field, where: str) -> None:
    rng = f.metadata.get("range")
    choices = f.metadata.get("choices")
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v is None:
            continue
        if choices is not None and v not in choices:
            raise ConfigError(f"{where}: {v!r} is not allowed; allowed values: {', '.join(map(str, choices))}")
        if rng is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
            lo, hi = rng
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                lo_s = "-inf" if lo is None else lo
                hi_s = "inf" if hi is None else hi
                raise ConfigError(f"{where}: {v!r} is out of range; allowed values: [{lo_s}, {hi_s}]")


def from_dict(cls: type, data: Mapping[str, Any], source: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``, validating keys, types and ranges.

    ``source`` prefixes every error (a file name, or ``file: section``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        where = f"{source}: {name}" if ":" not in source else f"{source}.{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise ConfigError(f"{where}: required key is missing")
            continue
        value = _coerce(data[name], hints[name], where)
        _check_meta(value, f, where)
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain, JSON-able form of a config dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in sorted(obj.items())}
    return obj


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------
# Run configs
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """Which images a run sees.

    ``label_fraction`` (or ``num_labels``, which wins when set) picks the nested
    labeled subset of the training split; the rest is unlabeled.
    """

    name: str = spec("figures", help="synthetic generator or real dataset name")
    size: int = spec(64, range=(16, 512))
    n_train: int | None = spec(None, range=(1, None))
    n_val: int | None = spec(None, range=(1, None))
    label_fraction: float = spec(1.0, range=(0.0, 1.0))
    num_labels: int | None = spec(None, range=(1, None))
    split_seed: int = spec(0, range=(0, None))
    options: dict[str, Any] = spec(default_factory=dict)

    def validate(self) -> None:
        if self.label_fraction <= 0 and self.num_labels is None:
            raise ConfigError("data.label_fraction: must be > 0 unless data.num_labels is set")


@dataclass(frozen=True)
class ModelConfig:
    name: str = spec("unet_small")
    width: int = spec(16, range=(1, 1024))
    heatmap_stride: int = spec(2, choices=(1, 2, 4))
    options: dict[str, Any] = spec(default_factory=dict)


@dataclass(frozen=True)
class AugmentConfig:
    rotation: float = spec(30.0, range=(0.0, 180.0), help="max |degrees|")
    scale: tuple[float, float] = spec((0.75, 1.25), range=(0.05, 10.0))
    translation: float = spec(0.05, range=(0.0, 0.5))
    flip: float = spec(0.5, range=(0.0, 1.0), help="probability of a horizontal flip")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = spec(2000, range=(1, 10_000_000))
    batch_size: int = spec(32, range=(1, 4096), help="labeled images per step")
    unlabeled_batch_size: int = spec(0, range=(0, 4096))
    lr: float = spec(1e-3, range=(0.0, 10.0))
    lr_milestones: tuple[float, ...] = spec((0.75,), range=(0.0, 1.0), help="fractions of steps where lr *= 0.1")
    weight_decay: float = spec(0.0, range=(0.0, 1.0))
    optimizer: str = spec("adam", choices=("adam", "adamw", "sgd", "rmsprop"))
    sigma: float = spec(1.5, range=(0.1, 20.0), help="Gaussian target sigma in heatmap px")
    eval_every: int = spec(250, range=(1, None))
    eval_size: int = spec(500, range=(1, None), help="validation images used by periodic evaluation")
    checkpoint_every: int = spec(500, range=(1, None))
    augment: AugmentConfig = spec(default_factory=AugmentConfig)


@dataclass(frozen=True)
class RunConfig:
    """One training job. Its resolved dict (+ method version) is the store key."""

    method: str = spec("supervised")
    seed: int = spec(0, range=(0, 2**31 - 1))
    data: DataConfig = spec(default_factory=DataConfig)
    model: ModelConfig = spec(default_factory=ModelConfig)
    train: TrainConfig = spec(default_factory=TrainConfig)
    method_options: dict[str, Any] = spec(default_factory=dict)
    loss_weights: dict[str, float] = spec(default_factory=dict)

    def validate(self) -> None:
        from .methods import get_method  # local import: methods import config

        cls = get_method(self.method)  # raises with the known names
        opts_cls = getattr(cls, "Options", None)
        if opts_cls is not None:
            from_dict(opts_cls, self.method_options, "method_options")
        elif self.method_options:
            raise ConfigError(f"method_options: method {self.method!r} takes no options")
        known_losses = set(getattr(cls, "loss_names", ()))
        unknown = sorted(set(self.loss_weights) - known_losses)
        if unknown:
            raise ConfigError(
                f"loss_weights: unknown loss {unknown[0]!r} for method {self.method!r}; "
                f"allowed keys: {', '.join(sorted(known_losses)) or '(none)'}"
            )
        for k, v in self.loss_weights.items():
            if v < 0:
                raise ConfigError(f"loss_weights.{k}: {v!r} is out of range; allowed values: [0, inf]")

    def options(self) -> Any:
        """The method's typed options object."""
        from .methods import get_method

        cls = get_method(self.method)
        opts_cls = getattr(cls, "Options", None)
        return from_dict(opts_cls, self.method_options, "method_options") if opts_cls else None

    def with_overrides(self, **changes: Any) -> "RunConfig":
        """A copy with dotted-key overrides, e.g. ``{'train.steps': 10}``; validated."""
        d = to_dict(self)
        for key, value in changes.items():
            set_dotted(d, key, value)
        return run_config_from_dict(d)


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.replace("__", ".").split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"{key}: {p!r} is not a section")
    cur[parts[-1]] = value


def run_config_from_dict(data: Mapping[str, Any], source: str = "run config") -> RunConfig:
    return from_dict(RunConfig, data, source)


def load_run_config(path: str | Path) -> RunConfig:
    return run_config_from_dict(load_yaml(path), str(path))


# ---------------------------------------------------------------------------
# Chapter parameters
# ---------------------------------------------------------------------------

_CHAPTER_PARAMS: dict[str, type] = {}

PROFILES = ("quick", "full", "paper")


@dataclass(frozen=True)
class ChapterParams:
    """Fields every chapter has. Subclasses add their own."""

    profile: str = spec("quick", choices=PROFILES)
    seeds: tuple[int, ...] = spec((0,), range=(0, 2**31 - 1))
    store: str | None = spec(None, help="results store folder; None = the profile's default")
    workers: int = spec(1, range=(1, 64), help="parallel runs (dask LocalCluster) when > 1")


def register_chapter_params(name: str):
    def deco(cls: type) -> type:
        _CHAPTER_PARAMS[name] = cls
        return cls
    return deco


def chapter_params_class(chapter: str) -> type:
    from . import chapters  # noqa: F401  (registers every chapter's schema)

    if chapter not in _CHAPTER_PARAMS:
        raise ConfigError(f"unknown chapter {chapter!r}; known chapters: {', '.join(sorted(_CHAPTER_PARAMS))}")
    return _CHAPTER_PARAMS[chapter]


def load_chapter_params(chapter: str, values: Mapping[str, Any] | str | Path, source: str | None = None):
    """Validate a chapter's parameters (a dict, or a params YAML file path)."""
    cls = chapter_params_class(chapter)
    if isinstance(values, (str, Path)):
        return from_dict(cls, load_yaml(values), str(values))
    return from_dict(cls, dict(values), source or f"{chapter} parameters")


_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def notebook_params(chapter: str, namespace: Mapping[str, Any], before: set[str]):
    """Validate what papermill injected into a notebook.

    ``before`` is the set of global names that existed before the parameters
    cell; every new public global is taken as a parameter, so a misspelt key in
    ``papermill -p`` or ``-f`` is caught instead of silently ignored.
    """
    import dataclasses as _dc

    fields = {f.name for f in _dc.fields(chapter_params_class(chapter))}
    clash = sorted(fields & set(before))
    if clash:  # the parameters cell would rebind them, and they would be skipped as pre-existing names
        raise ConfigError(f"{chapter} notebook: {clash} exist before the parameters cell (an import?) and "
                          f"share a name with chapter parameters, which would then be ignored; rename them")
    values = {
        k: v for k, v in namespace.items()
        if k not in before and not k.startswith("_") and k not in _IPYTHON_NAMES
        and not isinstance(v, types.ModuleType) and not callable(v)
    }
    return load_chapter_params(chapter, values, f"{chapter} notebook parameters")
