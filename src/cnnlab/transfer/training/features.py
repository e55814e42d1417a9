"""Frozen-backbone feature cache for the ``head`` strategy.

When only the classifier trains, the backbone computes the same features for the same input
every epoch, and that forward pass is nearly all the cost. So it runs once per image and
augmented view; the epochs then train a linear layer on cached vectors, hundreds of times
faster. The number of views is bounded (``view_count``): epoch ``e`` draws one of them per
image, which keeps augmentation's benefit at a fixed, known cost. On a CPU that one pass
runs through ONNX Runtime (``inference/engines.py``): 4-10x faster than torch eager for the
same features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cnnlab.transfer.inference.engines import CHECK_IMAGES, Inference, Say, prepare, stderr_note
from cnnlab.transfer.models import head_name
from cnnlab.transfer.training.transforms import (
    normalize,
    to_tensor_batch,
    view_count,
    view_transform,
)

if TYPE_CHECKING:
    from cnnlab.console import Advance


@contextlib.contextmanager
def headless(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Temporarily replace the head ``name`` by Identity, so the model outputs its features."""
    head = model.get_submodule(name)
    model.set_submodule(name, nn.Identity())
    try:
        yield model
    finally:
        model.set_submodule(name, head)


@dataclass
class Backbone:
    """A classifier run without its head, on uint8 images normalised as it was trained.

    ``engine`` (``engines.ENGINES``) picks torch or ONNX Runtime for the forward passes; the
    choice is made once, at ``prepare`` or the first ``features`` call, and kept: one export
    and one check per run, however many views and splits then go through it.
    """

    model: nn.Module
    mean: Sequence[float]
    std: Sequence[float]
    device: torch.device | str
    channels_last: bool = True
    batch_size: int = 64
    engine: str = "torch"
    say: Say = stderr_note  # where the engine's one line goes (the run's console in ``fit``)
    inference: Inference | None = field(default=None, init=False, repr=False)

    def prepare(self, images: np.ndarray, expected_images: int) -> Inference:
        """Choose the engine for a job of ``expected_images``, checked on ``images``' first."""
        if self.inference is None:
            model, device = self.model, torch.device(self.device)
            batch = to_tensor_batch(images[:CHECK_IMAGES]).to(device)
            check = normalize(batch, self.mean, self.std, channels_last=False)
            was_training = model.training
            model.eval()
            with headless(model, head_name(model)):
                self.inference = prepare(
                    model, self.engine, device, check, expected_images, self.channels_last, self.say
                )
            model.train(was_training)
        return self.inference

    def features(
        self,
        images: np.ndarray,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: Advance | None = None,
    ) -> torch.Tensor:
        """Features (N x D float32 on ``device``) of uint8 NHWC ``images``, each transformed."""
        if not len(images):
            return torch.zeros(0, 0, device=self.device)
        inference = self.prepare(images, len(images))
        model, out = self.model, []
        was_training = model.training
        model.eval()  # frozen BatchNorm: running statistics, not batch statistics
        # torch's network is the model itself, which must then run without its head
        with headless(model, head_name(model)), torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = to_tensor_batch(images[start : start + self.batch_size], transform)
                x = normalize(batch.to(self.device), self.mean, self.std, inference.channels_last)
                out.append(inference.network(x).float().flatten(1).to(self.device))
                if progress is not None:
                    progress(len(batch))
        model.train(was_training)
        return torch.cat(out)


class FeatureCache:
    """Features of every training image under a bounded number of augmented views."""

    def __init__(self, views: torch.Tensor):
        self.views = views  # V x N x D

    @classmethod
    def build(
        cls,
        backbone: Backbone,
        images: np.ndarray,
        augment: str,
        image_size: int,
        max_views: int,
        seed: int,
        progress: Advance | None = None,
    ) -> FeatureCache:
        """Run ``backbone`` over ``images`` once per view of the ``augment`` preset."""
        views, n_views = [], view_count(augment, max_views)
        backbone.prepare(images, n_views * len(images))  # one engine for every view
        for v in range(n_views):
            torch.manual_seed(seed + v)  # each random view is reproducible
            transform = view_transform(augment, image_size, v)
            views.append(backbone.features(images, transform, progress))
        return cls(torch.stack(views))

    @property
    def n_views(self) -> int:
        return int(self.views.shape[0])

    def batch(
        self, index: torch.Tensor | Sequence[int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Features of images ``index``, each from a randomly drawn view."""
        index = torch.as_tensor(index, device=self.views.device)
        if self.n_views == 1:
            return self.views[0, index]
        view = torch.randint(self.n_views, (len(index),), generator=generator).to(index.device)
        return self.views[view, index]
