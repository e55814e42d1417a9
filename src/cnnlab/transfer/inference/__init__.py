"""Inference with a saved checkpoint: ``predict`` (rows, Grad-CAM, ``transfer evaluate``),
``engines`` (PyTorch eager or ONNX Runtime), ``export`` (ONNX, safetensors)."""
