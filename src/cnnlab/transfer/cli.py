"""``cnnlab transfer``: train, predict, evaluate, export. Parses, calls one function, prints.

torch and torchvision are imported inside the commands so ``cnnlab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)
# the number itself lives in transfer/images.py (MAX_PIXELS), which this module must not import
MAX_PIXELS_HELP = (
    "Refuse images whose header claims more pixels, before decoding "
    "(default and maximum: Pillow's own limit, about 89 million)."
)


@app.command()
def train(
    data_dir: Path = typer.Argument(..., help="One folder per class, or train/ (+ val/, test/)."),
    out: Path = typer.Option(..., "--out", help="Run directory to create."),
    arch: str = typer.Option("resnet18", help="torchvision model name or efficientnet_lite0."),
    weights: str = typer.Option("imagenet", help="imagenet | none | PATH of a state dict."),
    image_size: int = typer.Option(224, help="Images are resized to this square size."),
    strategy: str = typer.Option("head", help="head | partial | full | gradual."),
    augment: str = typer.Option("basic", help="none | basic (flip) | strong."),
    mixup: float = typer.Option(0.0, help="MixUp alpha (0 = off)."),
    cutmix: float = typer.Option(0.0, help="CutMix alpha (0 = off)."),
    feature_views: int = typer.Option(4, help="head+strong: augmented views cached per image."),
    cache_features: bool = typer.Option(True, help="head: compute backbone features once."),
    balance: str = typer.Option("none", help="none | weights (loss) | sampler."),
    optimizer: str = typer.Option("adam", help="adam | adamw | sgd."),
    lr: float = typer.Option(1e-3, help="Learning rate (of the head; see --lr-decay)."),
    weight_decay: float = typer.Option(0.0),
    schedule: str = typer.Option("constant", help="constant | cosine | onecycle."),
    label_smoothing: float = typer.Option(0.0),
    batch_size: int = typer.Option(32),
    epochs: int = typer.Option(5),
    early_stopping: int | None = typer.Option(None, help="Patience in epochs on --monitor."),
    monitor: str = typer.Option(
        "balanced_accuracy", help="balanced_accuracy | accuracy | macro_f1 | roc_auc | loss."
    ),
    unfreeze_every: int = typer.Option(1, help="gradual: epochs per newly unfrozen stage."),
    lr_decay: float = typer.Option(0.5, help="gradual: lr factor per stage below the head."),
    val_size: float = typer.Option(0.15, help="Fraction carved for validation if no val/."),
    test_size: float = typer.Option(0.0, help="Fraction carved for test if no test/."),
    limit: int | None = typer.Option(None, help="At most N images per split (stratified)."),
    dedupe: bool = typer.Option(False, help="Remove images duplicated across splits."),
    near_threshold: int = typer.Option(10, help="dHash bits for near-duplicates; -1 = off."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's)."),
    channels_last: bool = typer.Option(True, help="channels_last memory format."),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    quiet: bool = typer.Option(False, help="Print nothing but errors."),
) -> None:
    """Fine-tune a pretrained CNN on an image folder and write a run directory."""
    from cnnlab.console import make_console
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.train import train as run

    cfg = TransferConfig(
        arch=arch,
        weights=weights,
        image_size=image_size,
        strategy=strategy,
        augment=augment,
        mixup=mixup,
        cutmix=cutmix,
        feature_views=feature_views,
        cache_features=cache_features,
        balance=balance,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        label_smoothing=label_smoothing,
        batch_size=batch_size,
        epochs=epochs,
        early_stopping=early_stopping,
        monitor=monitor,
        unfreeze_every=unfreeze_every,
        lr_decay=lr_decay,
        val_size=val_size,
        test_size=test_size,
        limit=limit,
        dedupe=dedupe,
        near_threshold=near_threshold,
        seed=seed,
        device=device,
        workers=workers,
        threads=threads,
        channels_last=channels_last,
    )
    run(data_dir, out, cfg, overwrite=overwrite, console=make_console(quiet))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt) or checkpoint file."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions to this CSV."),
    cam: Path | None = typer.Option(None, "--cam", help="Write Grad-CAM overlays here."),
    top_k: int = typer.Option(3, help="Classes listed per image."),
    device: str = typer.Option("auto", help="auto (cuda, mps, cpu) | cpu | cuda | mps."),
    max_pixels: int | None = typer.Option(None, help=MAX_PIXELS_HELP),
) -> None:
    """Class, probability per class and top-k for every image; unreadable files are listed."""
    from cnnlab.console import make_console
    from cnnlab.transfer.images import MAX_PIXELS
    from cnnlab.transfer.predict import predict as run

    console = make_console()
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    rows, failed = run(run_dir, images, out, cam, top_k, device, max_pixels=limit)
    for row in rows:
        if not row["error"]:
            console.print(
                f"{row['path']}\t{row['predicted']}\t{row['probability']:.3f}\t{row['top_k']}"
            )
    for path, why in failed:
        console.print(f"[yellow]unreadable[/] {path}: {why}")
    done = len(rows) - len(failed)
    console.print(
        f"{done} predicted, {len(failed)} unreadable"
        + (f"; written to {out}" if out else "")
        + (f"; Grad-CAM overlays in {cam}" if cam else "")
    )


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt)."),
    data_dir: Path = typer.Argument(..., help="Held-out folder with one folder per class."),
    out: Path | None = typer.Option(None, "--out", help="Default RUN_DIR/evaluations/NAME."),
    device: str = typer.Option("auto", help="auto (cuda, mps, cpu) | cpu | cuda | mps."),
    overwrite: bool = typer.Option(False, help="Replace an existing evaluation."),
    max_pixels: int | None = typer.Option(None, help=MAX_PIXELS_HELP),
) -> None:
    """Metrics of a trained model on a held-out folder."""
    from cnnlab.console import make_console
    from cnnlab.transfer.images import MAX_PIXELS
    from cnnlab.transfer.predict import evaluate as run
    from cnnlab.transfer.report import print_summary

    limit = MAX_PIXELS if max_pixels is None else max_pixels
    metrics, where = run(run_dir, data_dir, out, device, overwrite, limit)
    console = make_console()
    metrics["evaluated_on"] = str(data_dir)
    print_summary(console, metrics)
    console.print(
        f"{metrics['n_images']} images, {len(metrics['skipped'])} skipped; written to {where}"
    )


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt) or checkpoint file."),
    out: Path = typer.Option(..., "--out", help="model.onnx or model.safetensors."),
    verify: bool = typer.Option(True, help="Compare ONNX outputs with PyTorch (onnxruntime)."),
) -> None:
    """Export the model as ONNX or safetensors."""
    from cnnlab.transfer.export import export as run

    print(f"exported to {run(run_dir, out, verify)}")
