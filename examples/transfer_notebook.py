"""Transfer learning from Python, as in a notebook: fine-tune, read the metrics, classify.

    python examples/transfer_notebook.py ../shared/data/chest-xray-pneumonia --limit 200
    python examples/transfer_notebook.py IMAGES --weights none --image-size 32   # no download

IMAGES holds one folder per class (or train/, val/, test/ with one folder per class each).
"""

import argparse
import tempfile
from pathlib import Path

import torch

from cnnlab import transfer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("images", type=Path, help="one folder per class, or train/ (+ val/, test/)")
parser.add_argument("--weights", default="imagenet", help="imagenet, none or a state-dict file")
parser.add_argument("--image-size", type=int, default=160)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--limit", type=int, default=None, help="at most N images per split folder")
parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()) / "run")
args = parser.parse_args()

# 1. Fine-tune: the default config (resnet18, head only) with some fields changed.
result = transfer.train(
    out=args.out, data_dir=args.images, progress=False, weights=args.weights,
    image_size=args.image_size, epochs=args.epochs, limit=args.limit, device="cpu",
)  # fmt: skip
m = result.metrics
print(f"{m['evaluated_on']}: balanced accuracy {m['balanced_accuracy']:.3f}, AUC {m['roc_auc']}")
if "operating_point" in m:  # two classes: the threshold chosen on validation data
    op = m["operating_point"]
    print(f"threshold {op['threshold']:.2f}: sensitivity {op['sensitivity']:.3f}, "
          f"specificity {op['specificity']:.3f}")  # fmt: skip

# 2. Classify image files (or whole folders): one row per image.
some = sorted(p for p in args.images.rglob("*") if p.is_file() and not p.name.startswith("."))
for row in transfer.predict(result, some[:4], device="cpu"):
    print(f"{row['path']}: {row['predicted']} ({row['probability']:.2f})")

# 3. The model is a plain torch.nn.Module: the checkpoint says what its outputs mean.
size = result.checkpoint.image_size
with torch.no_grad():
    logits = result.model(torch.zeros(1, 3, size, size))
names = result.checkpoint.class_names
print(f"{type(result.model).__name__}: outputs {names} {tuple(logits.shape)}")
print(f"run directory: {result.out}")
