"""LP-FT, frozen BatchNorm, warm-up and weight averaging: what each leaves alone and changes."""

import csv

import pytest
import torch
from torch import nn

from cnnlab.console import make_console
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.models import build_model
from cnnlab.transfer.pipeline import train
from cnnlab.transfer.training.averaging import Ema, ema_decay
from cnnlab.transfer.training.recipe import batch_norms, make_optimizer, make_plan, make_scheduler
from cnnlab_testing import cli_error_line

CFG = TransferConfig(weights="none", image_size=32)
LPFT = CFG.replace(
    strategy="lp-ft", epochs=3, probe_epochs=1, optimizer="adamw", lr=1e-3, backbone_lr_factor=0.1
)


def _steps(model, optimizer, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 2, (8,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lp_ft_probe_phase_leaves_every_backbone_tensor_unchanged():
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none")
    plan = make_plan(model, LPFT)
    plan.apply(model, 0)
    optimizer = make_optimizer(plan, LPFT, epoch=0)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(model.fc.weight),
        id(model.fc.bias),
    }
    before = _snapshot(model)
    _steps(model, optimizer)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BatchNorm statistics included: eval mode


def test_lp_ft_fine_tuning_trains_the_backbone_at_the_smaller_rate():
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none")
    plan = make_plan(model, LPFT)
    plan.apply(model, 1)
    optimizer = make_optimizer(plan, LPFT, epoch=1)
    groups = optimizer.param_groups
    assert groups[0]["params"] == [model.fc.weight, model.fc.bias] and groups[0]["lr"] == 1e-3
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups[1:])
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each once
    assert isinstance(optimizer, torch.optim.AdamW) and model.layer1[0].bn1.training
    before = _snapshot(model)
    _steps(model, optimizer, n=1)
    # Adam's first step moves every weight by about its rate: 1e-4 in the backbone
    backbone_step = (model.conv1.weight - before["conv1.weight"]).abs().max().item()
    head_step = (model.fc.weight - before["fc.weight"]).abs().max().item()
    assert 5e-5 < backbone_step <= 1.01e-4 and 5e-4 < head_step <= 1.01e-3


def test_frozen_batch_norm_keeps_its_running_statistics_and_weights():
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none")
    cfg = CFG.replace(strategy="full", freeze_bn=True)
    plan = make_plan(model, cfg)
    plan.apply(model, 0)
    optimizer = make_optimizer(plan, cfg)
    bn_params = {id(p) for m in batch_norms(model) for p in m.parameters()}
    assert not bn_params & {id(p) for g in optimizer.param_groups for p in g["params"]}
    before = _snapshot(model)
    _steps(model, optimizer)
    after = _snapshot(model)
    for key in ("bn1.running_mean", "layer2.0.bn1.running_var", "layer4.1.bn2.weight"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    # the check can fail: without --freeze-bn the statistics move
    plan = make_plan(model, cfg.replace(freeze_bn=False))
    plan.apply(model, 0)
    _steps(model, make_optimizer(plan, cfg.replace(freeze_bn=False)))
    assert not torch.equal(after["bn1.running_mean"], model.state_dict()["bn1.running_mean"])


def test_warmup_ramps_the_rate_linearly_then_follows_the_schedule():
    head = nn.Linear(4, 2)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    sched = make_scheduler(opt, CFG.replace(warmup=0.3, lr=0.1), total_steps=10)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.1])


def test_ema_weights_follow_the_warmed_up_formula_and_copy_batch_norm_buffers():
    torch.manual_seed(0)
    # no bias before BatchNorm: it would get no gradient, and its average would equal it
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2))
    ema = Ema(model, decay=0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    expected = [p.detach().clone() for p in model.parameters()]
    for t in range(30):
        x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))
        assert d == ema_decay(0.9, t)
        expected = [
            d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)
        ]
    for e, a, raw in zip(expected, ema.model.parameters(), model.parameters(), strict=True):
        assert torch.allclose(a, e, atol=1e-6)
        assert not torch.allclose(a, raw, atol=1e-3)  # the average is not the last weights
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)
    assert ema.counterpart(model[2]) is ema.model[2] and not ema.model.training


@pytest.mark.slow
def test_a_tiny_lp_ft_run_probes_then_fine_tunes_with_ema(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"x": 12, "y": 12})
    cfg = LPFT.replace(
        batch_size=8, val_size=0.25, ema=0.9, warmup=0.2, label_smoothing=0.1, freeze_bn=True
    )
    run_dir, m = train(data, tmp_path / "run", cfg, console=make_console(quiet=True))
    with open(run_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert [int(r["stages_trained"]) for r in history] == [0, 5, 5]
    assert m["feature_cache"] is True and m["monitor"] == "loss"  # the probe ran on features


def _cli_error(args, capsys):
    return cli_error_line(capsys, *args)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "lp-ft", "--probe-epochs", "2"], "--probe-epochs"),
        (["--ema", "1"], "--ema"),
        (["--warmup", "0.1", "--schedule", "onecycle"], "--warmup"),
        (["--backbone-lr-factor", "0"], "--backbone-lr-factor"),
        (["--contrast", "sharpen"], "--contrast"),
        (["--augment", "solarize"], "--augment"),
    ],
)
def test_bad_recipe_options_are_one_line_errors(tmp_path, capsys, folder, extra, message):
    line = _cli_error(
        ["transfer", "train", str(folder), "--out", str(tmp_path / "run"), "--epochs", "2", *extra],
        capsys,
    )
    assert message in line and not (tmp_path / "run").exists()
