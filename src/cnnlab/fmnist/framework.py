"""Imported first by the modules the CLI starts from (``train``, ``evaluate``), before Keras.

Two things must happen before Keras is imported, and both are start-up only:

- The backend is checked: Keras fails on an unknown or missing one with a traceback at its own
  import (``ValueError: Unable to import backend : bogus``, ``No module named 'jax'``); here it
  is one :class:`~cnnlab.errors.CnnlabError` line naming the supported backends.
- TensorFlow is imported with the C++ log lines it prints while loading kept off the terminal,
  when ``TF_CPP_MIN_LOG_LEVEL`` asks for quiet (the CLI sets 3 unless ``--verbose``: see
  :func:`cnnlab.runtime.quiet_framework_logs`). TensorFlow 2.21 writes them before its
  logging reads that variable (an absl bug, tensorflow/tensorflow#102212), so every error would
  otherwise reach the user as four lines of noise and then the one cnnlab line. At level 3 its
  Python logger is also limited to errors (no retracing notices). Python-level errors and
  warnings still show.
"""

from __future__ import annotations

from cnnlab.runtime import import_tensorflow, require_supported_backend

if require_supported_backend() == "tensorflow":
    import_tensorflow()
