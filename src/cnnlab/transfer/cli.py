"""Sub-commands (filled in by the pipeline's module)."""

import typer

app = typer.Typer(no_args_is_help=True)
