"""``cnnlab serve``: parses, then hands over to :func:`cnnlab.serve.serve` (Gradio and the
run's framework are imported only there)."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab.runtime import requires


@requires("serve", "keras", "transfer")  # Gradio, then the run's own framework
def serve_command(
    run_dir: Path = typer.Argument(
        ..., help="A run directory from `cnnlab train` or `cnnlab transfer train`."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; 0.0.0.0 exposes the page to the network."
    ),
    port: int = typer.Option(7860, help="Port to listen on."),
    tta: bool = typer.Option(
        False, "--tta", help="Transfer runs: average each image's and its flip's softmax."
    ),
    ensemble: list[Path] = typer.Option(
        [],
        "--ensemble",
        metavar="RUN",
        help="Transfer runs: also this run; average the runs' probabilities (repeatable).",
    ),
    adapt_bn: Path | None = typer.Option(
        None,
        "--adapt-bn",
        metavar="DIR",
        help="Transfer runs, opt-in: re-estimate BatchNorm statistics on the unlabelled "
        "images under DIR (a new site) once, at start-up.",
    ),
) -> None:
    """A web page that classifies uploaded images with a finished run (Ctrl-C stops it)."""
    from cnnlab.serve import serve

    serve(run_dir, host, port, tta, ensemble, adapt_bn)
