"""Shared fixtures: small synthetic image folders, the real chest X-ray set, one trained run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
CHEST = SHARED_DATA / "chest-xray-pneumonia"


def synthetic_image(label: int, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """Smooth random texture plus a bright blob on the left (label 0) or the right (label 1).

    Smooth like a photograph (8x8 noise upsampled), so re-encoding it changes little.
    """
    coarse = Image.fromarray(rng.integers(0, 110, (8, 8, 3)).astype(np.uint8))
    img = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC)).copy()
    x0 = 4 if label == 0 else size // 2 + 2
    y0 = int(rng.integers(4, size // 2))
    img[y0 : y0 + size // 3, x0 : x0 + size // 3 - 2] = rng.integers(200, 255)
    return img


def write_class_folders(root: Path, counts: dict[str, int], seed: int = 0, fmt="PNG") -> Path:
    rng = np.random.default_rng(seed)
    for label, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            ext = "png" if fmt == "PNG" else "jpg"
            Image.fromarray(synthetic_image(label % 2, rng)).save(
                root / name / f"{i:03d}.{ext}", fmt
            )
    return root


@pytest.fixture(autouse=True, scope="session")
def _image_cache(tmp_path_factory):
    """Decoded images go to this session's own cache, never the user's ~/.cache/cnnlab
    (subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cnnlab-cache")))
        yield


@pytest.fixture
def folder(tmp_path) -> Path:
    """A flat folder: classes a (24 images) and b (16 images)."""
    return write_class_folders(tmp_path / "data", {"a": 24, "b": 16})


@pytest.fixture(scope="session")
def chest() -> Path:
    if not CHEST.is_dir():
        pytest.skip(f"real data absent: {CHEST} (see ../shared/data/DATA.md)")
    return CHEST


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One small run (resnet18 from random init, 32 px, `full`) shared by the slow tests."""
    from cnnlab.console import make_console
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.pipeline import train

    base = tmp_path_factory.mktemp("run")
    data = write_class_folders(base / "data", {"a": 40, "b": 40}, seed=1)
    cfg = TransferConfig(
        weights="none",
        image_size=32,
        strategy="full",
        epochs=4,
        batch_size=16,
        test_size=0.2,
        val_size=0.2,
        lr=1e-3,
    )
    run_dir, _ = train(data, base / "run", cfg, console=make_console(quiet=True))
    return run_dir


@pytest.fixture(scope="session")
def make_folders():
    """``make_folders(root, {"class": n, ...}, seed, fmt)`` writes synthetic class folders."""
    return write_class_folders


@pytest.fixture
def make_image():
    return synthetic_image


def write_patients(
    root: Path, patients: dict[str, list[int]], seed: int = 0, mislabelled: int = 0
) -> Path:
    """``patients[class] = [patient id, ...]``, one image per entry, named personP_I.png;
    the first ``mislabelled`` images of each class look like the other class."""
    rng = np.random.default_rng(seed)
    for label, (name, ids) in enumerate(patients.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, pid in enumerate(ids):
            image = Image.fromarray(synthetic_image((label + (i < mislabelled)) % 2, rng))
            image.save(root / name / f"person{pid}_{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def make_patients():
    """``make_patients(root, {"class": [patient id per image, ...]}, seed, mislabelled)``."""
    return write_patients


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory holding a random-init resnet18 checkpoint at 32 px (no training),
    for the fault tests that need a model but no trained one."""
    import torch

    from cnnlab.transfer import checkpoint as C
    from cnnlab.transfer.models import build_model

    root = tmp_path_factory.mktemp("run") / "run"
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none", image_size=32)
    C.save(
        C.Checkpoint("resnet18", ["a", "b"], 32, [0.5] * 3, [0.25] * 3, model.state_dict()),
        root / "best.pt",
    )
    return root


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Path:
    """Like ``run_dir`` (same classes, random init, other weights), but preprocessing every
    image otherwise: 48 px, ImageNet mean and std, histogram equalisation; an ensemble
    member that sees other pixels than ``run_dir``'s."""
    import torch

    from cnnlab.transfer import checkpoint as C
    from cnnlab.transfer.models import build_model

    root = tmp_path_factory.mktemp("wide") / "wide"
    torch.manual_seed(1)
    model = build_model("resnet18", 2, weights="none", image_size=48)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    weights = model.state_dict()
    C.save(
        C.Checkpoint("resnet18", ["a", "b"], 48, mean, std, weights, contrast="equalize"),
        root / "best.pt",
    )
    return root
