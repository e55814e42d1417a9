"""The CNN, built from a TrainConfig with Keras layers only (so every Keras backend runs it).

Input: raw pixel values (batch, 28, 28, 1) in 0..255, as stored in Fashion-MNIST. Augmentation
and scaling are layers inside the model, so a saved ``model.keras`` takes raw images and
augments only while training.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from cnnlab.fmnist.config import TrainConfig

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def augmentation(config: TrainConfig) -> keras.Sequential:
    """Light augmentation that keeps a garment a garment (Keras preprocessing layers, which
    are active only in training): shifts of a few pixels (``shift``), mirror images (``flip``:
    clothes are roughly left-right symmetric, so a mirror image is a new plausible example),
    and random erasing (``erasing``: hides part of the garment so the net cannot rely on one
    region). The parts that are off are left out."""
    seed, parts = config.seed, []
    if config.shift > 0:
        parts.append(
            keras.layers.RandomTranslation(
                config.shift, config.shift, fill_mode="constant", fill_value=0.0, seed=seed
            )
        )
    if config.flip:
        parts.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))
    if config.erasing > 0:
        # factor=(p, p): erase with probability p (a single float would draw p from 0..f)
        parts.append(
            keras.layers.RandomErasing(
                factor=(config.erasing, config.erasing),
                scale=(0.02, 0.25),
                fill_value=0.0,
                seed=seed + 2,
            )
        )
    return keras.Sequential(parts, name="augment")


def predict_proba(
    model: keras.Model, x, *, tta: bool = False, tta_shift: int = 0, batch_size: int = 1024
) -> np.ndarray:
    """Class probabilities (N, 10) of raw images ``x`` (N, 28, 28, 1): with test-time
    augmentation, the mean of the probabilities of the views of :func:`tta_views`."""
    views = tta_views(np.asarray(x, dtype=np.float32), tta=tta, tta_shift=tta_shift)
    return view_probabilities(model, views, batch_size).mean(axis=0).astype(np.float32)


def view_probabilities(
    model: keras.Model, views: Sequence[np.ndarray], batch_size: int = 1024
) -> np.ndarray:
    """Class probabilities of every view, stacked: (views, N, 10)."""
    return np.stack([model.predict(v, batch_size=batch_size, verbose=0) for v in views])


def tta_views(x, *, tta: bool = False, tta_shift: int = 0) -> list[np.ndarray]:
    """The views of images (N, H, W, C) averaged at test time, the images themselves first:
    without ``tta`` only them; with it also their mirror images; with ``tta_shift`` also each
    of these two moved ``tta_shift`` pixels up, down, left and right (10 views in all)."""
    x = np.asarray(x)
    views = [x]
    if tta:
        views.append(mirror(x))
    if tta and tta_shift:
        for dy, dx in ((-tta_shift, 0), (tta_shift, 0), (0, -tta_shift), (0, tta_shift)):
            views += [translate(x, dy, dx), translate(views[1], dy, dx)]
    return views


def describe_tta(tta: bool, tta_shift: int = 0) -> str:
    """The views of :func:`tta_views` in words."""
    if not tta:
        return "one view of each test image"
    if not tta_shift:
        return "test images evaluated with their mirror images, averaged"
    px = "pixel" if tta_shift == 1 else "pixels"
    return (
        "each test image evaluated as 10 views, averaged: itself and its mirror image, and "
        f"both moved {tta_shift} {px} up, down, left and right"
    )


def mirror(x) -> np.ndarray:
    """Images (N, H, W, C) mirrored left to right."""
    return np.ascontiguousarray(np.asarray(x)[:, :, ::-1, :])


def translate(x, dy: int, dx: int) -> np.ndarray:
    """Images (N, H, W, C) moved ``dy`` pixels down and ``dx`` right; the pixels uncovered
    are 0, Fashion-MNIST's black background."""
    x = np.asarray(x)
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def build_model(config: TrainConfig) -> keras.Model:
    """A ``keras.Model`` for ``config`` (not compiled)."""
    regularizer = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    if config.augment:
        x = augmentation(config)(x)
    x = layers.Rescaling(1.0 / 255, name="scale")(x)
    pool = layers.MaxPooling2D if config.pooling == "max" else layers.AveragePooling2D
    for block, filters in enumerate(config.filters):
        for i in range(config.convs_per_block):
            first = block == 0 and i == 0
            last = i == config.convs_per_block - 1
            kernel = config.first_kernel_size if first and config.first_kernel_size else None
            x = layers.Conv2D(
                filters,
                kernel or config.kernel_size,
                padding=config.padding,
                # a bias before batch norm is cancelled by its mean subtraction
                use_bias=not config.batch_norm,
                activation=None if config.batch_norm else config.activation,
                kernel_regularizer=regularizer,
                name=f"conv{block + 1}_{i + 1}",
            )(x)
            if last and config.batch_norm:
                # Normalise after pooling (as airbench does): a quarter of the pixels, so batch
                # norm (unfused in Keras 3, slow on CPU) costs a quarter of the time.
                x = pool(2, padding=config.pool_padding, name=f"pool{block + 1}")(x)
            if config.batch_norm:
                x = layers.BatchNormalization(
                    momentum=config.batch_norm_momentum, name=f"bn{block + 1}_{i + 1}"
                )(x)
                x = layers.Activation(config.activation, name=f"act{block + 1}_{i + 1}")(x)
        if not config.batch_norm:
            x = pool(2, padding=config.pool_padding, name=f"pool{block + 1}")(x)
    if config.global_pool:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    if config.dense_units:
        x = layers.Dense(
            config.dense_units,
            use_bias=not config.batch_norm,
            activation=None if config.batch_norm else config.activation,
            kernel_regularizer=regularizer,
            name="dense",
        )(x)
        if config.batch_norm:
            x = layers.BatchNormalization(momentum=config.batch_norm_momentum, name="bn_dense")(x)
            x = layers.Activation(config.activation, name="act_dense")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    outputs = layers.Dense(
        NUM_CLASSES, activation="softmax", kernel_regularizer=regularizer, name="classifier"
    )(x)
    return keras.Model(inputs, outputs, name="fmnist_cnn")


def architecture_cost(config: TrainConfig) -> dict[str, object]:
    """What the network of ``config`` costs, from the built model: ``params``, the forward
    pass's ``multiply_adds`` per image (convolutions and dense layers; pooling, batch norm and
    activations are a few percent at most and not counted) and the ``features`` map the
    classifier reads, as (height, width, channels) or (units,) after global pooling."""
    model = build_model(config)
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            height, width = layer.output.shape[1:3]
            kh, kw, cin, cout = layer.kernel.shape
            macs += height * width * kh * kw * cin * cout
        elif isinstance(layer, layers.Dense):
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    name = "global_pool" if config.global_pool else "flatten"
    features = tuple(int(d) for d in model.get_layer(name).input.shape[1:])
    if config.global_pool:
        features = features[-1:]
    return {"params": int(model.count_params()), "multiply_adds": int(macs), "features": features}
