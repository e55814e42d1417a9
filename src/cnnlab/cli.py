"""The ``cnnlab`` command: thin parsing over library functions, and ``demo``, which tours
both the Fashion-MNIST pipeline and the study engine (so it belongs to neither).

Every sub-command module imports its heavy framework (TensorFlow, torch) inside the command
functions, after ``cnnlab.preflight`` has checked its arguments and paths, so ``cnnlab --help``
and error paths stay fast. The root options: ``--verbose``
(the frameworks' own log lines) and shell completion (``--install-completion``).
"""

from __future__ import annotations

import sys
from pathlib import Path

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def interrupted() -> None:
    sys.stderr.write("cnnlab: error: interrupted\n")
    sys.exit(INTERRUPTED)


try:  # Ctrl-C while the command line loads (seconds, with TensorFlow) is the same one line
    import typer

    try:  # Typer >= 0.20 vendors Click; older releases depend on it
        from typer._click.exceptions import ClickException as _ClickException
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException as _ClickException

    from cnnlab.errors import CnnlabError
    from cnnlab.fmnist.cli import choices, fmnist_summary, stamp
    from cnnlab.fmnist.cli import register as register_fmnist
    from cnnlab.runtime import quiet_framework_logs, requires
    from cnnlab.serve.cli import serve_command
    from cnnlab.study.cli import Profile
    from cnnlab.study.cli import app as study_app
    from cnnlab.study.defaults import DEFAULT_STORAGE
    from cnnlab.transfer.cli import app as transfer_app
except KeyboardInterrupt:
    interrupted()

app = typer.Typer(
    name="cnnlab",
    help="Understand what makes a CNN work; fine-tune pretrained CNNs on medical images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from cnnlab import __version__

        print(f"cnnlab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show TensorFlow's own log lines (hidden by default)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Understand what makes a CNN work; fine-tune pretrained CNNs on medical images."""
    quiet_framework_logs(verbose)  # before any command imports TensorFlow


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


register_fmnist(app)
app.command("demo")(demo_command)
app.add_typer(study_app, name="study", help="Repeated, analysed experiments on Fashion-MNIST.")
app.add_typer(transfer_app, name="transfer", help="Fine-tune pretrained CNNs on image folders.")
app.command("serve")(serve_command)


@app.command("doctor")
def doctor_command() -> None:
    """Versions, the CPU and its vector unit, threads, GPU, data found and caches."""
    from cnnlab.doctor import format_report, report

    print(format_report(report()), end="")


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr, then exit: the contract for every error a user can cause."""
    # one write, so that the lines of processes sharing stderr (torchrun's ranks) never merge
    sys.stderr.write(f"cnnlab: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        result = app(args=argv, prog_name="cnnlab", standalone_mode=False)
    except _ClickException as e:
        # Typer words a bad choice "Value error, 'x' is not one of 'a', 'b'."
        message = e.format_message().strip().replace("Value error, ", "")
        if not message:  # `no_args_is_help` has already printed the help
            sys.exit(e.exit_code)
        fail(message.replace("\n", " "), e.exit_code if e.exit_code else 2)
    except CnnlabError as e:
        fail(str(e).replace("\n", " "), e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        fail("interrupted", INTERRUPTED)
    else:
        if result == INTERRUPTED:  # Typer turns Ctrl-C into a return of 130, silently
            fail("interrupted", INTERRUPTED)
        if isinstance(result, int) and result:
            sys.exit(result)


if __name__ == "__main__":
    main()
