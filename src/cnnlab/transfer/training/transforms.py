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

AUGMENTS = ("none", "basic", "strong", "radiograph")
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
    if augment == "radiograph":
        return radiograph_transform(image_size)
    raise ValueError(f"unknown augment preset {augment!r}")


def radiograph_transform(image_size: int) -> Callable:
    """Variations a radiograph (or another grey medical image) plausibly has between sites:
    field of view, positioning, exposure, detector sharpness and noise. Nothing that makes an
    image no X-ray could show (solarize, posterize, hue), and grey stays grey (the noise is
    the same in the three channels). Magnitudes fixed in advance, not tuned on any test set.
    """
    from torchvision.transforms import v2

    return v2.Compose(
        [
            # field of view: >= 70% of the area, aspect within 10%: a lesion near the border
            # survives and the anatomy keeps its proportions
            v2.RandomResizedCrop(
                image_size, scale=(0.7, 1.0), ratio=(0.9, 1 / 0.9), antialias=True
            ),
            # positioning: a patient is never exactly upright or centred; black fill, the
            # background of a radiograph
            v2.RandomAffine(degrees=10, translate=(0.06, 0.06), scale=(0.9, 1.1), fill=0),
            v2.RandomHorizontalFlip(),
            # exposure and processing differ by machine and site
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            RandomGamma(0.8, 1.25),
            # detectors differ in sharpness and noise
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.0))], p=0.2),
            GreyNoise(0.03, p=0.3),
        ]
    )


class RandomGamma:
    """``x -> 255 (x / 255) ** gamma`` on uint8, gamma log-uniform in [low, high]: the
    detector's response curve, which brightness and contrast (linear) do not reach."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import torch
        from torchvision.transforms.v2 import functional as F

        u = float(torch.rand(()))
        gamma = self.low * (self.high / self.low) ** u
        return F.adjust_gamma(img, gamma)


class GreyNoise:
    """Gaussian noise of standard deviation up to ``sigma`` (of the full range) on uint8,
    the same in every channel, with probability ``p``; rounded and clipped to [0, 255].
    torchvision's GaussianNoise takes float images only, and adds colour noise to grey."""

    def __init__(self, sigma: float, p: float):
        self.sigma, self.p = sigma, p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import torch

        if float(torch.rand(())) >= self.p:
            return img
        std = float(torch.rand(())) * self.sigma * 255
        noise = torch.randn((1, *img.shape[-2:])) * std
        return (img.float() + noise).round_().clamp_(0, 255).to(torch.uint8)


def view_count(augment: str, views: int) -> int:
    """How many augmented views of each image the frozen-backbone feature cache holds.

    ``basic`` has exactly two distinct views (as is and mirrored), so caching both is the
    full augmentation, not an approximation; ``strong`` and ``radiograph`` are sampled
    ``views`` times.
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
