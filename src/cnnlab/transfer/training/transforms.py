"""Named train/eval transform presets (as in torchvision's references/classification).

Images arrive already decoded and resized to ``image_size`` (see ``data.folders.load_split``), as
uint8 CHW tensors. Augmentations run per image on uint8; normalisation runs once per batch on
the device (``normalize``), which is cheaper than per image.

torch and torchvision are imported inside the functions, unlike the rest of ``transfer/``:
``config.py`` reads ``AUGMENTS`` from here, and the CLI builds its options from the config in
a process that must not load torch (TensorFlow and torch must never share a process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

AUGMENTS = ("none", "basic", "strong")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(augment: str, image_size: int) -> Callable | None:
    """The per-image training augmentation of a preset; None when there is none."""
    from torchvision.transforms import v2

    if augment == "none":
        return None
    if augment == "basic":  # the seed recipe: random horizontal flip only
        return v2.RandomHorizontalFlip()
    if augment == "strong":
        return v2.Compose(
            [
                # crops keep >= 70% of the image: a lesion near the border should survive
                v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),  # patients are never positioned exactly upright
                v2.ColorJitter(brightness=0.2, contrast=0.2),  # exposure varies by machine
                v2.TrivialAugmentWide(),  # no policy to tune, near RandAugment's accuracy
                v2.RandomErasing(p=0.25, value=0),  # forces use of more than one region
            ]
        )
    raise ValueError(f"unknown augment preset {augment!r}")


def view_count(augment: str, views: int) -> int:
    """How many augmented views of each image the frozen-backbone feature cache holds.

    ``basic`` has exactly two distinct views (as is and mirrored), so caching both is the
    full augmentation, not an approximation; ``strong`` is sampled ``views`` times.
    """
    return {"none": 1, "basic": 2}.get(augment, max(1, views))


def view_transform(augment: str, image_size: int, view: int) -> Callable | None:
    """The transform producing view number ``view`` for the feature cache (view 0 = as is)."""
    from torchvision.transforms import v2

    if view == 0:
        return None
    if augment == "basic":
        return v2.RandomHorizontalFlip(p=1.0)
    return train_transform(augment, image_size)


def to_tensor_batch(images: np.ndarray, transform: Callable | None = None) -> torch.Tensor:
    """N x H x W x 3 uint8 array -> N x 3 x H x W uint8 tensor, ``transform`` per image."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if transform is not None:
        x = torch.stack([transform(img) for img in x])
    return x


def normalize(
    batch_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool
) -> torch.Tensor:
    """uint8 NCHW batch -> normalised float32, optionally in channels_last memory format."""
    import torch

    x = batch_uint8.float().div_(255)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x = x.sub_(m).div_(s)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
