"""cnnlab: understand what makes a CNN work, and put a pretrained one to work on medical images.

Two pipelines share one set of rooms:
- ``cnnlab.fmnist``   Fashion-MNIST CNNs written with Keras 3 (TensorFlow backend by default);
- ``cnnlab.study``    the study engine that repeats, analyses and reports Fashion-MNIST trials;
- ``cnnlab.transfer`` fine-tuning pretrained torchvision CNNs on folder-per-class images;
- shared: ``cnnlab.errors``, ``cnnlab.runs``, ``cnnlab.metrics``, ``cnnlab.plots``,
  ``cnnlab.report``, ``cnnlab.data``.

Heavy frameworks (TensorFlow, torch) are imported only by the pipeline that needs them.
"""

__version__ = "0.1.0"

from cnnlab.errors import CnnlabError

__all__ = ["CnnlabError", "__version__"]
