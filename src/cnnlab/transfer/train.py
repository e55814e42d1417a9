"""``cnnlab transfer train``: data -> model -> epochs -> checkpoints -> metrics -> report.

Reads top to bottom: ``train`` prepares the data (``prepare_data``), fits (``fit``), then
evaluates the best checkpoint and writes the run directory. Everything happens inside
``run_directory``, so a failed or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.data import LoadedSplit


# -- console and progress -------------------------------------------------------------------
def make_console(quiet: bool = False):
    from rich.console import Console

    return Console(quiet=quiet, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(console, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar; yields ``advance(n)``. Transient: leaves the log readable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # logs and pipes get the per-epoch lines only
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


# -- device ---------------------------------------------------------------------------------
def resolve_device(name: str = "auto"):
    """(torch.device, description): CUDA, then Apple MPS, then CPU unless ``name`` says."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is available here (try --device cpu)")
    if name == "mps" and not has_mps:
        raise CnnlabError("--device mps: Apple MPS is not available here (try --device cpu)")
    if name == "cuda":
        return torch.device("cuda"), f"cuda ({torch.cuda.get_device_name(0)})"
    if name == "mps":
        return torch.device("mps"), "mps (Apple GPU)"
    return torch.device("cpu"), f"cpu ({torch.get_num_threads()} threads)"


# -- data -----------------------------------------------------------------------------------
@dataclass
class Prepared:
    classes: list[str]
    splits: dict[str, LoadedSplit]
    report: dict[str, Any] = field(default_factory=dict)


def prepare_data(data_dir, cfg: TransferConfig, console=None) -> Prepared:
    """Discover, decode (once), split, check quality and leakage, optionally dedupe."""
    from cnnlab.transfer import data as D

    console = console or make_console(quiet=True)
    classes, files = D.discover(data_dir)
    layout = "given" if len(files) > 1 else "carved"
    loaded: dict[str, LoadedSplit] = {}
    for name, f in files.items():
        f = D.limit_files(f, cfg.limit, cfg.seed)
        with progress_bar(console, f"decoding {name}", len(f.paths)) as advance:
            loaded[name] = D.load_split(f, cfg.image_size, advance)
        D.require_every_class(loaded[name], classes)
    skipped = [
        {"split": n, "path": p, "reason": r} for n, s in loaded.items() for p, r in s.skipped
    ]
    for row in skipped:
        console.print(f"[yellow]skipped[/] {row['path']}: {row['reason']}")

    pool = loaded.pop("train")
    carved = []
    if "test" not in loaded and cfg.test_size > 0:
        pool, loaded["test"] = D.carve(pool, cfg.test_size, cfg.seed, "test")
        carved.append("test")
    if "val" not in loaded:
        fraction = cfg.val_size / (1 - cfg.test_size) if "test" in carved else cfg.val_size
        pool, loaded["val"] = D.carve(pool, fraction, cfg.seed + 1, "val")
        carved.append("val")
    splits = {"train": pool, **{k: loaded[k] for k in ("val", "test") if k in loaded}}

    pairs = D.find_duplicates(list(splits.values()), cfg.near_threshold)
    cross = [p for p in pairs if p.split_a != p.split_b]
    if cross:
        console.print(
            f"[yellow]leakage:[/] {len(cross)} image pair(s) appear in two splits "
            f"({sum(p.kind == 'identical' for p in cross)} byte-identical)"
            + ("; removing them (--dedupe)" if cfg.dedupe else "; --dedupe removes them")
        )
    removed: list[str] = []
    if cfg.dedupe and pairs:
        splits, removed = D.drop_duplicates(splits, pairs)
        for split in splits.values():
            D.require_every_class(split, classes)
    report = {
        "data_dir": str(data_dir),
        "layout": layout,
        "carved": carved,
        "classes": classes,
        "counts": {
            n: np.bincount(s.labels, minlength=len(classes)).tolist() for n, s in splits.items()
        },
        "skipped": skipped,
        "duplicates": [vars(p) for p in pairs],
        "duplicates_within_split": sum(p.split_a == p.split_b for p in pairs),
        "duplicates_across_splits": len(cross),
        "removed_by_dedupe": removed,
    }
    return Prepared(classes, splits, report)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """n / (k * count_c): each class contributes equally to the loss (scikit-learn's
    'balanced' weighting)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return len(labels) / (n_classes * np.maximum(counts, 1))


def make_loss(cfg: TransferConfig, labels: np.ndarray, n_classes: int, device):
    import torch
    from torch import nn

    weight = None
    if cfg.balance == "weights":
        weight = torch.tensor(class_weights(labels, n_classes), dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def make_sampler(cfg: TransferConfig, labels: np.ndarray, generator):
    """The epoch's index order: shuffled, or drawn with class-balanced probabilities."""
    import torch
    from torch.utils.data import RandomSampler, WeightedRandomSampler

    if cfg.balance == "sampler":
        per_image = class_weights(labels, int(labels.max()) + 1)[labels]
        return WeightedRandomSampler(
            torch.as_tensor(per_image, dtype=torch.double),
            len(labels),
            replacement=True,
            generator=generator,
        )
    return RandomSampler(range(len(labels)), generator=generator)


class ImageArrayDataset:
    """Cached uint8 images as (CHW uint8 tensor, label), augmented per image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        import torch

        img = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])


# -- the model's trainable parts ------------------------------------------------------------
@dataclass
class Plan:
    """Which modules train at each epoch and at what learning rate."""

    head: Any
    stages: list[list[Any]]
    others: list[Any]  # parameters in neither the stages nor the head
    strategy: str
    every: int

    def stages_trained(self, epoch: int) -> int:
        """How many stages (counted from the last) train in 0-based ``epoch``."""
        n = len(self.stages)
        return {"head": 0, "partial": 1, "full": n}.get(self.strategy, min(n, epoch // self.every))

    def apply(self, model, epoch: int) -> None:
        """Set requires_grad and train/eval mode: frozen BatchNorm keeps ImageNet statistics."""
        k = self.stages_trained(epoch)
        trainable = [self.head] + [m for s in self.stages[len(self.stages) - k :] for m in s]
        if self.strategy != "head":
            trainable += self.others
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        if self.strategy == "full":
            model.train()
        for m in trainable:
            m.train()
            for p in m.parameters():
                p.requires_grad_(True)


def make_plan(model, cfg: TransferConfig) -> Plan:
    from cnnlab.transfer.models import head_name, stages

    head = model.get_submodule(head_name(model))
    stage_list = stages(model)
    owned = {id(p) for s in stage_list for m in s for p in m.parameters()}
    owned |= {id(p) for p in head.parameters()}
    others = [
        m for m in model.modules() if any(id(p) not in owned for p in m.parameters(recurse=False))
    ]
    return Plan(head, stage_list, others, cfg.strategy, cfg.unfreeze_every)


def make_optimizer(plan: Plan, cfg: TransferConfig):
    """Parameter groups: the head at ``lr``; for ``gradual`` each stage at a lower rate
    (discriminative learning rates: early layers hold general features worth keeping)."""
    import torch

    def params(modules):
        return [p for m in modules for p in m.parameters()]

    groups = [{"params": list(plan.head.parameters()), "lr": cfg.lr}]
    if cfg.strategy != "head" and plan.others:
        groups.append({"params": params(plan.others), "lr": cfg.lr})
    n = len(plan.stages)
    if cfg.strategy == "partial":
        groups.append({"params": params(plan.stages[-1]), "lr": cfg.lr})
    elif cfg.strategy in ("full", "gradual"):
        for i, stage in enumerate(plan.stages):
            factor = cfg.lr_decay ** (n - i) if cfg.strategy == "gradual" else 1.0
            groups.append({"params": params(stage), "lr": cfg.lr * factor})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, cfg: TransferConfig, total_steps: int):
    """Stepped once per batch; None for a constant learning rate."""
    import torch

    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))
        )
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps
        )
    return None


def make_mix(cfg: TransferConfig, n_classes: int):
    """MixUp and/or CutMix on a normalised batch (soft targets); None when both are off."""
    from torchvision.transforms import v2

    mixes = []
    if cfg.mixup > 0:
        mixes.append(v2.MixUp(alpha=cfg.mixup, num_classes=n_classes))
    if cfg.cutmix > 0:
        mixes.append(v2.CutMix(alpha=cfg.cutmix, num_classes=n_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def better(monitor: str, value: float | None, best: float | None) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return best is None
    if best is None:
        return True
    return value < best if monitor == "loss" else value > best


# -- fitting --------------------------------------------------------------------------------
@dataclass
class FitResult:
    model: Any
    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float | None
    best_state: dict
    last_state: dict
    train_seconds: float  # the whole fit: feature cache, epochs, validation
    train_step_seconds: float  # training steps only: what throughput is measured on
    images_seen: int
    used_feature_cache: bool


def fit(cfg: TransferConfig, prepared: Prepared, device, console=None) -> FitResult:
    """Train ``cfg.arch`` on the prepared splits; the model returned holds the best weights."""
    import torch

    from cnnlab.metrics import classification_metrics
    from cnnlab.transfer.features import FeatureCache, extract
    from cnnlab.transfer.models import build_model, head_name, preprocessing
    from cnnlab.transfer.predict import predict_proba
    from cnnlab.transfer.presets import train_transform, view_count

    console = console or make_console(quiet=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, val = prepared.splits["train"], prepared.splits["val"]
    classes = prepared.classes
    pre = preprocessing(cfg.arch, cfg.image_size)
    model = build_model(cfg.arch, len(classes), cfg.weights, cfg.image_size).to(device)
    channels_last = cfg.channels_last and device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    plan = make_plan(model, cfg)
    optimizer = make_optimizer(plan, cfg)
    loss_fn = make_loss(cfg, train.labels, len(classes), device)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = make_sampler(cfg, train.labels, generator)
    mix = make_mix(cfg, len(classes))
    cached = cfg.strategy == "head" and cfg.cache_features and mix is None
    drop_last = len(train) > cfg.batch_size  # a batch of one breaks BatchNorm in training
    steps = len(train) // cfg.batch_size if drop_last else 1
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps)

    start = time.perf_counter()
    if cached:
        n_views = view_count(cfg.augment, cfg.feature_views)
        total = (n_views * len(train)) + len(val)
        with progress_bar(console, "backbone features (once)", total) as advance:
            cache = FeatureCache.build(
                model,
                head_name(model),
                train.images,
                pre.mean,
                pre.std,
                device,
                cfg.augment,
                cfg.image_size,
                cfg.feature_views,
                cfg.seed,
                channels_last=channels_last,
                progress=advance,
            )
            val_features = extract(
                model,
                head_name(model),
                val.images,
                pre.mean,
                pre.std,
                device,
                channels_last=channels_last,
                progress=advance,
            )
        train_labels = torch.as_tensor(train.labels)
        console.print(
            f"cached backbone features: {cache.n_views} view(s) x {len(train)} images "
            f"in {time.perf_counter() - start:.1f}s"
        )
    else:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            ImageArrayDataset(
                train.images, train.labels, train_transform(cfg.augment, cfg.image_size)
            ),
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            drop_last=drop_last,
            persistent_workers=cfg.workers > 0,
        )

    history: list[dict[str, Any]] = []
    best_value, best_epoch, best_state, stale, images_seen = None, 0, None, 0, 0
    train_step_seconds = 0.0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        plan.apply(model, epoch)
        if cached:
            batches = _feature_batches(
                cache, train_labels, sampler, cfg.batch_size, drop_last, generator
            )
            forward = plan.head
        else:
            batches = _image_batches(loader, device, pre, channels_last)
            forward = model
        total_loss, correct, seen, lr = 0.0, 0, 0, optimizer.param_groups[0]["lr"]
        with progress_bar(console, f"epoch {epoch + 1}/{cfg.epochs}", steps) as advance:
            for x, y in batches:
                y = y.to(device)
                target = y
                if mix is not None:
                    x, target = mix(x, y)
                logits = forward(x)
                loss = loss_fn(logits, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total_loss += float(loss.detach()) * len(y)
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += len(y)
                advance(1)
        step_seconds = time.perf_counter() - t0
        images_seen += seen
        train_step_seconds += step_seconds
        if cached:
            with torch.inference_mode():
                val_proba = torch.softmax(plan.head(val_features), 1).cpu().numpy()
        else:
            val_proba = predict_proba(
                model, val.images, pre.mean, pre.std, device, channels_last=channels_last
            )
        m = classification_metrics(val.labels, val_proba, classes)
        row = {
            "epoch": epoch + 1,
            "train_loss": total_loss / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": m["loss"],
            "val_accuracy": m["accuracy"],
            "val_balanced_accuracy": m["balanced_accuracy"],
            "val_macro_f1": m["macro_f1"],
            "val_roc_auc": m["roc_auc"],
            "val_ece": m["ece"],
            "lr": lr,
            "stages_trained": plan.stages_trained(epoch),
            "train_seconds": step_seconds,  # the training steps alone
            "seconds": time.perf_counter() - t0,  # including validation
        }
        history.append(row)
        value = m[cfg.monitor]
        improved = better(cfg.monitor, value, best_value)
        console.print(
            f"epoch {epoch + 1}/{cfg.epochs}  train_loss {row['train_loss']:.4f}  "
            f"train_acc {row['train_accuracy']:.3f}  val_loss {row['val_loss']:.4f}  "
            f"val_acc {row['val_accuracy']:.3f}  val_bal_acc {row['val_balanced_accuracy']:.3f}"
            f"  {row['seconds']:.1f}s" + ("  *best" if improved else "")
        )
        if improved:
            best_value, best_epoch, stale = value, epoch + 1, 0
            best_state = _cpu_state(model)
        else:
            stale += 1
        if cfg.early_stopping and stale >= cfg.early_stopping:
            console.print(f"early stopping: no better {cfg.monitor} for {stale} epochs")
            break
    train_seconds = time.perf_counter() - start
    last_state = _cpu_state(model)
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(
        model,
        history,
        best_epoch,
        best_value,
        best_state,
        last_state,
        train_seconds,
        train_step_seconds,
        images_seen,
        cached,
    )


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _feature_batches(cache, labels, sampler, batch_size, drop_last, generator):
    import torch

    order = torch.as_tensor(list(sampler))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        yield cache.batch(idx, generator), labels[idx]


def _image_batches(loader, device, pre, channels_last):
    from cnnlab.transfer.presets import normalize

    for xb, yb in loader:
        yield normalize(xb.to(device, non_blocking=True), pre.mean, pre.std, channels_last), yb


# -- the command ----------------------------------------------------------------------------
def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TransferConfig,
    overwrite: bool = False,
    console=None,
) -> tuple[Path, dict[str, Any]]:
    """Train and write a complete run directory; returns (run_dir, metrics)."""
    from cnnlab.runs import environment_info, run_directory, write_csv, write_json
    from cnnlab.transfer import checkpoint as ckpt_io
    from cnnlab.transfer.models import known_arch, preprocessing, require_weights
    from cnnlab.transfer.predict import evaluate_arrays, prediction_rows

    console = console or make_console()
    known_arch(cfg.arch)
    require_weights(cfg.arch, cfg.weights)
    device, described = resolve_device(cfg.device)
    with run_directory(out, overwrite=overwrite) as tmp:
        console.print(f"device: {described}")
        prepared = prepare_data(data_dir, cfg, console)
        counts = ", ".join(f"{n} {len(s)}" for n, s in prepared.splits.items())
        console.print(f"classes: {', '.join(prepared.classes)}; images: {counts}")
        write_json(tmp / "config.json", cfg.to_dict())
        write_json(tmp / "environment.json", {**environment_info(), "device": described})
        write_json(tmp / "data_report.json", prepared.report)
        write_csv(tmp / "splits.csv", _manifest(prepared))

        result = fit(cfg, prepared, device, console)
        write_csv(tmp / "history.csv", result.history)

        pre = preprocessing(cfg.arch, cfg.image_size)
        ckpt = ckpt_io.Checkpoint(
            cfg.arch,
            prepared.classes,
            cfg.image_size,
            list(pre.mean),
            list(pre.std),
            result.best_state,
            extra={
                "epoch": result.best_epoch,
                "monitor": cfg.monitor,
                "monitor_value": result.best_value,
            },
        )
        val = prepared.splits["val"]
        val_metrics, val_proba = evaluate_arrays(result.model, ckpt, val.images, val.labels, device)
        if len(prepared.classes) == 2:
            from cnnlab.metrics import choose_threshold

            if len(np.unique(val.labels)) == 2:
                ckpt.threshold = choose_threshold(val.labels, val_proba[:, 1])
        eval_name = "test" if "test" in prepared.splits else "val"
        held = prepared.splits[eval_name]
        metrics, proba = evaluate_arrays(result.model, ckpt, held.images, held.labels, device)
        metrics.update(
            evaluated_on=eval_name,
            class_names=prepared.classes,
            threshold=ckpt.threshold,
            best_epoch=result.best_epoch,
            monitor=cfg.monitor,
            epochs_run=len(result.history),
            train_seconds=result.train_seconds,
            images_per_second=result.images_seen / max(result.train_step_seconds, 1e-9),
            feature_cache=result.used_feature_cache,
            device=described,
            n_train=len(prepared.splits["train"]),
            n_val=len(val),
            n_test=len(prepared.splits["test"]) if "test" in prepared.splits else 0,
            val={
                k: val_metrics[k]
                for k in ("test_accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "ece")
            },
        )
        metrics["val"] = {k.replace("test_", ""): v for k, v in metrics["val"].items()}
        write_json(tmp / "metrics.json", metrics)
        rows = prediction_rows(held.paths, proba, prepared.classes, 3, ckpt.threshold)
        for row, label in zip(rows, held.labels, strict=True):
            row["true"] = prepared.classes[int(label)]
        write_csv(tmp / f"predictions_{eval_name}.csv", rows)
        ckpt_io.save(ckpt, tmp / "best.pt")
        last = copy.copy(ckpt)
        last.state_dict = result.last_state
        last.extra = {"epoch": len(result.history), "monitor": cfg.monitor}
        ckpt_io.save(last, tmp / "last.pt")

        from cnnlab.transfer.report import write_report

        write_report(tmp, cfg, prepared, result, metrics, held, proba, ckpt)
        _summary(console, metrics)
    console.print(f"run written to {out}")
    return Path(out), metrics


def _manifest(prepared: Prepared) -> list[dict[str, Any]]:
    return [
        {"split": name, "path": str(path), "class": prepared.classes[int(label)], "sha256": sha}
        for name, split in prepared.splits.items()
        for path, label, sha in zip(split.paths, split.labels, split.sha256, strict=True)
    ]


def _summary(console, m: dict[str, Any]) -> None:
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    console.print(
        f"{m['evaluated_on']}: accuracy {m['test_accuracy']:.3f}  balanced_accuracy "
        f"{m['balanced_accuracy']:.3f}  macro_f1 {m['macro_f1']:.3f}  roc_auc {auc}  "
        f"ece {m['ece']:.3f}"
    )
    if "operating_point" in m:
        op = m["operating_point"]
        console.print(
            f"operating threshold {op['threshold']:.3f} (chosen on val): sensitivity "
            f"{op['sensitivity']:.3f}  specificity {op['specificity']:.3f}"
        )
