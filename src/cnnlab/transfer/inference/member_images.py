"""Each ensemble member's own pixels, so that members may preprocess differently.

An ensemble of EfficientNet-Lite0 (224 px), Lite1 (240) and Lite2 (260), or of runs with and
without ``--contrast clahe``, is averaged only if each member sees every image exactly as it
would alone: then the ensemble's probabilities are the mean of its members' own, and each
member sees the pixels it was trained and validated on. Only the classes must match.

A file is read once and decoded once per distinct image size; members of one size share that
decode, contrast is applied once per (size, contrast), and mean and std per member when its
batches are made (``scoring.views_proba``). Not one decode resized for every member: the
decoder resizes while decoding (a large JPEG is decoded at a reduced scale, ``Image.draft``),
as training read the images, and a member given a resized full decode would see pixels
slightly different from those it learned on. ``evaluate`` reads a folder through the image
cache (``folders.load_split``), which keeps each size's decode across commands.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.data.image_files import MAX_PIXELS, ImageTooLarge
from cnnlab.errors import CnnlabError
from cnnlab.transfer.data.contrast import contrasted
from cnnlab.transfer.data.folders import LoadedSplit, SplitFiles, load_split
from cnnlab.transfer.data.images import load_views

if TYPE_CHECKING:
    from cnnlab.transfer.checkpoint import Checkpoint

Pixels = tuple[int, str]  # (image size, contrast): what a member's decoded images depend on


def pixels_of(ckpt: Checkpoint) -> Pixels:
    return (int(ckpt.image_size), ckpt.contrast)


def needed(ckpts: Sequence[Checkpoint]) -> list[Pixels]:
    """The distinct pixel settings of ``ckpts``, in member order."""
    return list(dict.fromkeys(pixels_of(c) for c in ckpts))


def preprocessing(ckpt: Checkpoint) -> dict[str, Any]:
    """What a member does to an image before its network sees it (named in every output)."""
    return {
        "arch": ckpt.arch,
        "image_size": int(ckpt.image_size),
        "mean": [round(float(v), 6) for v in ckpt.mean],
        "std": [round(float(v), 6) for v in ckpt.std],
        "contrast": ckpt.contrast,
    }


@dataclass(frozen=True)
class MemberImages:
    """The same images, in the same order, as each pixel setting of an ensemble needs them."""

    by_pixels: dict[Pixels, Any]  # uint8 N x S x S x 3: arrays or image-cache rows

    def of(self, ckpt: Checkpoint) -> Any:
        return self.by_pixels[pixels_of(ckpt)]

    def __len__(self) -> int:
        return len(next(iter(self.by_pixels.values())))


def stack(loaded: Sequence[dict[Pixels, np.ndarray]], views: Sequence[Pixels]) -> MemberImages:
    """Per-file ``load_views`` results as one stack per pixel setting."""
    return MemberImages(
        {
            v: np.stack([one[v] for one in loaded])
            if loaded
            else np.zeros((0, v[0], v[0], 3), np.uint8)
            for v in views
        }
    )


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus every visible file under directories given (sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(q.startswith(".") for q in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise CnnlabError(f"not found: {path}")
    if not files:
        raise CnnlabError(f"no files to predict in {', '.join(map(str, inputs))}")
    return files


def load_files(
    paths: Sequence[Path], ckpts: Sequence[Checkpoint], max_pixels: int = MAX_PIXELS
) -> tuple[MemberImages, list[Path], list[tuple[Path, str]]]:
    """Every member's images of the readable files, and (path, reason) for the rest.

    An image above ``max_pixels`` is refused, not listed: the limit is the user's setting, and
    a file beyond it is either an attack or needs a deliberately raised ``--max-pixels``.
    """
    views = needed(ckpts)
    loaded, ok, failed = [], [], []
    for path in paths:
        try:
            loaded.append(load_views(path, views, max_pixels))
            ok.append(path)
        except ImageTooLarge as e:
            raise CnnlabError(f"refusing {path}: {e}") from None
        except ValueError as e:
            failed.append((path, str(e)))
    return stack(loaded, views), ok, failed


def load_labelled(
    files: SplitFiles, ckpts: Sequence[Checkpoint], max_pixels: int = MAX_PIXELS
) -> tuple[MemberImages, LoadedSplit]:
    """Every member's images of a labelled folder through the image cache, and the split
    (paths, labels, skipped files) they belong to: the files every size could read."""
    views = needed(ckpts)
    sizes = list(dict.fromkeys(size for size, _ in views))
    splits = {size: load_split(files, size, max_pixels=max_pixels) for size in sizes}
    first = splits[sizes[0]]
    readable = set.intersection(*({str(p) for p in s.paths} for s in splits.values()))
    split = first.select(np.asarray([i for i, p in enumerate(first.paths) if str(p) in readable]))
    skipped = dict(r for s in splits.values() for r in s.skipped)  # path -> reason, once
    split.skipped = sorted(skipped.items())
    by_pixels = {}
    for size, contrast in views:
        own = splits[size]
        where = {str(p): i for i, p in enumerate(own.paths)}
        rows = own.images.take(np.asarray([where[str(p)] for p in split.paths]), axis=0)
        by_pixels[(size, contrast)] = contrasted(rows, contrast)
    return MemberImages(by_pixels), split


def unlabelled_images(
    folder: str | os.PathLike | None, ckpts: Sequence[Checkpoint], max_pixels: int = MAX_PIXELS
) -> tuple[MemberImages, str | os.PathLike] | None:
    """(every member's images of the readable files under ``folder``, ``folder``) for
    ``--adapt-bn``: every file, whatever the folder's structure; no label is read."""
    if folder is None:
        return None
    if not Path(folder).is_dir():
        raise CnnlabError(f"--adapt-bn: not a folder: {folder}")
    try:
        paths = list_images([folder])
    except CnnlabError:
        raise CnnlabError(f"--adapt-bn: no image files under {folder}") from None
    images, _, _ = load_files(paths, ckpts, max_pixels)
    return images, folder
