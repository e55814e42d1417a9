"""``cnnlab transfer``: train, predict, evaluate, export. Parses, calls one function, prints.

torch and torchvision are imported inside the commands so ``cnnlab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from cnnlab import preflight, transfer
from cnnlab.configs import config_options
from cnnlab.runtime import requires
from cnnlab.transfer.config import DEVICES, ENGINES, MAX_PIXELS_HELP, TransferConfig

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
ENGINE_HELP = (
    "What computes the probabilities (auto: ONNX Runtime on a CPU for 256+ images or an "
    "already exported model, else torch)."
)
DEVICE_HELP = "auto = cuda, then mps, then cpu."

# a type, so the help lists the values, the shell completes them and a typo is refused
Device = Literal[DEVICES]  # type: ignore[valid-type]
Engine = Literal[ENGINES]  # type: ignore[valid-type]
# the choices once, as `transfer train` shows its own (the help stays readable at 80 columns)
DEVICE_CHOICES = f"[{'|'.join(DEVICES)}]"
ENGINE_CHOICES = f"[{'|'.join(ENGINES)}]"


@app.command()
@requires("transfer")
@config_options(TransferConfig)
def train(
    data_dir: Path = typer.Argument(..., help="One folder per class, or train/ (+ val/, test/)."),
    *,
    out: Path = typer.Option(..., "--out", help="Run directory to create."),
    config_fields: dict[str, Any],  # one option per TransferConfig field goes here
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    quiet: bool = typer.Option(False, help="Print nothing but errors."),
    tensorboard: Path | None = typer.Option(
        None, metavar="DIR", help="Also write TensorBoard logs to DIR (docs/transfer.md)."
    ),
) -> None:
    """Fine-tune a pretrained CNN on an image folder and write a run directory."""
    preflight.transfer_train(data_dir, out, overwrite, tensorboard)  # before torch loads
    transfer.train(
        out=out, data_dir=data_dir, overwrite=overwrite, progress=not quiet,
        tensorboard=tensorboard, **config_fields,
    )  # fmt: skip


@app.command()
@requires("transfer")
def predict(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt) or checkpoint file."),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions to this CSV."),
    cam: Path | None = typer.Option(None, "--cam", help="Write Grad-CAM overlays here."),
    top_k: int = typer.Option(3, help="Classes listed per image."),
    device: Device = typer.Option("auto", metavar=DEVICE_CHOICES, help=DEVICE_HELP),
    max_pixels: int | None = typer.Option(None, help=MAX_PIXELS_HELP),
    engine: Engine = typer.Option("auto", metavar=ENGINE_CHOICES, help=ENGINE_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing CSV or overlay."),
) -> None:
    """Class, probability per class and top-k for every image; unreadable files are listed."""
    preflight.transfer_run(run_dir, inputs=images)  # before torch loads
    from cnnlab.console import make_console
    from cnnlab.predictions import format_top

    console = make_console()
    rows = transfer.predict(
        run_dir, images, out=out, cam=cam, top_k=top_k, device=device, max_pixels=max_pixels,
        engine=engine, overwrite=overwrite,
    )  # fmt: skip
    failed = [(row["path"], row["error"]) for row in rows if row["error"]]
    for row in rows:
        if not row["error"]:
            console.print(
                f"{row['path']}\t{row['predicted']}\t{row['probability']:.3f}\t{format_top(row['top_k'])}"
                + (f"\tdecision {row['decision']}" if row.get("decision") else "")
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
@requires("transfer")
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt)."),
    data_dir: Path = typer.Argument(..., help="Held-out folder with one folder per class."),
    out: Path | None = typer.Option(None, "--out", help="Default RUN_DIR/evaluations/NAME."),
    device: Device = typer.Option("auto", metavar=DEVICE_CHOICES, help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing evaluation."),
    max_pixels: int | None = typer.Option(None, help=MAX_PIXELS_HELP),
    engine: Engine = typer.Option("auto", metavar=ENGINE_CHOICES, help=ENGINE_HELP),
) -> None:
    """Metrics of a trained model on a held-out folder."""
    preflight.transfer_run(run_dir, data_dir=data_dir)  # before torch loads
    from cnnlab.console import make_console
    from cnnlab.transfer.evaluation.report import print_summary
    from cnnlab.transfer.inference.predict import evaluation_dir

    metrics = transfer.evaluate(
        run_dir, data_dir, out=out, device=device, overwrite=overwrite, max_pixels=max_pixels,
        engine=engine,
    )  # fmt: skip
    where = out or evaluation_dir(run_dir, data_dir)
    console = make_console()
    metrics["evaluated_on"] = str(data_dir)
    print_summary(console, metrics)
    console.print(
        f"{metrics['n_images']} images, {len(metrics['skipped'])} skipped; written to {where}"
    )


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Two or more run directories tested on the same images; the first is the reference.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Also write the Markdown to this file."),
    seed: int = typer.Option(0, help="Seed of the bootstrap resamples."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
) -> None:
    """Runs side by side, each against the first with paired bootstrap intervals."""
    from cnnlab.files import atomic_write_text, check_output
    from cnnlab.transfer.evaluation.compare import compare as run

    if out is not None:
        check_output("--out", out, overwrite=overwrite, inputs=[("a run", r) for r in run_dirs])
    text = run(run_dirs, seed)
    print(text, end="")
    if out is not None:
        atomic_write_text(out, text, overwrite)


@app.command()
@requires("transfer")
def export(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt) or checkpoint file."),
    out: Path = typer.Option(..., "--out", help="model.onnx or model.safetensors."),
    verify: bool = typer.Option(True, help="Compare ONNX outputs with PyTorch (onnxruntime)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
) -> None:
    """Export the model as ONNX or safetensors."""
    preflight.transfer_run(run_dir)  # before torch loads
    from cnnlab.transfer.inference.export import export as run

    print(f"exported to {run(run_dir, out, verify, overwrite)}")
