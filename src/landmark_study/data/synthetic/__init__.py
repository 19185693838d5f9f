"""Synthetic datasets: a registry of generators, an on-disk cache and split loaders.

Every generator follows one contract::

    generate_<name>(n: int, seed: int, size: int = <default>, **options) -> ArrayDataset

Sample ``i`` comes from its own ``np.random.default_rng([seed, i])``, so a prefix
or subset is identical whatever ``n`` is. A generator that also accepts a
keyword ``start`` (sample ``i`` then uses ``[seed, start + i]``) can be generated
in chunks, which :func:`load_synthetic` uses for its progress bar.

Each generator module exposes ``VERSION`` (bumped when the output changes), the
spec ``<NAME>_SPEC`` and optionally ``DEFAULT_SPLIT_SIZES`` (either
``{split: n}`` or ``{dataset_name: {split: n}}``). Modules are imported lazily,
so this package imports even when a generator module is absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from ... import paths
from ..sample import ArrayDataset, DatasetSpec

__all__ = [
    "SYNTHETIC",
    "SPLITS",
    "FALLBACK_SPLIT_SIZES",
    "load_synthetic",
    "get_dataset",
    "generation_speed",
    "cache_path",
    "split_seed",
    "default_split_sizes",
    "resolve_generator",
]

SYNTHETIC: dict[str, str] = {
    "shapes": "landmark_study.data.synthetic.shapes:generate_shapes",
    "blocks": "landmark_study.data.synthetic.shapes:generate_blocks",
    "figures": "landmark_study.data.synthetic.figures:generate_figures",
    "faces": "landmark_study.data.synthetic.faces:generate_faces",
}
"""Dataset name -> ``"module:function"`` of its generator (imported on first use)."""

SPLITS = ("train", "val", "test")
FALLBACK_SPLIT_SIZES = {"train": 2000, "val": 500, "test": 500}
CHUNK = 512  # samples per generator call when a progress bar is shown


def _check_name(name: str) -> str:
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic dataset {name!r}; known: {', '.join(sorted(SYNTHETIC))}")
    return SYNTHETIC[name]


def _module(name: str) -> tuple[ModuleType, str]:
    target = _check_name(name)
    mod_name, _, func_name = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ImportError(f"synthetic dataset {name!r}: cannot import generator module {mod_name!r}: {e}") from e
    return mod, func_name


def resolve_generator(name: str) -> tuple[Callable[..., ArrayDataset], Any]:
    """Return ``(generator function, module VERSION)`` for a registered dataset name."""
    mod, func_name = _module(name)
    fn = getattr(mod, func_name, None)
    if fn is None or not callable(fn):
        raise ImportError(f"synthetic dataset {name!r}: module {mod.__name__!r} has no function {func_name!r}")
    if not hasattr(mod, "VERSION"):
        raise ImportError(f"synthetic dataset {name!r}: module {mod.__name__!r} does not define VERSION")
    return fn, mod.VERSION


def _module_spec(name: str) -> DatasetSpec | None:
    mod, _ = _module(name)
    spec = getattr(mod, f"{name.upper()}_SPEC", None)
    return spec if isinstance(spec, DatasetSpec) else None


def _default_size(fn: Callable[..., Any]) -> int | None:
    try:
        p = inspect.signature(fn).parameters.get("size")
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return None
    if p is None or p.default is inspect.Parameter.empty:
        return None
    return p.default


def _accepts_start(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return "start" in params


def _check_int(key: str, val: Any, minimum: int) -> int:
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
        raise TypeError(f"{key} must be an int, got {val!r}")
    if val < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {val}")
    return int(val)


def _key(n: int, seed: int, size: int | None, options: dict[str, Any]) -> str:
    blob = json.dumps(
        {"n": n, "seed": seed, "size": size, "options": sorted(options.items())},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(name: str, n: int, seed: int, size: int | None = None, **options: Any) -> Path:
    """Cache file of ``load_synthetic(name, n, seed, size, **options)`` (may not exist)."""
    fn, version = resolve_generator(name)
    if size is None:
        size = _default_size(fn)
    return paths.data_root() / "synthetic" / f"{name}-v{version}-{_key(n, seed, size, options)}.npz"


# ----------------------------------------------------------------------------- (de)serialisation


def _spec_to_json(spec: DatasetSpec) -> str:
    return json.dumps(dataclasses.asdict(spec))


def _spec_from_json(text: str) -> DatasetSpec:
    d = json.loads(text)

    def tup(x: Any) -> Any:
        return tuple(tup(v) for v in x) if isinstance(x, list) else x

    return DatasetSpec(**{k: tup(v) for k, v in d.items()})


def _save(ds: ArrayDataset, path: Path, module_spec: DatasetSpec | None = None) -> None:
    """Write ``ds`` to ``path`` atomically (temp file in the same folder, then ``os.replace``).

    ``module_spec`` (the generator module's ``<NAME>_SPEC`` at write time) is stored
    so that a later change of the module's spec without a ``VERSION`` bump is caught.
    """
    arrays: dict[str, np.ndarray] = {
        "images": ds.images,
        "keypoints": ds.keypoints,
        "visibility": ds.visibility,
        "bbox": ds.bbox,
        "spec_json": np.array(_spec_to_json(ds.spec)),
        "module_spec_json": np.array("" if module_spec is None else _spec_to_json(module_spec)),
    }
    if ds.labels is not None:
        arrays["labels"] = ds.labels
    for k, v in ds.meta.items():
        arrays[f"meta__{k}"] = np.asarray(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _CacheError(Exception):
    pass


def _load(path: Path, name: str, n: int, module_spec: DatasetSpec | None) -> ArrayDataset:
    """Read a cache file; any sign of damage or staleness raises :class:`_CacheError`.

    The dataset's spec is rebuilt (and validated) from the JSON stored beside the
    arrays, which is the spec the generator returned; the module's current spec
    must equal the one recorded at write time.
    """
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            files = set(z.files)
            spec = _spec_from_json(str(z["spec_json"]))
            written_module_spec = str(z["module_spec_json"])
            ds = ArrayDataset(
                spec=spec,
                images=z["images"],
                keypoints=z["keypoints"],
                visibility=z["visibility"],
                bbox=z["bbox"],
                labels=z["labels"] if "labels" in files else None,
                meta={k[len("meta__"):]: z[k] for k in files if k.startswith("meta__")},
            )
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
        raise _CacheError(f"unreadable ({type(e).__name__}: {e})") from e
    if len(ds) != n:
        raise _CacheError(f"holds {len(ds)} samples, expected {n}")
    if ds.spec.name != name:
        raise _CacheError(f"holds dataset {ds.spec.name!r}, expected {name!r}")
    now = "" if module_spec is None else _spec_to_json(module_spec)
    if now != written_module_spec:
        raise _CacheError("was written when the generator module's spec differed (was VERSION bumped?)")
    return ds


# ----------------------------------------------------------------------------- generation


def _concat(parts: list[ArrayDataset]) -> ArrayDataset:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return ArrayDataset(
        spec=first.spec,
        images=np.concatenate([p.images for p in parts]),
        keypoints=np.concatenate([p.keypoints for p in parts]),
        visibility=np.concatenate([p.visibility for p in parts]),
        bbox=np.concatenate([p.bbox for p in parts]),
        labels=None if first.labels is None else np.concatenate([p.labels for p in parts]),  # type: ignore[misc]
        meta={k: np.concatenate([p.meta[k] for p in parts]) for k in first.meta},
    )


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and not os.environ.get("CI")


def _generate(name: str, fn: Callable[..., ArrayDataset], n: int, seed: int, size: int | None,
              options: dict[str, Any], progress: bool) -> ArrayDataset:
    kwargs = dict(options)
    if size is not None:
        kwargs["size"] = size
    if not (_progress_enabled(progress) and n > CHUNK and _accepts_start(fn)):
        ds = fn(n, seed, **kwargs)
    else:
        from tqdm import tqdm

        parts = []
        with tqdm(total=n, desc=f"generating {name}", unit="img") as bar:
            for start in range(0, n, CHUNK):
                m = min(CHUNK, n - start)
                parts.append(fn(m, seed, start=start, **kwargs))
                bar.update(m)
        ds = _concat(parts)
    if not isinstance(ds, ArrayDataset) or len(ds) != n:
        raise RuntimeError(f"synthetic dataset {name!r}: generator returned {type(ds).__name__} "
                           f"of length {len(ds) if hasattr(ds, '__len__') else '?'}, expected ArrayDataset of {n}")
    return ds


def load_synthetic(name: str, n: int, seed: int, size: int | None = None, cache: bool = True,
                   progress: bool = False, **options: Any) -> ArrayDataset:
    """Generate (or read from the cache) ``n`` samples of synthetic dataset ``name``.

    The cache lives at ``paths.data_root()/'synthetic'/'{name}-v{VERSION}-{hash}.npz'``
    where the hash covers ``(n, seed, size, sorted options)`` (``size=None`` means the
    generator's default and hashes as that value). The file holds the arrays, the
    generator's spec as JSON (rebuilt into a :class:`DatasetSpec` on load) and the
    module's ``<NAME>_SPEC`` at write time. Writes are atomic. A cache file
    that cannot be read, whose contents do not match ``n``/``name``, or that was
    written under a different module spec (a spec edit without a ``VERSION`` bump) is reported with
    :func:`warnings.warn`, deleted and regenerated. ``cache=False`` neither reads nor
    writes. ``progress`` shows a tqdm bar over chunks for large ``n`` (never when
    the environment variable ``CI`` is set). Unknown names raise ``ValueError``.
    """
    fn, _version = resolve_generator(name)
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    if size is None:
        size = _default_size(fn)
    else:
        size = _check_int("size", size, 1)
    if not cache:
        return _generate(name, fn, n, seed, size, options, progress)
    path = cache_path(name, n, seed, size, **options)
    module_spec = _module_spec(name)
    if path.exists():
        try:
            return _load(path, name, n, module_spec)
        except _CacheError as e:
            warnings.warn(f"synthetic cache file {path} {e}; deleting and regenerating", RuntimeWarning, stacklevel=2)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    ds = _generate(name, fn, n, seed, size, options, progress)
    _save(ds, path, module_spec)
    return ds


def split_seed(seed: int, split: str) -> int:
    """Deterministic 63-bit seed for ``split`` of base ``seed`` (distinct per split and seed)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    seed = _check_int("seed", seed, 0)
    digest = hashlib.sha256(f"landmark_study.synthetic/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def default_split_sizes(name: str) -> dict[str, int]:
    """Default ``{split: n}`` of a synthetic dataset (module ``DEFAULT_SPLIT_SIZES`` or a fallback)."""
    mod, _ = _module(name)
    sizes = getattr(mod, "DEFAULT_SPLIT_SIZES", FALLBACK_SPLIT_SIZES)
    if name in sizes and isinstance(sizes[name], dict):
        sizes = sizes[name]
    out = dict(FALLBACK_SPLIT_SIZES)
    out.update({k: int(v) for k, v in sizes.items() if k in SPLITS})
    return out


def get_dataset(name: str, split: str, n: int | None = None, seed: int = 0, size: int | None = None,
                cache: bool = True, progress: bool = False, **options: Any) -> ArrayDataset:
    """One split (``'train'``, ``'val'`` or ``'test'``) of a synthetic dataset.

    The split is generated with :func:`split_seed` ``(seed, split)``, so the three
    splits are independent streams and never share samples; ``n`` defaults to the
    module's ``DEFAULT_SPLIT_SIZES`` (Blocks: 3200 each, as in Honari et al. 2018).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    _check_name(name)
    if n is None:
        n = default_split_sizes(name)[split]
    return load_synthetic(name, n, split_seed(seed, split), size=size, cache=cache, progress=progress, **options)


def generation_speed(name: str, n: int = 200, size: int | None = None, seed: int = 0, **options: Any) -> float:
    """Images per second of a cold generation (no cache) of ``n`` samples of ``name``."""
    fn, _ = resolve_generator(name)
    n = _check_int("n", n, 1)
    kwargs = dict(options)
    if size is not None:
        kwargs["size"] = size
    t0 = time.perf_counter()
    ds = fn(n, seed, **kwargs)
    dt = time.perf_counter() - t0
    if len(ds) != n:
        raise RuntimeError(f"synthetic dataset {name!r}: generator returned {len(ds)} samples, expected {n}")
    return n / max(dt, 1e-12)
