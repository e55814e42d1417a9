"""Fitting: a model, the recipe and a batch source, trained epoch by epoch.

``fit`` builds the model and the recipe's parts (``recipe.py``), and for each phase of the
strategy (one; ``lp-ft``'s probe and fine-tuning: ``recipe.phases``) picks the batch source
(cached backbone features when only the head trains, decoded images otherwise), a fresh
optimizer and schedule, then calls ``loop.train_one_epoch`` and ``loop.evaluate`` each epoch,
keeps the best epoch's weights by ``cfg.monitor`` (those of the weight average with
``--ema``, ``averaging.py``) and stops early when asked. Usable from Python and by the
benchmarks.

Under torchrun (``world``, see ``distributed.py``) the trained network is wrapped in
DistributedDataParallel, wrapped again whenever ``gradual`` unfreezes a stage (DDP syncs the
parameters that required gradients when it was built), and the sampler is reshuffled with
``set_epoch``; the loop makes every figure global.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.console import make_console, progress_bar
from cnnlab.machine import peak_rss_mb
from cnnlab.transfer.models import build_model, preprocessing
from cnnlab.transfer.results import FitResult, HistoryRow
from cnnlab.transfer.training import distributed
from cnnlab.transfer.training.averaging import Ema
from cnnlab.transfer.training.batches import BatchSource, FeatureSource, ImageSource
from cnnlab.transfer.training.distributed import World, unwrap
from cnnlab.transfer.training.features import Backbone
from cnnlab.transfer.training.loop import Diverged, EpochStats, evaluate, train_one_epoch
from cnnlab.transfer.training.recipe import (
    better,
    make_loss,
    make_mix,
    make_optimizer,
    make_plan,
    make_sampler,
    make_scheduler,
    phases,
)
from cnnlab.transfer.training.transforms import view_count

if TYPE_CHECKING:
    from rich.console import Console
    from torch import nn
    from torch.utils.data import Sampler

    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.prepare import Prepared
    from cnnlab.transfer.training.recipe import Mix, Plan


def fit(
    cfg: TransferConfig,
    prepared: Prepared,
    device: torch.device,
    console: Console | None = None,
    world: World = World(),
    on_epoch: Callable[[HistoryRow], None] | None = None,
) -> FitResult:
    """Train ``cfg.arch`` on the prepared splits; the model returned holds the best weights
    (the averaged ones with ``cfg.ema``).

    In a ``world`` of several processes, each calls ``fit`` with the same splits. ``on_epoch``
    is called with each epoch's history row (TensorBoard logging, for one)."""
    console = console or make_console(quiet=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, val, classes = prepared.splits["train"], prepared.splits["val"], prepared.classes
    pre = preprocessing(cfg.arch, cfg.image_size)
    model = build_model(cfg.arch, len(classes), cfg.weights, cfg.image_size).to(device)
    channels_last = cfg.channels_last and device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    plan = make_plan(model, cfg)
    loss_fn = make_loss(cfg, train.labels, len(classes), device)
    generator = torch.Generator().manual_seed(cfg.seed)
    if world.active:
        sampler = distributed.sampler(cfg, train.labels, world)
        torch.manual_seed(cfg.seed + world.rank)  # each share of images gets its own augmentation
    else:
        sampler = make_sampler(cfg, train.labels, generator)
    mix = make_mix(cfg, len(classes))
    ema = Ema(model, cfg.ema) if cfg.ema else None
    run = _Run(cfg, plan, model, ema, loss_fn, mix, device, console, world, on_epoch, sampler)

    start = time.perf_counter()
    cached_any = False
    for epochs in phases(cfg):
        # a frozen backbone computes the same features every epoch: compute them once instead
        cached = plan.probing(epochs.start) and cfg.cache_features and mix is None
        cached_any |= cached
        if cached:
            mean, std = pre.mean, pre.std
            backbone = Backbone(
                model, mean, std, device, channels_last, engine=cfg.engine, say=console.print
            )
            source: BatchSource = _cache_features(
                cfg, backbone, prepared, sampler, generator, console, world
            )
        else:
            source = ImageSource(model, train, val, cfg, sampler, pre, device, channels_last, world)
        if cfg.strategy == "lp-ft":
            console.print(_phase_line(cfg, epochs))
        stopped = run.phase(source, epochs, val.labels, classes)
        source.network = unwrap(source.network)
        if stopped:
            break
    train_seconds = time.perf_counter() - start
    trained = ema.model if ema is not None else model
    last_state = _cpu_state(trained)
    model.load_state_dict(run.best_state)
    model.eval()
    return FitResult(
        model,
        run.history,
        run.best_epoch,
        run.best_value,
        run.best_state,
        last_state,
        train_seconds,
        run.train_step_seconds,
        run.images_seen,
        cached_any,
        plan.head_dropout.p if plan.head_dropout is not None else 0.0,
        peak_rss_mb(),
    )


def _phase_line(cfg: TransferConfig, epochs: range) -> str:
    span = f"epochs {epochs.start + 1}-{epochs.stop}" if len(epochs) > 1 else f"epoch {epochs.stop}"
    if epochs.start == 0:
        return f"lp-ft, {span}: linear probe (the head alone at lr {cfg.lr:g})"
    rate = cfg.lr * cfg.backbone_lr_factor
    return f"lp-ft, {span}: fine-tuning every layer (head lr {cfg.lr:g}, backbone {rate:g})"


@dataclass
class _Run:
    """The epochs of one fit, phase after phase: training, validation, the best epoch."""

    cfg: TransferConfig
    plan: Plan
    model: nn.Module
    ema: Ema | None
    loss_fn: nn.Module
    mix: Mix | None
    device: torch.device
    console: Console
    world: World
    on_epoch: Callable[[HistoryRow], None] | None
    sampler: Sampler[int]
    history: list[HistoryRow] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stale: int = 0
    images_seen: int = 0
    train_step_seconds: float = 0.0

    def phase(self, source: BatchSource, epochs: range, labels: Any, classes: list[str]) -> bool:
        """Train ``epochs`` on ``source`` with a fresh optimizer and schedule; True when early
        stopping ended the run."""
        cfg, world = self.cfg, self.world
        optimizer = make_optimizer(self.plan, cfg, epochs.start)
        scheduler = make_scheduler(optimizer, cfg, len(epochs) * source.steps)
        wrapped_for = None
        for epoch in epochs:
            t0 = time.perf_counter()
            self.plan.apply(self.model, epoch)
            if world.active:
                self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
                if self.plan.stages_trained(epoch) != wrapped_for:  # what trains has changed
                    source.network = world.wrap(unwrap(source.network))
                    wrapped_for = self.plan.stages_trained(epoch)
            try:
                title = f"epoch {epoch + 1}/{cfg.epochs}"
                with progress_bar(self.console, title, source.steps) as advance:
                    stats = train_one_epoch(
                        source, self.loss_fn, optimizer, self.device, scheduler, self.mix,
                        advance, world, self.ema,
                    )  # fmt: skip
                step_seconds = time.perf_counter() - t0
                world.sync_buffers(self.model)
                _require_finite_weights(self.model)
                network = None
                if self.ema is not None:
                    network = self.ema.counterpart(unwrap(source.network))
                m = evaluate(source, labels, classes, world, network)
            except Diverged as e:
                raise Diverged(
                    f"training diverged in epoch {epoch + 1} of {cfg.epochs}: {e}; "
                    f"try a smaller --lr (now {cfg.lr:g})"
                ) from None
            if self._record(epoch, stats, m, step_seconds, time.perf_counter() - t0):
                return True
        return False

    def _record(
        self, epoch: int, stats: EpochStats, m: dict[str, Any], step_seconds: float, seconds: float
    ) -> bool:
        """History, the best epoch's weights, early stopping (True: stop)."""
        cfg = self.cfg
        self.images_seen += stats.images
        self.train_step_seconds += step_seconds
        stages = self.plan.stages_trained(epoch)
        row = _history_row(epoch, stats, m, stages, step_seconds, seconds)
        self.history.append(row)
        if self.on_epoch is not None:
            self.on_epoch(row)
        value = m[cfg.monitor]
        improved = better(cfg.monitor, value, self.best_value)
        self.console.print(_epoch_line(row, cfg.epochs) + ("  *best" if improved else ""))
        if improved:
            self.best_value, self.best_epoch, self.stale = value, epoch + 1, 0
            self.best_state = _cpu_state(self.ema.model if self.ema is not None else self.model)
        else:
            self.stale += 1
        if cfg.early_stopping and self.stale >= cfg.early_stopping:
            self.console.print(f"early stopping: no better {cfg.monitor} for {self.stale} epochs")
            return True
        return False


def _cache_features(
    cfg: TransferConfig,
    backbone: Backbone,
    prepared: Prepared,
    sampler: Sampler[int],
    generator: torch.Generator,
    console: Console,
    world: World,
) -> FeatureSource:
    """The feature source, built under a progress bar; says how long the backbone took."""
    train, val = prepared.splits["train"], prepared.splits["val"]
    start = time.perf_counter()
    views = view_count(cfg.augment, cfg.feature_views)
    total = views * len(world.shard(len(train))) + len(world.shard(len(val)))  # this process's
    with progress_bar(console, "backbone features (once)", total) as advance:
        source = FeatureSource.build(backbone, train, val, cfg, sampler, generator, advance, world)
    console.print(
        f"cached backbone features: {source.cache.n_views} view(s) x {len(train)} images "
        f"in {time.perf_counter() - start:.1f}s"
        + (f"; the head trains on them with dropout {source.dropout:g}" if source.dropout else "")
    )
    return source


def _history_row(
    epoch: int,
    stats: EpochStats,
    m: dict[str, Any],
    stages_trained: int,
    step_seconds: float,
    seconds: float,
) -> HistoryRow:
    return {
        "epoch": epoch + 1,
        "train_loss": stats.loss,
        "train_accuracy": stats.accuracy,
        "val_loss": m["loss"],
        "val_accuracy": m["accuracy"],
        "val_balanced_accuracy": m["balanced_accuracy"],
        "val_macro_f1": m["macro_f1"],
        "val_roc_auc": m["roc_auc"],
        "val_ece": m["ece"],
        "lr": stats.lr,
        "stages_trained": stages_trained,
        "train_seconds": step_seconds,
        "seconds": seconds,
    }


def _epoch_line(row: HistoryRow, epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  "
        f"train_acc {row['train_accuracy']:.3f}  val_loss {row['val_loss']:.4f}  "
        f"val_acc {row['val_accuracy']:.3f}  val_bal_acc {row['val_balanced_accuracy']:.3f}"
        f"  {row['seconds']:.1f}s"
    )


def _require_finite_weights(model: nn.Module) -> None:
    """A finite last loss can still leave the step it took with inf weights (or BatchNorm
    statistics); checked here, before validation reads them."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Diverged(f"the weights became NaN or infinite ({name})")


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
