"""Frozen-backbone feature cache for the ``head`` strategy.

When only the classifier trains, the backbone computes the same features for the same input
every epoch, and that forward pass is nearly all the cost. So it runs once per image and
augmented view; the epochs then train a linear layer on cached vectors, hundreds of times
faster. The number of views is bounded (``view_count``): epoch ``e`` draws one of them per
image, which keeps augmentation's benefit at a fixed, known cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cnnlab.transfer.models import head_name
from cnnlab.transfer.presets import normalize, to_tensor_batch, view_count, view_transform

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


@dataclass(frozen=True)
class Backbone:
    """A classifier run without its head, on uint8 images normalised as it was trained."""

    model: nn.Module
    mean: Sequence[float]
    std: Sequence[float]
    device: torch.device | str
    channels_last: bool = True
    batch_size: int = 64

    def features(
        self,
        images: np.ndarray,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: Advance | None = None,
    ) -> torch.Tensor:
        """Features (N x D float32 on ``device``) of uint8 NHWC ``images``, each transformed."""
        model, out = self.model, []
        was_training = model.training
        model.eval()  # frozen BatchNorm: running statistics, not batch statistics
        with headless(model, head_name(model)), torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = to_tensor_batch(images[start : start + self.batch_size], transform)
                x = normalize(batch.to(self.device), self.mean, self.std, self.channels_last)
                out.append(model(x).float().flatten(1))
                if progress is not None:
                    progress(len(batch))
        model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 0, device=self.device)


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
        views = []
        for v in range(view_count(augment, max_views)):
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
