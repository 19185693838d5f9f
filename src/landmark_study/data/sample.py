"""The one sample interface shared by synthetic and real datasets.

A :class:`Sample` is one image with its keypoints; a :class:`DatasetSpec`
declares what the keypoints mean (names, flip pairs, skeleton, normaliser);
an :class:`ArrayDataset` holds many equally sized samples in memory as numpy
arrays, which is what the training loop and the metrics consume.

Conventions: images are ``(H, W, 3)`` uint8 RGB; keypoints ``(K, 2)`` float32
``(x, y)`` pixels with pixel centres at integers; visibility ``(K,)`` float32
in {0, 1}; bbox ``(4,)`` float32 ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

NORMALISERS = ("bbox", "torso", "head", "inter_ocular", "shoulder", "sqrt_wh")


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's keypoints are.

    ``normaliser`` names the length that PCK/NME divide by:
    ``bbox`` (longest side of the box), ``sqrt_wh`` (sqrt of box area),
    ``torso``/``inter_ocular``/``shoulder`` (distance between the two joints in
    ``normaliser_joints``), ``head`` (0.6 x head-box diagonal, PCKh; needs
    ``meta['head_box']``).
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    normaliser: str = "bbox"
    normaliser_joints: tuple[int, int] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        if self.normaliser not in NORMALISERS:
            raise ValueError(
                f"dataset {self.name!r}: unknown normaliser {self.normaliser!r}; "
                f"known: {', '.join(NORMALISERS)}"
            )
        if self.normaliser in ("torso", "inter_ocular", "shoulder") and self.normaliser_joints is None:
            raise ValueError(f"dataset {self.name!r}: normaliser {self.normaliser!r} needs normaliser_joints")
        for a, b in tuple(self.flip_pairs) + tuple(self.skeleton):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"dataset {self.name!r}: pair ({a}, {b}) outside 0..{k - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def flip_permutation(self) -> np.ndarray:
        """Index array ``perm`` with ``kp_flipped[perm]`` = keypoints renamed after a horizontal flip."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


@dataclass
class Sample:
    image: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    bbox: np.ndarray
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArrayDataset:
    """Equally sized samples held as arrays (N first)."""

    spec: DatasetSpec
    images: np.ndarray  # (N, H, W, 3) uint8
    keypoints: np.ndarray  # (N, K, 2) float32
    visibility: np.ndarray  # (N, K) float32
    bbox: np.ndarray  # (N, 4) float32
    labels: np.ndarray | None = None  # (N,) int64
    meta: dict[str, np.ndarray] = field(default_factory=dict)  # each (N, ...)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"{self.spec.name}: images must be (N, H, W, 3) uint8, got {self.images.shape} {self.images.dtype}")
        k = self.spec.num_keypoints
        checks = {
            "keypoints": (self.keypoints, (n, k, 2)),
            "visibility": (self.visibility, (n, k)),
            "bbox": (self.bbox, (n, 4)),
        }
        for key, (arr, shape) in checks.items():
            if arr.shape != shape:
                raise ValueError(f"{self.spec.name}: {key} has shape {arr.shape}, expected {shape}")
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"{self.spec.name}: labels has shape {self.labels.shape}, expected ({n},)")
        for key, arr in self.meta.items():
            if len(arr) != n:
                raise ValueError(f"{self.spec.name}: meta[{key!r}] has {len(arr)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def __getitem__(self, i: int) -> Sample:
        return Sample(
            image=self.images[i],
            keypoints=self.keypoints[i],
            visibility=self.visibility[i],
            bbox=self.bbox[i],
            label=None if self.labels is None else int(self.labels[i]),
            meta={k: v[i] for k, v in self.meta.items()},
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ArrayDataset":
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            images=self.images[idx],
            keypoints=self.keypoints[idx],
            visibility=self.visibility[idx],
            bbox=self.bbox[idx],
            labels=None if self.labels is None else self.labels[idx],
            meta={k: v[idx] for k, v in self.meta.items()},
        )

    def normaliser_values(self) -> np.ndarray:
        """Per-sample length (N,) that PCK/NME divide by, as the spec declares."""
        return normaliser_values(self.spec, self.keypoints, self.bbox, self.meta)


def normaliser_values(spec: DatasetSpec, keypoints: np.ndarray, bbox: np.ndarray,
                      meta: dict[str, np.ndarray] | None = None) -> np.ndarray:
    meta = meta or {}
    w = bbox[:, 2] - bbox[:, 0]
    h = bbox[:, 3] - bbox[:, 1]
    if spec.normaliser == "bbox":
        return np.maximum(w, h).astype(np.float64)
    if spec.normaliser == "sqrt_wh":
        return np.sqrt(np.clip(w * h, 0, None)).astype(np.float64)
    if spec.normaliser == "head":
        if "head_box" not in meta:
            raise KeyError(f"{spec.name}: normaliser 'head' needs meta['head_box'] (N, 4)")
        hb = meta["head_box"]
        return 0.6 * np.hypot(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1])
    a, b = spec.normaliser_joints  # type: ignore[misc]
    return np.linalg.norm(keypoints[:, a] - keypoints[:, b], axis=-1).astype(np.float64)
