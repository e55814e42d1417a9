"""``cnnlab demo``: a quick tour of both the Fashion-MNIST pipeline and the study engine (so it
belongs to neither): the `quick` study and its report, or one `fast` training."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab.fmnist.cli import choices, fmnist_summary, stamp
from cnnlab.runtime import requires
from cnnlab.study.cli import Profile
from cnnlab.study.defaults import DEFAULT_STORAGE


@requires("keras")
def demo_command(
    single_run: bool = typer.Option(
        False, "--single-run", help="Train one `fast` model instead of running the quick study."
    ),
    profile: Profile = typer.Option("quick", metavar=choices(Profile), help="Study profile."),
    storage: str = typer.Option(DEFAULT_STORAGE, help="Optuna storage URL of the study."),
    out: Path | None = typer.Option(None, help="Report (or run) directory."),
    data_dir: Path | None = typer.Option(None, help="Folder with the Fashion-MNIST .gz files."),
    epochs: int = typer.Option(4, help="Epochs of the --single-run demo."),
    train_limit: int = typer.Option(20000, help="Training images of the --single-run demo."),
    overwrite: bool = typer.Option(False, help="Replace a previous report in --out."),
) -> None:
    """Quick tour: the `quick` study of kernel size, regularization, batch size and optimizer
    (resumed if interrupted), then its report. `--single-run` trains one `fast` model instead."""
    from cnnlab import preflight

    if not single_run:
        preflight.fmnist_data(data_dir)  # before the study's workers load TensorFlow
        from cnnlab.study import demo, load_spec
        from cnnlab.study.report import check_report_out
        from cnnlab.study.run import DEFAULT_WORKERS, default_threads
        from cnnlab.study.storage import check_url
        from cnnlab.study.terminal import print_plan, print_verdicts

        spec = load_spec(profile=profile)
        check_report_out(out or Path("reports") / spec.name, storage, overwrite)  # first
        check_url(storage)
        print(f"demo: the `{profile}` study (storage {storage})")
        print_plan(spec, DEFAULT_WORKERS, default_threads(DEFAULT_WORKERS))
        report = demo(
            profile=profile, storage=storage, out=out, data_dir=data_dir, overwrite=overwrite
        )
        print_verdicts(storage, spec.name)
        print(f"report: {report}  (also report.md and results.csv beside it)")
        return
    from cnnlab.fmnist.config import preset

    config = preset("fast").replace(epochs=epochs, train_limit=train_limit)
    out = out or Path("runs") / f"demo-{stamp()}"
    preflight.fmnist_train(out, overwrite, data_dir)
    from cnnlab.fmnist.training import train

    print(f"demo: the `fast` preset on {train_limit} training images for {epochs} epochs")
    result = train(config, out=out, data_dir=data_dir)
    print(fmnist_summary(result))
    print(f"run directory: {out}")
    print(f"report:        {out / 'report.html'}  (also report.md)")
    print(f"next: cnnlab evaluate {out}   |   cnnlab predict {out} IMAGE...")
