"""Datasets: the shared sample interface, synthetic generators, splits."""

from __future__ import annotations

from .sample import ArrayDataset, DatasetSpec, Sample, normaliser_values
from .splits import labeled_count, labeled_subset, make_splits
from .synthetic import SYNTHETIC, generation_speed, get_dataset, load_synthetic

__all__ = [
    "ArrayDataset",
    "DatasetSpec",
    "Sample",
    "normaliser_values",
    "load_synthetic",
    "get_dataset",
    "generation_speed",
    "SYNTHETIC",
    "make_splits",
    "labeled_subset",
    "labeled_count",
]
