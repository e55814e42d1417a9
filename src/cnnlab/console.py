"""The terminal: one Rich console per command and transient progress bars.

Shared by the pipelines so that every command prints the same way: plain lines in logs and
pipes, progress bars only on a terminal, nothing at all with ``quiet``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

Advance = Callable[[int], None]  # called with the number of items just done


def make_console(quiet: bool = False) -> Console:
    return Console(quiet=quiet, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(console: Console, description: str, total: int) -> Iterator[Advance]:
    """A Rich progress bar; yields ``advance(n)``. Transient: leaves the log readable."""
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
