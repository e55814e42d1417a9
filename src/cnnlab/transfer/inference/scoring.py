"""What turns images into probabilities at predict, evaluate and serve: one run or an
ensemble of runs, each opt-in adapted to a new site and with test-time augmentation.

- **Ensemble**: the mean of the members' softmax probabilities. Members must have the same
  classes in the same order, else the average would mix different questions: refused in one
  line. Each member preprocesses every image its own way (size, contrast, mean, std:
  ``member_images.py``), so members as different as EfficientNet-Lite0 at 224 px and Lite2
  at 260 px average what each would say alone.
- **TTA** (``--tta``): each member's probabilities are the mean of its softmax on the image
  and on its horizontal flip (``TTA``); flips are what every recipe trains with, so the
  flipped view is one the model has learned. One definition, used everywhere.
- **BatchNorm adaptation** (``--adapt-bn DIR``, ``adapt.py``): each member's BatchNorm
  statistics re-estimated on DIR's unlabelled images before anything is scored.

``Scorer.record`` is what the outputs say about all three, so nothing is applied silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.inference.adapt import adaptation_line, reestimate_batchnorm
from cnnlab.transfer.inference.engines import Say, for_images, stderr_note
from cnnlab.transfer.inference.member_images import MemberImages, preprocessing
from cnnlab.transfer.training.batches import image_batches
from cnnlab.transfer.training.loop import probabilities

if TYPE_CHECKING:
    from cnnlab.console import Advance
    from cnnlab.transfer.results import Inference

TTA = "mean of the softmax of the image and of its horizontal flip"


def views_proba(
    network: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str,
    tta: bool = False,
    progress: Advance | None = None,
) -> np.ndarray:
    """Class probabilities of uint8 NHWC ``images``; with ``tta``, the ``TTA`` average."""
    proba = probabilities(network, image_batches(images, mean, std, device, False), progress)
    if not tta:
        return proba
    flipped = np.ascontiguousarray(np.asarray(images)[:, :, ::-1])  # NHWC: W is axis 2
    return (proba + probabilities(network, image_batches(flipped, mean, std, device, False))) / 2


def load_members(sources: Sequence[str | os.PathLike]) -> list[ckpt_io.Checkpoint]:
    """The checkpoints of ``sources`` (run directories or files), refused in one line unless
    all have the same classes in the same order (their preprocessing may differ)."""
    if len({Path(s).resolve() for s in sources}) != len(sources):
        raise CnnlabError("an ensemble lists a run twice: give each run once")
    ckpts = [ckpt_io.load(s) for s in sources]
    first = ckpts[0]
    for source, ckpt in zip(sources[1:], ckpts[1:], strict=True):
        if ckpt.class_names != first.class_names:
            raise CnnlabError(
                f"{source} and {sources[0]} have different classes "
                f"({', '.join(ckpt.class_names)} vs {', '.join(first.class_names)}): an "
                "ensemble averages runs with the same classes in the same order"
            )
    return ckpts


def deployed(ckpts: list[ckpt_io.Checkpoint]) -> list[tuple[float | None, str | None]]:
    """Each checkpoint's own (threshold, policy): runs before policies chose by Youden."""
    return [(c.threshold, c.extra.get("threshold_policy")) for c in ckpts]


@dataclass
class Scorer:
    sources: list[str]
    ckpts: list[ckpt_io.Checkpoint]
    networks: list[nn.Module]  # torch models or ONNX Runtime sessions, one per member
    device: torch.device
    tta: bool = False
    adapted: str | None = None  # adaptation_line(...) when --adapt-bn was given
    notes: list[str] = field(default_factory=list)

    @property
    def ckpt(self) -> ckpt_io.Checkpoint:
        """The first member: its classes are every member's."""
        return self.ckpts[0]

    def proba(self, images: MemberImages, progress: Advance | None = None) -> np.ndarray:
        """The members' mean probabilities, each member on its own pixels of the images."""
        each = [
            views_proba(
                net, images.of(c), c.mean, c.std, self.device, self.tta, None if i else progress
            )
            for i, (net, c) in enumerate(zip(self.networks, self.ckpts, strict=True))
        ]
        return np.mean(each, axis=0) if len(each) > 1 else each[0]

    def record(self) -> Inference:
        """What metrics.json, the CSV and the console say about how probabilities came."""
        many = len(self.ckpts) > 1
        return {
            "runs": list(self.sources),
            "members": [
                {"run": s, **preprocessing(c)}  # type: ignore[typeddict-item]
                for s, c in zip(self.sources, self.ckpts, strict=True)
            ],
            "ensemble": f"mean of the softmax of {len(self.ckpts)} runs" if many else None,
            "tta": TTA if self.tta else None,
            "adapted": self.adapted,
            "notes": list(self.notes),
        }


def prepare_scorer(
    sources: Sequence[str | os.PathLike],
    ckpts: list[ckpt_io.Checkpoint],
    device: torch.device,
    engine: str,
    images: MemberImages | None,
    tta: bool = False,
    adapt: tuple[MemberImages, str | os.PathLike] | None = None,
    say: Say = stderr_note,
) -> Scorer:
    """Each member's network (adapted on ``adapt = (unlabelled images, folder)`` first),
    run by ``engine`` as ``engines.for_images`` picks for ``images`` (None: torch, for a page
    that scores uploads one click at a time); adapted ones by torch."""
    if adapt is not None and engine == "onnxruntime":
        raise CnnlabError(
            "--adapt-bn re-estimates BatchNorm in torch and runs the adapted model there: "
            "use --engine torch (or auto)"
        )
    networks, adapted = [], None
    for ckpt in ckpts:
        model = ckpt.build_model().to(device)
        if adapt is not None:
            reestimate_batchnorm(model, adapt[0].of(ckpt), ckpt.mean, ckpt.std, device)
            adapted = adaptation_line(len(adapt[0]), adapt[1])
        if images is None or adapt is not None:
            networks.append(model)
            continue
        own = images.of(ckpt)
        networks.append(for_images(model, own, ckpt.mean, ckpt.std, device, engine, say).network)
    return Scorer([str(s) for s in sources], ckpts, networks, device, tta, adapted)
