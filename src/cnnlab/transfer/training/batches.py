"""Where the loop's batches come from: decoded images, or cached backbone features.

Both are a ``BatchSource``: training batches in the sampler's order, validation batches in
file order, and the ``network`` that turns either into logits. The loop (``loop.py``) sees
only that interface, so the feature cache of the ``head`` strategy is a second source, not a
branch in every step.

Decoded images come from the on-disk image cache (``data/cache.py``): datasets index its
memory map, so only the batches in flight are in memory. Under torchrun (``World``) each
process's sampler yields its share of the epoch and ``val_batches`` its share of validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from cnnlab.transfer.models import head_dropout, head_name
from cnnlab.transfer.training.distributed import World
from cnnlab.transfer.training.features import Backbone, FeatureCache
from cnnlab.transfer.training.transforms import normalize, to_tensor_batch, train_transform

if TYPE_CHECKING:
    from cnnlab.console import Advance
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.folders import LoadedSplit
    from cnnlab.transfer.data.mapped import ImageRows
    from cnnlab.transfer.models import Preprocessing

Transform = Callable[[torch.Tensor], torch.Tensor]


class BatchSource(Protocol):
    """The inputs of one epoch and the module that maps them to class logits."""

    network: nn.Module  # trained by the loop and evaluated on ``val_batches``
    steps: int  # training batches per epoch

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs on the device, labels) in the sampler's order: one epoch."""
        ...

    def val_batches(self) -> Iterator[torch.Tensor]:
        """Validation inputs on the device, in file order, without augmentation."""
        ...


def drops_last(n_images: int, batch_size: int) -> bool:
    """Whether an epoch drops its last, incomplete batch: a batch of one breaks BatchNorm in
    training, so it is dropped unless the whole split fits in one batch."""
    return n_images > batch_size


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return n_images // batch_size if drops_last(n_images, batch_size) else 1


def image_batches(
    images: np.ndarray | ImageRows,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str,
    channels_last: bool = True,
    batch_size: int = 64,
) -> Iterator[torch.Tensor]:
    """Normalised batches of uint8 NHWC ``images`` on ``device``, in order, unaugmented."""
    for start in range(0, len(images), batch_size):
        batch = to_tensor_batch(images[start : start + batch_size]).to(device)
        yield normalize(batch, mean, std, channels_last)


def my_share(images: np.ndarray | ImageRows, world: World) -> np.ndarray | ImageRows:
    """This process's share of ``images`` (all of them in a single process; no copy of
    the mapped cache's images)."""
    return images.take(world.shard(len(images)), axis=0) if world.active else images


class ImageArrayDataset(Dataset[tuple[torch.Tensor, int]]):
    """Cached uint8 images as (CHW uint8 tensor, label), augmented per image; each item is
    read from the image cache's memory map when the sampler asks for it."""

    def __init__(
        self, images: np.ndarray | ImageRows, labels: np.ndarray, transform: Transform | None
    ):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])


class ImageSource:
    """Decoded images: augmented per image in DataLoader workers, normalised on the device."""

    def __init__(
        self,
        model: nn.Module,
        train: LoadedSplit,
        val: LoadedSplit,
        cfg: TransferConfig,
        sampler: Sampler[int],
        pre: Preprocessing,
        device: torch.device,
        channels_last: bool,
        world: World = World(),
    ):
        self.network = model
        self.steps = steps_per_epoch(len(sampler), cfg.batch_size)  # per process
        self.val_images = my_share(val.images, world)
        self.mean, self.std = pre.mean, pre.std
        self.device, self.channels_last = device, channels_last
        transform = train_transform(cfg.augment, cfg.image_size)
        self.loader = DataLoader(
            ImageArrayDataset(train.images, train.labels, transform),
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            drop_last=drops_last(len(sampler), cfg.batch_size),
            persistent_workers=cfg.workers > 0,
        )

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in self.loader:
            x = xb.to(self.device, non_blocking=True)
            yield normalize(x, self.mean, self.std, self.channels_last), yb

    def val_batches(self) -> Iterator[torch.Tensor]:
        return image_batches(self.val_images, self.mean, self.std, self.device, self.channels_last)


class FeatureSource:
    """Backbone features computed once (``FeatureCache``): only the head trains on them.

    The cache holds the features the head's Dropout (``models.head_dropout``) would receive,
    computed in eval mode; ``train_batches`` applies that dropout at the model's own rate, as
    its forward pass would in training (without it, Lite's and EfficientNet's 0.2 never
    acted on the ``head`` strategy). Validation batches are never dropped.
    """

    def __init__(
        self,
        head: nn.Module,
        cache: FeatureCache,
        labels: np.ndarray,
        val_features: torch.Tensor,
        sampler: Sampler[int],
        batch_size: int,
        generator: torch.Generator,
        dropout: float = 0.0,
    ):
        self.network, self.cache, self.val_features = head, cache, val_features
        self.dropout = dropout
        self.labels = torch.as_tensor(labels)
        self.sampler, self.batch_size, self.generator = sampler, batch_size, generator
        self.drop_last = drops_last(len(sampler), batch_size)
        self.steps = steps_per_epoch(len(sampler), batch_size)

    @classmethod
    def build(
        cls,
        backbone: Backbone,
        train: LoadedSplit,
        val: LoadedSplit,
        cfg: TransferConfig,
        sampler: Sampler[int],
        generator: torch.Generator,
        progress: Advance | None = None,
        world: World = World(),
    ) -> FeatureSource:
        """Run the backbone over every training view and the validation images, once (under
        torchrun each process runs its share, and the training features are gathered)."""
        cache = FeatureCache.build(
            backbone,
            my_share(train.images, world),
            cfg.augment,
            cfg.image_size,
            cfg.feature_views,
            cfg.seed + world.rank,  # the processes' shares are different images
            progress,
        )
        if world.active:
            cache = FeatureCache(torch.stack([world.gather(v, len(train)) for v in cache.views]))
        val_features = backbone.features(my_share(val.images, world), progress=progress)
        head = backbone.model.get_submodule(head_name(backbone.model))
        drop = head_dropout(backbone.model)
        return cls(
            head, cache, train.labels, val_features, sampler, cfg.batch_size, generator,
            drop.p if drop is not None else 0.0,
        )  # fmt: skip

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(self.sampler))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            x = self.cache.batch(idx, self.generator)
            if self.dropout > 0:  # a new mask every step, from torch's seeded generator
                x = nn.functional.dropout(x, self.dropout, training=True)
            yield x, self.labels[idx]

    def val_batches(self) -> Iterator[torch.Tensor]:
        yield self.val_features  # a linear head on N x D features: one batch is cheap
