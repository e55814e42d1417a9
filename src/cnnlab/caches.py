"""Where cnnlab keeps what it can rebuild: one root folder for every cache.

``--cache-dir`` (where a command has it), else ``$CNNLAB_CACHE_DIR``, else
``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``. Under it: ``images/`` (decoded
transfer images), ``onnx/`` (exported networks), ``fashion-mnist/`` (downloaded files) and
``throughput.json`` (the study planner's measurement).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CNNLAB_CACHE_DIR"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The folder holding cnnlab's caches (see the module docstring for the order)."""
    if override:
        return Path(override).expanduser()
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnlab"
