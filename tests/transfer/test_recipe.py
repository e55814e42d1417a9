"""The recipe: imbalance handling, which layers train when, learning rates, model selection."""

import math

import numpy as np
import pytest
import torch

from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.models import build_model
from cnnlab.transfer.training.recipe import (
    better,
    make_loss,
    make_mix,
    make_optimizer,
    make_plan,
    make_sampler,
    make_scheduler,
)

LABELS = np.array([0] * 90 + [1] * 10)
CFG = TransferConfig(weights="none", image_size=32)


def test_balance_weights_weighs_the_loss_by_inverse_class_frequency():
    loss = make_loss(CFG.replace(balance="weights"), LABELS, 2, "cpu")
    assert loss.weight.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])
    assert make_loss(CFG, LABELS, 2, "cpu").weight is None


def test_balance_sampler_draws_classes_about_equally():
    g = torch.Generator().manual_seed(0)
    drawn = [i for _ in range(20) for i in make_sampler(CFG.replace(balance="sampler"), LABELS, g)]
    minority = np.mean(LABELS[drawn] == 1)
    assert len(drawn) == 2000 and 0.45 < minority < 0.55
    plain = list(make_sampler(CFG, LABELS, g))
    assert sorted(plain) == list(range(100))  # a permutation: every image once


# The expectations below come from the model itself (parameter order, module types), not from
# a list of layer names per strategy: such a list would restate the plan it tests.
def _applied(strategy: str, epoch: int = 0) -> torch.nn.Module:
    model = build_model("resnet18", 2, weights="none")
    make_plan(model, CFG.replace(strategy=strategy)).apply(model, epoch)
    return model


def _trained(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("strategy", "epoch"), [("head", 0), ("partial", 0), ("full", 0),
                                                 ("gradual", 0), ("gradual", 2)])  # fmt: skip
def test_a_strategy_trains_the_layers_nearest_the_output_and_freezes_the_rest(strategy, epoch):
    model = _applied(strategy, epoch)
    # parameters are registered from input to output: what trains is a suffix of them
    mask = [p.requires_grad for p in model.parameters()]
    assert any(mask) and mask == sorted(mask)
    # a frozen BatchNorm keeps its running statistics (eval mode); a trained one updates them
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.training == m.weight.requires_grad for m in norms)


def test_head_trains_the_classifier_partial_one_stage_more_and_full_everything():
    head, partial, full = (_trained(_applied(s)) for s in ("head", "partial", "full"))
    model = build_model("resnet18", 2, weights="none")
    [classifier] = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert head == {f"{classifier}.weight", f"{classifier}.bias"}
    assert full == {n for n, _ in model.named_parameters()}
    assert head < partial < full
    assert len({n.split(".")[0] for n in partial - head}) == 1  # one top-level stage
    assert _trained(_applied("gradual", 0)) == head  # gradual starts as head, then grows
    assert _trained(_applied("gradual", 1)) == partial  # unfreeze_every=1: a stage an epoch


def test_gradual_unfreezes_one_stage_every_unfreeze_every_epochs_up_to_all():
    model = build_model("resnet18", 2, weights="none")
    plan = make_plan(model, CFG.replace(strategy="gradual", unfreeze_every=2))
    assert len(plan.stages) == 5  # stem, layer1..layer4
    assert [plan.stages_trained(e) for e in range(13)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]


def test_a_later_epoch_of_the_plan_freezes_nothing_an_earlier_one_trained():
    model = build_model("resnet18", 2, weights="none")
    plan = make_plan(model, CFG.replace(strategy="gradual"))
    seen = set()
    for epoch in range(6):
        plan.apply(model, epoch)
        now = {n for n, p in model.named_parameters() if p.requires_grad}
        assert seen <= now
        seen = now
    assert seen == {n for n, _ in model.named_parameters()}


def test_gradual_uses_discriminative_learning_rates():
    model = build_model("resnet18", 2, weights="none")
    cfg = CFG.replace(strategy="gradual", lr=1e-3, lr_decay=0.5)
    lrs = [g["lr"] for g in make_optimizer(make_plan(model, cfg), cfg).param_groups]
    assert lrs == pytest.approx(
        [1e-3, 1e-3 * 0.5**5, 1e-3 * 0.5**4, 1e-3 * 0.5**3, 1e-3 * 0.5**2, 1e-3 * 0.5]
    )


def test_head_strategy_optimizes_only_the_head():
    model = build_model("resnet18", 2, weights="none")
    cfg = CFG.replace(strategy="head")
    groups = make_optimizer(make_plan(model, cfg), cfg).param_groups
    params = {id(p) for g in groups for p in g["params"]}
    assert params == {id(model.fc.weight), id(model.fc.bias)}


def test_cosine_schedule_decays_from_lr_to_zero_over_the_run():
    head = torch.nn.Linear(4, 2)
    cfg = CFG.replace(schedule="cosine", lr=0.1)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr)
    sched = make_scheduler(opt, cfg, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs == sorted(lrs, reverse=True)
    assert lrs[5] == pytest.approx(0.05) and opt.param_groups[0]["lr"] == pytest.approx(0)
    assert make_scheduler(opt, CFG, 10) is None  # constant


def test_mix_is_off_by_default_and_mixes_targets_when_on():
    assert make_mix(CFG, 3) is None
    mix = make_mix(CFG.replace(mixup=0.4), 3)
    x, y = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    mixed, target = mix(x, y)
    assert mixed.shape == x.shape and target.shape == (8, 3)
    assert torch.allclose(target.sum(1), torch.ones(8))  # soft labels, still distributions


@pytest.mark.parametrize(
    ("monitor", "value", "best", "expected"),
    [
        ("balanced_accuracy", 0.8, 0.7, True),
        ("balanced_accuracy", 0.7, 0.7, False),  # a tie keeps the earlier epoch
        ("loss", 0.3, 0.4, True),
        ("loss", 0.5, 0.4, False),
        ("roc_auc", None, None, True),  # undefined on the first epoch: still a checkpoint
        ("roc_auc", None, 0.6, False),
        ("roc_auc", math.nan, 0.6, False),
        ("roc_auc", 0.6, None, True),
    ],
)
def test_better_compares_in_the_monitors_direction(monitor, value, best, expected):
    assert better(monitor, value, best) is expected


def test_partial_on_efficientnet_lite_trains_its_last_blocks_not_only_the_1x1_conv():
    model = build_model("efficientnet_lite0", 2, weights="none", image_size=32)
    plan = make_plan(model, CFG.replace(arch="efficientnet_lite0", strategy="partial"))
    plan.apply(model, 0)
    trained = {
        n.rsplit(".", 1)[0].split("._")[0] for n, p in model.named_parameters() if p.requires_grad
    }
    expected = {f"_blocks.{i}" for i in range(11, 16)} | {"_conv_head", "_bn1", "_fc"}
    assert trained == expected


@pytest.mark.parametrize("strategy", ["head", "partial", "full"])
def test_the_dropout_on_the_heads_input_trains_with_the_head(strategy):
    from cnnlab.transfer.models import head_dropout

    model = build_model("efficientnet_lite0", 2, weights="none", image_size=32)
    assert head_dropout(model) is model._dropout and model._dropout.p == 0.2
    make_plan(model, CFG.replace(arch="efficientnet_lite0", strategy=strategy)).apply(model, 0)
    assert model._dropout.training  # in eval with the frozen backbone it never acted
    assert model._bn0.training is (strategy == "full")
    resnet = build_model("resnet18", 2, weights="none", image_size=32)
    assert head_dropout(resnet) is None
    torchvision_model = build_model("efficientnet_b0", 2, weights="none", image_size=32)
    assert head_dropout(torchvision_model) is torchvision_model.classifier[0]
