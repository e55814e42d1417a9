"""Fashion-MNIST from Python, as in a notebook: train, look at the numbers, classify, reload.

python examples/fmnist_notebook.py                      # `fast` on 2,000 images, 1 epoch
python examples/fmnist_notebook.py --preset strong --train-limit 60000 --epochs 18
"""

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np

from cnnlab import fmnist
from cnnlab.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--preset", default="fast", choices=list(fmnist.PRESETS))
parser.add_argument("--train-limit", type=int, default=2000)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()) / "run")
args = parser.parse_args()

# 1. Train a preset with some fields changed; the result holds the trained Keras model.
result = fmnist.train(
    args.preset, epochs=args.epochs, train_limit=args.train_limit, out=args.out, progress=False
)
m = result.metrics
print(f"test accuracy {m['test_accuracy']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f}")
for row in result.history:
    print(f"epoch {row['epoch']}: validation accuracy {row['val_accuracy']:.4f}")

# 2. Classify raw pixels (0..255), with the test-time augmentation the run was evaluated with.
x = load_fashion_mnist(progress=False).x_test[:8]
proba = fmnist.predict_proba(result, x)
print("8 test images:", ", ".join(CLASS_NAMES[k] for k in proba.argmax(axis=1)))

# 3. The run's model.keras is a plain Keras file: no cnnlab needed to load it.
model = keras.saving.load_model(args.out / "model.keras")
x = x[..., None].astype("float32")
gap = np.abs(model.predict(x, verbose=0) - result.model.predict(x, verbose=0)).max()
print(f"reloaded {type(model).__name__} {model.name}: largest difference {gap:.1e}")
print(f"run directory: {args.out}")
