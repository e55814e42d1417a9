"""The ``cnnlab`` command: thin parsing over library functions.

Each sub-command's module is imported when that command runs (or its help is shown):
``cnnlab --version`` and ``cnnlab --help`` load none of them, and every sub-command module
imports its heavy framework (TensorFlow, torch) inside the command functions, after
``cnnlab.preflight`` has checked its arguments and paths, so error paths stay fast too. The
root options: ``--verbose`` (the frameworks' own log lines) and shell completion
(``--install-completion``).
"""

from __future__ import annotations

import sys
from typing import Any

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def interrupted() -> None:
    sys.stderr.write("cnnlab: error: interrupted\n")
    sys.exit(INTERRUPTED)


try:  # Ctrl-C while the command line loads (seconds, with TensorFlow) is the same one line
    import typer
    from typer.core import TyperGroup

    try:  # Typer >= 0.20 vendors Click; older releases depend on it
        from typer._click.exceptions import ClickException as _ClickException
        from typer._click.utils import make_default_short_help
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException as _ClickException
        from click.utils import make_default_short_help

    from cnnlab.errors import CnnlabError
    from cnnlab.runtime import quiet_framework_logs
except KeyboardInterrupt:
    interrupted()

# name: (module, attribute: a command function or a Typer app, the line `cnnlab --help` shows).
# Importing them all took most of `cnnlab --version`'s time; a test checks each line against
# the command's own help.
COMMANDS = {
    "train": (
        "cnnlab.fmnist.cli", "train_command",
        "Train a CNN on Fashion-MNIST and write a run directory with metrics, plots and report.",
    ),
    "evaluate": (
        "cnnlab.fmnist.cli", "evaluate_command",
        "Re-evaluate a saved model on the 10,000 test images.",
    ),
    "predict": (
        "cnnlab.fmnist.cli", "predict_command",
        "Classify image files with a trained model (resized to 28x28 grayscale).",
    ),
    "demo": (
        "cnnlab.demo", "demo_command",
        "Quick tour: the `quick` study of kernel size, regularization, batch size and optimizer"
        " (resumed if interrupted), then its report.",
    ),
    "study": ("cnnlab.study.cli", "app", "Repeated, analysed experiments on Fashion-MNIST."),
    "transfer": ("cnnlab.transfer.cli", "app", "Fine-tune pretrained CNNs on image folders."),
    "serve": (
        "cnnlab.serve.cli", "serve_command",
        "A web page that classifies uploaded images with a finished run (Ctrl-C stops it).",
    ),
}  # fmt: skip


def load_command(name: str) -> Any:
    """The Click command of ``COMMANDS[name]``, its module imported now."""
    import importlib

    module, attribute, short_help = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.help = group.help or short_help
        return group
    one = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
    one.command(name)(target)
    return typer.main.get_command(one)


class _LazyCommands(TyperGroup):
    """The root group: ``COMMANDS`` join it on first use; the help lists their lines."""

    def list_commands(self, ctx) -> list[str]:
        # in Typer's order: the commands, then the groups (their attribute is a Typer `app`)
        groups = [n for n, (_, attribute, _) in COMMANDS.items() if attribute == "app"]
        defined_here = [n for n in super().list_commands(ctx) if n not in COMMANDS]
        return [*(n for n in COMMANDS if n not in groups), *defined_here, *groups]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx, args: list[str]):
        if args and args[0] not in self.list_commands(ctx):  # a typo: Typer's "Did you mean"
            for name in COMMANDS:  # looks among the loaded commands only
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter) -> None:
        """Click's own listing, from ``COMMANDS`` for a command not imported yet."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))  # as Click computes it
        rows = [
            (n, self.commands[n].get_short_help_str(limit) if n in self.commands
             else make_default_short_help(COMMANDS[n][2], limit)) for n in names
        ]  # fmt: skip
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="cnnlab",
    help="Understand what makes a CNN work; fine-tune pretrained CNNs on medical images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=_LazyCommands,
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
