"""Opt-in adaptation to a new site from its unlabelled images: BatchNorm statistics
re-estimated there (AdaBN, Li et al. 2016), never applied silently.

A site shift (another scanner, exposure, field of view) moves the activations' means and
variances; BatchNorm normalises with the training site's running statistics, so the next
layer sees inputs it was not trained on. Re-estimating those statistics on the new site's
images, with every weight unchanged, is the cheapest correction that needs no label: the
images are forwarded once, without gradients, with each BatchNorm layer in train mode and a
cumulative average (momentum None, so every image weighs the same whatever the batch order).
Only files are read: any folder works, class folders or not, and no label is looked at.

The adapted model lives in memory for one command; best.pt is never changed. The torch engine
runs it: an ONNX export of the adapted weights would be a new export for every folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.transfer.training.batches import image_batches

BATCH_SIZE = 32


def adaptation_line(n_images: int, folder: str | os.PathLike) -> str:
    """What every output of an adapted model says, word for word."""
    return f"adapted: BN re-estimated on {n_images} unlabelled images from {folder}"


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reestimate_batchnorm(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str,
) -> nn.Module:
    """Replace every BatchNorm layer's running mean and variance by those of ``images``
    (uint8 NHWC) in ``model``; the weights stay; the model is returned in eval mode."""
    layers = batchnorm_layers(model)
    if not layers:
        raise CnnlabError("--adapt-bn: this model has no BatchNorm layers to re-estimate")
    if len(images) < 2:
        raise CnnlabError(f"--adapt-bn needs 2 or more readable images, got {len(images)}")
    # a batch of one image has no variance in the 1x1 maps of the last stage
    size = BATCH_SIZE + 1 if len(images) % BATCH_SIZE == 1 else BATCH_SIZE
    model.eval()
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over all batches
        layer.train()
    with torch.no_grad():
        for batch in image_batches(images, mean, std, device, False, size):
            model(batch)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    return model.eval()
