"""The contract between a method and the training loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.sample import DatasetSpec


@dataclass
class Batch:
    """A batch as the loop hands it to a method (tensors already on the device).

    ``images`` are float in [0, 1], ``(B, 3, H, W)``; keypoints are image pixels.
    For unlabeled batches ``keypoints``/``visibility`` still hold the ground truth
    when it exists, but methods must only use them for diagnostics.
    """

    images: torch.Tensor
    keypoints: torch.Tensor | None = None
    visibility: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None


class Method:
    """Base class. Subclasses set ``name``, ``version`` (bump it whenever the
    method's numbers could change: the results store keys on it), ``loss_names``
    and ``default_weights``, optionally an ``Options`` dataclass."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    Options: ClassVar[type | None] = None
    loss_names: ClassVar[tuple[str, ...]] = ()
    default_weights: ClassVar[dict[str, float]] = {}
    uses_unlabeled: ClassVar[bool] = False

    def __init__(self, config: Any, spec: DatasetSpec, image_size: tuple[int, int],
                 device: torch.device, generator: torch.Generator):
        self.config = config
        self.options = config.options()
        self.spec = spec
        self.image_size = image_size
        self.device = device
        self.generator = generator
        self.diagnostics: dict[str, float] = {}
        self.module = self.build().to(device)

    # -- to implement -------------------------------------------------------
    def build(self) -> nn.Module:
        raise NotImplementedError

    def training_step(self, labeled: Batch, unlabeled: Batch | None, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (points in image px (B, K, 2), confidence (B, K))."""
        raise NotImplementedError

    # -- optional hooks -------------------------------------------------------
    @classmethod
    def prepare_data(cls, config: Any, data: Any, device: torch.device) -> Any:
        """Called once, before the method is built, with the run's :class:`~landmark_study.train.RunData`.

        A method that trains on something other than the ground-truth labels
        (pseudo-labels from a teacher run, generic keypoints, ...) returns a
        new RunData here; ``val``/``test`` keep the ground truth, which is only
        used for evaluation. A teacher is obtained with
        :func:`landmark_study.runs.trained_method`. Default: unchanged.
        """
        return data

    def evaluate(self, ds: Any, device: torch.device) -> dict[str, Any]:
        """Metrics on ``ds`` (periodic validation and the final test). Every scalar is
        logged as ``val/<name>`` in the history; the final test dict is ``final``.
        Default: PCK@0.05/0.1/0.2 of :meth:`predict` against the ground truth."""
        from ..train import evaluate

        return evaluate(self, ds, device)

    # -- provided -------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        w = dict(self.default_weights)
        w.update(self.config.loss_weights)
        return w

    def parameters(self):
        return self.module.parameters()

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.generator.set_state(state["generator"])
