"""cnnlab: understand what makes a CNN work, and put a pretrained one to work on medical images.

Two pipelines share one set of rooms:
- ``cnnlab.fmnist``   Fashion-MNIST CNNs written with Keras 3 (TensorFlow backend by default);
- ``cnnlab.study``    the study engine that repeats, analyses and reports Fashion-MNIST trials;
- ``cnnlab.transfer`` fine-tuning pretrained torchvision CNNs on folder-per-class images;
- shared: ``cnnlab.errors``, ``cnnlab.runs``, ``cnnlab.metrics``, ``cnnlab.plots``,
  ``cnnlab.report``, ``cnnlab.data``.

From Python or a notebook: ``from cnnlab import fmnist`` (``fmnist.train("fast")`` returns the
trained Keras model and its metrics) or ``from cnnlab import transfer``; see their docstrings.
Heavy frameworks (TensorFlow, torch) are imported only when a pipeline's function is called.
"""

__version__ = "0.1.0"

import importlib

from cnnlab.errors import CnnlabError

__all__ = ["CnnlabError", "__version__", "fmnist", "study", "transfer"]


def __getattr__(name: str):
    # `import cnnlab; cnnlab.fmnist.training(...)` without importing the pipelines up front
    if name in ("fmnist", "study", "transfer"):
        return importlib.import_module(f"cnnlab.{name}")
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
