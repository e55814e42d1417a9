"""``cnnlab transfer``: train, predict, evaluate, export. Parses, calls one function, prints.

torch and torchvision are imported inside the commands so ``cnnlab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from cnnlab import preflight, tracking, transfer
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
TTA_HELP = "Test-time augmentation: average the softmax of each image and its horizontal flip."
ADAPT_HELP = (
    "Opt-in site adaptation: re-estimate BatchNorm statistics on the unlabelled images under "
    "DIR (any structure; no label read) before predicting; torch engine only."
)
POLICY_HELP = (
    "Re-choose the two-class threshold on the run's stored validation scores: youden, "
    "argmax, sensitivity=T or specificity=T (default: the run's own threshold)."
)
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
    mlflow: bool = tracking.MLFLOW_OPTION,
    mlflow_uri: str | None = tracking.MLFLOW_URI_OPTION,
    mlflow_log_model: bool = tracking.MLFLOW_LOG_MODEL_OPTION,
) -> None:
    """Fine-tune a pretrained CNN on an image folder and write a run directory."""
    tracked = tracking.options(mlflow, mlflow_uri, mlflow_log_model)
    preflight.transfer_train(data_dir, out, overwrite, tensorboard, tracked)  # before torch
    transfer.train(
        out=out, data_dir=data_dir, overwrite=overwrite, progress=not quiet,
        tensorboard=tensorboard, mlflow=tracked, **config_fields,
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
    ensemble: list[Path] = typer.Option(
        [], "--ensemble", metavar="RUN", help="Also this run: average the runs' probabilities."
    ),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    adapt_bn: Path | None = typer.Option(None, "--adapt-bn", metavar="DIR", help=ADAPT_HELP),
    threshold_policy: str | None = typer.Option(None, metavar="POLICY", help=POLICY_HELP),
) -> None:
    """Class, probability per class and top-k for every image; unreadable files are listed."""
    for run in [run_dir, *ensemble]:
        preflight.transfer_run(run, inputs=images)  # before torch loads
    from cnnlab.console import make_console
    from cnnlab.predictions import format_top

    console = make_console()
    rows = transfer.predict(
        [run_dir, *ensemble] if ensemble else run_dir, images, out=out, cam=cam, top_k=top_k,
        device=device, max_pixels=max_pixels, engine=engine, overwrite=overwrite, tta=tta,
        adapt_bn=adapt_bn, threshold_policy=threshold_policy,
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
    paths: list[Path] = typer.Argument(
        ...,
        metavar="RUN_DIR... DATA_DIR",
        help="Run directories (best.pt; several: an ensemble averaging their probabilities), "
        "then the held-out folder with one folder per class.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Default RUN_DIR/evaluations/NAME (an ensemble needs --out)."
    ),
    device: Device = typer.Option("auto", metavar=DEVICE_CHOICES, help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing evaluation."),
    max_pixels: int | None = typer.Option(None, help=MAX_PIXELS_HELP),
    engine: Engine = typer.Option("auto", metavar=ENGINE_CHOICES, help=ENGINE_HELP),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    adapt_bn: Path | None = typer.Option(None, "--adapt-bn", metavar="DIR", help=ADAPT_HELP),
    threshold_policy: str | None = typer.Option(None, metavar="POLICY", help=POLICY_HELP),
) -> None:
    """Metrics of a trained model (or an ensemble of runs) on a held-out folder."""
    from cnnlab.errors import CnnlabError

    if len(paths) < 2:
        raise CnnlabError("evaluate needs a run directory and a held-out folder")
    *runs, data_dir = paths
    for run in runs:
        preflight.transfer_run(run, data_dir=data_dir)  # before torch loads
    from cnnlab.console import make_console
    from cnnlab.transfer.evaluation.evaluate import evaluation_dir
    from cnnlab.transfer.evaluation.report import print_summary

    metrics = transfer.evaluate(
        runs if len(runs) > 1 else runs[0], data_dir, out=out, device=device,
        overwrite=overwrite, max_pixels=max_pixels, engine=engine, tta=tta, adapt_bn=adapt_bn,
        threshold_policy=threshold_policy,
    )  # fmt: skip
    where = out or evaluation_dir(runs[0], data_dir)
    console = make_console()
    metrics["evaluated_on"] = str(data_dir)  # type: ignore[typeddict-unknown-key]
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
    ensemble: bool = typer.Option(
        False, "--ensemble", help="Add the mean of all runs' probabilities as one more run."
    ),
    by_seed: bool = typer.Option(
        False, "--by-seed", help="One row per recipe: runs equal but for their seed pooled."
    ),
) -> None:
    """Runs side by side, each against the first with paired bootstrap intervals; --by-seed:
    one row per recipe, mean and t-interval over its seeds."""
    from cnnlab.files import atomic_write_text, check_output
    from cnnlab.transfer.evaluation.compare import compare
    from cnnlab.transfer.evaluation.seeds import compare_by_seed

    run = compare_by_seed if by_seed else compare

    if out is not None:
        check_output("--out", out, overwrite=overwrite, inputs=[("a run", r) for r in run_dirs])
    text = run(run_dirs, seed, ensemble)
    print(text, end="")
    if out is not None:
        atomic_write_text(out, text, overwrite)


@app.command()
@requires("transfer")
def shift(
    data_dir: Path = typer.Argument(..., help="One folder per class, or train/ (+ test/)."),
    test: Path | None = typer.Option(
        None, "--test", help="The test site's folder [default: DATA_DIR/test]."
    ),
    image_size: int = typer.Option(224, min=32, max=1024, help="Side the images are read at."),
    group_regex: str | None = typer.Option(
        None, help="Patient id in file names: cross-validation keeps a patient in one fold."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the folds and bootstrap resamples."),
    out: Path | None = typer.Option(None, "--out", help="Also write the Markdown here."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers here."),
    overwrite: bool = typer.Option(False, help="Replace existing --out/--json files."),
) -> None:
    """Can whole-image statistics predict the class, and does the test site differ?"""
    # transfer.shift checks the folders and outputs first; it loads no torch
    transfer.shift(
        data_dir, test=test, image_size=image_size, group_regex=group_regex, seed=seed,
        out=out, json_out=json_out, overwrite=overwrite,
    )  # fmt: skip


@app.command()
@requires("transfer")
def export(
    run_dir: Path = typer.Argument(..., help="Run directory (uses best.pt) or checkpoint file."),
    out: Path = typer.Option(..., "--out", help="model.onnx or model.safetensors."),
    verify: bool = typer.Option(True, help="Compare ONNX outputs with PyTorch (onnxruntime)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
) -> None:
    """Export the model as ONNX or safetensors, with its model card (FILE.card.md) beside it."""
    preflight.transfer_run(run_dir)  # before torch loads
    from cnnlab.transfer.inference.card import card_path
    from cnnlab.transfer.inference.export import export as run

    written = run(run_dir, out, verify, overwrite)
    print(f"exported to {written}; model card: {card_path(written)}")
