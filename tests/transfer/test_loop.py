"""The training loop: one epoch learns, the scheduler and MixUp act per batch, evaluation
runs in eval mode."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import RandomSampler

from cnnlab.transfer.training.batches import FeatureSource
from cnnlab.transfer.training.features import FeatureCache
from cnnlab.transfer.training.loop import Diverged, evaluate, train_one_epoch

CLASSES = ["a", "b"]


def _separable(n: int, seed: int):
    """Two Gaussian blobs in 2-D, three standard deviations apart."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.normal(size=(n, 2)) + 3.0 * labels[:, None]
    return torch.as_tensor(x, dtype=torch.float32), labels


def _source(head: nn.Module, n: int = 64, batch_size: int = 8) -> FeatureSource:
    x, labels = _separable(n, seed=0)
    val_x, _ = _separable(32, seed=1)
    g = torch.Generator().manual_seed(0)
    sampler = RandomSampler(range(n), generator=g)
    return FeatureSource(head, FeatureCache(x[None]), labels, val_x, sampler, batch_size, g)


def test_train_one_epoch_reduces_the_loss_on_a_separable_problem():
    torch.manual_seed(0)
    head = nn.Linear(2, 2)
    source = _source(head)
    opt = torch.optim.SGD(head.parameters(), lr=0.2)
    loss_fn = nn.CrossEntropyLoss()
    stats = [train_one_epoch(source, loss_fn, opt, "cpu") for _ in range(5)]
    assert all(s.images == 64 for s in stats)
    assert stats[-1].loss < 0.5 * stats[0].loss
    assert stats[-1].accuracy > 0.9


def test_the_scheduler_steps_once_per_batch_and_lr_reports_the_rate_used():
    head = nn.Linear(2, 2)
    source = _source(head, n=64, batch_size=8)
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (t + 1))
    ticks = []
    stats = train_one_epoch(source, nn.CrossEntropyLoss(), opt, "cpu", sched, progress=ticks.append)
    assert sched.last_epoch == source.steps == 8 and ticks == [1] * 8
    assert stats.lr == 1.0 / 8  # the last step ran at step 8's rate


def test_mix_turns_labels_into_targets_but_accuracy_counts_true_labels():
    head = nn.Linear(2, 2)
    source = _source(head)
    seen = []

    def mix(x, y):
        seen.append(y.clone())
        return x, nn.functional.one_hot(1 - y, 2).float()  # every target flipped

    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(5):
        stats = train_one_epoch(source, nn.CrossEntropyLoss(), opt, "cpu", mix=mix)
    assert len(seen) == 5 * source.steps
    assert stats.accuracy < 0.1  # it learned the flipped targets, measured on the true labels


def test_evaluate_runs_the_network_in_eval_mode_and_restores_its_mode():
    # Dropout(p=1) zeroes every input in training mode; only eval mode lets features through
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        linear.bias.copy_(torch.tensor([1.5, -1.5]))
    network = nn.Sequential(nn.Dropout(p=1.0), linear).train()
    source = _source(network)
    _, val_labels = _separable(32, seed=1)
    m = evaluate(source, val_labels, CLASSES)
    assert m["accuracy"] > 0.9 and m["roc_auc"] > 0.95
    assert network.training


@pytest.mark.parametrize("lr", [1e30, float("inf")])
def test_a_diverging_epoch_stops_at_the_step_whose_loss_exploded(lr):
    torch.manual_seed(0)
    head = nn.Linear(2, 2)
    source = _source(head)
    opt = torch.optim.SGD(head.parameters(), lr=lr)
    with pytest.raises(Diverged, match="the training loss became .* at step 2"):
        train_one_epoch(source, nn.CrossEntropyLoss(), opt, "cpu")


def test_non_finite_validation_outputs_are_divergence_not_metrics():
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.fill_(float("nan"))
    with pytest.raises(Diverged, match="validation outputs"):
        evaluate(_source(head), np.arange(32) % 2, CLASSES)
