"""Frozen-backbone feature cache for the ``head`` strategy.

When only the classifier trains, the backbone computes the same features for the same input
every epoch, and that forward pass is nearly all the cost. So it runs once per image and
augmented view; the epochs then train a linear layer on cached vectors, hundreds of times
faster. The number of views is bounded (``view_count``): epoch ``e`` draws one of them per
image, which keeps augmentation's benefit at a fixed, known cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from cnnlab.transfer.presets import normalize, view_count, view_transform


@contextlib.contextmanager
def headless(model, head_name: str) -> Iterator:
    """Temporarily replace the head by Identity, so the model outputs its features."""
    from torch import nn

    head = model.get_submodule(head_name)
    model.set_submodule(head_name, nn.Identity())
    try:
        yield model
    finally:
        model.set_submodule(head_name, head)


def to_tensor_batch(images: np.ndarray, transform: Callable | None = None):
    """N x H x W x 3 uint8 array -> N x 3 x H x W uint8 tensor, ``transform`` per image."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if transform is not None:
        x = torch.stack([transform(img) for img in x])
    return x


def extract(
    model,
    head_name: str,
    images: np.ndarray,
    mean,
    std,
    device,
    transform: Callable | None = None,
    batch_size: int = 64,
    channels_last: bool = True,
    progress: Callable[[int], None] | None = None,
):
    """Backbone features (N x D float32 tensor on ``device``) of uint8 NHWC ``images``."""
    import torch

    out = []
    was_training = model.training
    model.eval()  # frozen BatchNorm: running statistics, not batch statistics
    with headless(model, head_name), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_tensor_batch(images[start : start + batch_size], transform)
            x = normalize(batch.to(device), mean, std, channels_last)
            out.append(model(x).float().flatten(1))
            if progress is not None:
                progress(len(batch))
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0, device=device)


class FeatureCache:
    """Features of every training image under a bounded number of augmented views."""

    def __init__(self, views):
        self.views = views  # V x N x D tensor

    @classmethod
    def build(
        cls,
        model,
        head_name,
        images,
        mean,
        std,
        device,
        augment,
        image_size,
        max_views,
        seed,
        batch_size=64,
        channels_last=True,
        progress=None,
    ) -> FeatureCache:
        import torch

        views = []
        for v in range(view_count(augment, max_views)):
            torch.manual_seed(seed + v)  # each random view is reproducible
            transform = view_transform(augment, image_size, v)
            views.append(
                extract(
                    model,
                    head_name,
                    images,
                    mean,
                    std,
                    device,
                    transform,
                    batch_size,
                    channels_last,
                    progress,
                )
            )
        return cls(torch.stack(views))

    @property
    def n_views(self) -> int:
        return int(self.views.shape[0])

    def batch(self, index, generator=None):
        """Features of images ``index``, each from a randomly drawn view."""
        import torch

        index = torch.as_tensor(index, device=self.views.device)
        if self.n_views == 1:
            return self.views[0, index]
        view = torch.randint(self.n_views, (len(index),), generator=generator).to(index.device)
        return self.views[view, index]
