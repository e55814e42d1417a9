"""Training: ``transforms`` (named train/eval transform presets), ``recipe`` (loss, sampling,
optimizer, schedule), ``batches`` and ``features`` (where batches come from), ``loop`` (one
epoch), ``fit`` (epochs, best state), ``distributed`` (torchrun), ``tensorboard``."""
