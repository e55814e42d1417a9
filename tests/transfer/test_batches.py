"""Batch sources: decoded images and cached backbone features honour one contract."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.data.folders import LoadedSplit
from cnnlab.transfer.models import Preprocessing, build_model, head_name
from cnnlab.transfer.training.batches import FeatureSource, ImageSource
from cnnlab.transfer.training.features import Backbone, FeatureCache
from cnnlab.transfer.training.loop import probabilities
from cnnlab.transfer.training.recipe import make_sampler

SIZE = 16
CFG = TransferConfig(weights="none", image_size=SIZE, augment="none", batch_size=4)
PRE = Preprocessing(SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


class TinyNet(nn.Module):
    """conv -> global average pool -> linear head ``fc``: a backbone in miniature."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.body(x))


def _split(name: str, n: int, seed: int) -> LoadedSplit:
    images = np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    return LoadedSplit(
        name,
        [Path(f"{name}/{i}.png") for i in range(n)],
        np.arange(n) % 2,
        images,
        [f"{name}{i}" for i in range(n)],
        np.zeros((n, 32), np.uint8),
    )


def _sources(n_train: int = 10, cfg: TransferConfig = CFG):
    torch.manual_seed(0)
    model = TinyNet()
    train, val = _split("train", n_train, 0), _split("val", 5, 1)

    def sampler():  # the same seed for both: the same epoch order
        return make_sampler(cfg, train.labels, torch.Generator().manual_seed(7))

    cpu = torch.device("cpu")
    images = ImageSource(model, train, val, cfg, sampler(), PRE, cpu, channels_last=False)
    backbone = Backbone(model, PRE.mean, PRE.std, cpu, channels_last=False)
    generator = torch.Generator().manual_seed(3)
    features = FeatureSource.build(backbone, train, val, cfg, sampler(), generator)
    return model, train, images, features


def test_both_sources_yield_full_batches_of_labels_in_the_samplers_order():
    _, train, *sources = _sources()
    order = list(make_sampler(CFG, train.labels, torch.Generator().manual_seed(7)))
    for source in sources:
        batches = list(source.train_batches())
        assert source.steps == len(batches) == 2  # 10 images, batch 4: the last 2 dropped
        assert [len(x) for x, _ in batches] == [len(y) for _, y in batches] == [4, 4]
        labels = torch.cat([y for _, y in batches])
        assert labels.dtype == torch.int64
        assert labels.tolist() == train.labels[order[:8]].tolist()


def test_cached_features_through_the_head_give_the_models_logits():
    model, _, images, features = _sources()
    assert images.network is model and features.network is model.fc
    for (x_img, y_img), (x_feat, y_feat) in zip(
        images.train_batches(), features.train_batches(), strict=True
    ):
        assert torch.equal(y_img, y_feat)
        with torch.inference_mode():
            assert torch.allclose(images.network(x_img), features.network(x_feat), atol=1e-5)


def test_both_sources_validate_on_the_whole_val_split_in_file_order():
    _, _, images, features = _sources()
    p_img = probabilities(images.network, images.val_batches())
    p_feat = probabilities(features.network, features.val_batches())
    assert p_img.shape == p_feat.shape == (5, 2)
    np.testing.assert_allclose(p_img, p_feat, atol=1e-5)


def test_a_split_smaller_than_a_batch_is_one_batch_not_dropped():
    _, _, *sources = _sources(n_train=3)
    for source in sources:
        batches = list(source.train_batches())
        assert source.steps == len(batches) == 1 and len(batches[0][1]) == 3


@pytest.mark.parametrize("augment", ["basic", "strong", "radiograph"])
def test_augmented_image_batches_keep_shape_and_dtype(augment):
    cfg = CFG.replace(augment=augment)
    _, _, images, _ = _sources(cfg=cfg)
    x, y = next(iter(images.train_batches()))
    assert x.shape == (4, 3, SIZE, SIZE) and x.dtype == torch.float32 and len(y) == 4


def test_feature_cache_holds_the_backbone_output_of_each_view():
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none")
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    backbone = Backbone(model, (0.5,) * 3, (0.25,) * 3, "cpu")
    cache = FeatureCache.build(backbone, images, "basic", 32, max_views=4, seed=0)
    assert cache.n_views == 2  # basic = as is + mirrored, exactly
    plain = backbone.features(images)
    mirrored = backbone.features(images[:, :, ::-1])
    assert torch.allclose(cache.views[0], plain, atol=1e-5)
    assert torch.allclose(cache.views[1], mirrored, atol=1e-5)
    assert plain.shape == (6, 512) and head_name(model) == "fc"  # head restored


def test_a_feature_batch_draws_each_image_from_one_of_its_views():
    views = torch.stack([torch.zeros(5, 3), torch.ones(5, 3)])  # view 0 all 0, view 1 all 1
    views[:, :, 0] = torch.arange(5.0)  # first feature: the image index
    cache = FeatureCache(views)
    got = cache.batch([4, 0, 2, 2] * 8, torch.Generator().manual_seed(0))
    assert got[:, 0].tolist() == [4.0, 0.0, 2.0, 2.0] * 8
    assert set(got[:, 1].tolist()) == {0.0, 1.0}  # both views drawn


class DropNet(TinyNet):
    """TinyNet with a Dropout on the head's input, as EfficientNet-Lite's ``_dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.drop = nn.Dropout(p)
        del self.fc  # registered again after the dropout, in the order the forward uses them
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.drop(self.body(x)))


def _feature_source(model: nn.Module) -> FeatureSource:
    train, val = _split("train", 8, 0), _split("val", 5, 1)
    backbone = Backbone(model, PRE.mean, PRE.std, "cpu", channels_last=False)
    order = torch.utils.data.SequentialSampler(range(8))  # every epoch in the same order
    return FeatureSource.build(backbone, train, val, CFG, order, torch.Generator())


def test_the_head_trains_on_cached_features_through_the_models_dropout():
    torch.manual_seed(0)
    source = _feature_source(DropNet(0.5))
    assert source.dropout == 0.5
    cached = source.cache.views[0][:4]
    (x1, _), (x2, _) = next(source.train_batches()), next(source.train_batches())
    assert not torch.equal(x1, x2)  # a new mask each pass
    for x in (x1, x2):  # each feature kept at 1 / (1 - p) or dropped
        kept = x != 0
        assert 0 < kept.float().mean() < 1
        assert torch.allclose(x[kept], 2 * cached[kept])
    with torch.inference_mode():
        assert not torch.equal(source.network(x1), source.network(x2))
        once, again = (source.network(next(source.val_batches())) for _ in range(2))
    assert torch.equal(once, again)  # validation: never dropped


@pytest.mark.parametrize("model", [DropNet(0.0), TinyNet()], ids=["p=0", "no dropout"])
def test_without_dropout_the_cached_features_reach_the_head_unchanged(model):
    source = _feature_source(model)
    assert source.dropout == 0.0
    first, second = next(source.train_batches())[0], next(source.train_batches())[0]
    assert torch.equal(first, second) and torch.equal(first, source.cache.views[0][:4])
