"""Checkpoints: weights + architecture + classes + preprocessing, never an arbitrary pickle."""

import json
import os

import pytest
import safetensors.torch
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.transfer import checkpoint as C
from cnnlab.transfer.models import build_model


def _checkpoint(classes=("cat", "dog"), arch="resnet18") -> C.Checkpoint:
    torch.manual_seed(0)
    model = build_model(arch, len(classes), weights="none", image_size=32)
    return C.Checkpoint(
        arch,
        list(classes),
        32,
        [0.5] * 3,
        [0.25] * 3,
        model.state_dict(),
        threshold=0.4,
        extra={"epoch": 3},
    )


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_keeps_weights_and_metadata(tmp_path, suffix):
    ckpt = _checkpoint()
    path = C.save(ckpt, tmp_path / f"model{suffix}")
    back = C.load(path)
    assert (back.arch, back.class_names, back.image_size) == ("resnet18", ["cat", "dog"], 32)
    assert (back.mean, back.std, back.threshold, back.extra) == (
        [0.5] * 3,
        [0.25] * 3,
        0.4,
        {"epoch": 3},
    )
    for key, value in ckpt.state_dict.items():
        assert torch.equal(back.state_dict[key], value), key
    model = back.build_model()
    assert not model.training and model.fc.out_features == 2


def test_pt_checkpoint_is_plain_data_for_torch_load_weights_only(tmp_path):
    path = C.save(_checkpoint(), tmp_path / "best.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "cnnlab-transfer" and raw["class_names"] == ["cat", "dog"]


class Payload:
    """Unpickling this would create a file: the attack a checkpoint must not allow."""

    marker = ""

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_planted_pickle_payload_is_refused_without_running_it(tmp_path, capsys):
    Payload.marker = str(tmp_path / "pwned")
    ckpt = _checkpoint()
    evil = {**ckpt.meta(), "state_dict": ckpt.state_dict, "note": Payload()}
    path = tmp_path / "best.pt"
    torch.save(evil, path)
    with pytest.raises(CnnlabError, match="refusing to load"):
        C.load(path)
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", "predict", str(path), str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to load" in err[0]
    assert not (tmp_path / "pwned").exists()


def test_class_count_disagreeing_with_the_head_is_one_line_error(tmp_path, capsys, folder):
    ckpt = _checkpoint(classes=("cat", "dog"))
    ckpt.class_names = ["cat", "dog", "bird"]  # metadata edited, head still has 2 outputs
    path = C.save(ckpt, tmp_path / "best.pt")
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", "predict", str(path), str(folder / "a")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "cnnlab: error: checkpoint is inconsistent: it names 3 classes (cat, dog, bird) "
        "but its classifier head has 2 outputs"
    ]


def test_a_plain_state_dict_is_not_mistaken_for_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(build_model("resnet18", 2, weights="none").state_dict(), path)
    with pytest.raises(CnnlabError, match="not a cnnlab transfer checkpoint"):
        C.load(path)


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    path = C.save(_checkpoint(), tmp_path / "best.pt")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CnnlabError, match="not a readable checkpoint"):
        C.load(path)


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("image_size", {"image_size": 10**9}),
        ("std", {"std": [0.25, 0.0, 0.25]}),
        ("std", {"std": [0.25, -1.0, 0.25]}),
        ("mean", {"mean": [0.5, 0.5, 0.5, 0.5]}),
        ("mean", {"mean": [0.5, float("inf"), 0.5]}),
        ("class_names", {"class_names": ["cat", "cat"]}),
        ("threshold", {"threshold": 1.5}),
    ],
)
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_absurd_preprocessing_is_refused_on_load_naming_the_field(tmp_path, suffix, field, edit):
    ckpt = _checkpoint()
    for name, value in edit.items():
        setattr(ckpt, name, value)
    path = C.save(ckpt, tmp_path / f"edited{suffix}")
    with pytest.raises(CnnlabError, match=f"has an invalid {field}: "):
        C.load(path)


def test_non_finite_weights_are_refused_on_load(tmp_path):
    ckpt = _checkpoint()
    ckpt.state_dict["fc.weight"][0, 0] = float("nan")  # what a diverged run would have saved
    path = C.save(ckpt, tmp_path / "best.pt")
    with pytest.raises(CnnlabError, match="invalid state_dict: tensor fc.weight holds NaN"):
        C.load(path)


def test_metadata_that_is_not_a_mapping_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(safetensors.torch.save({"w": torch.zeros(1)}, {"cnnlab": json.dumps([1])}))
    with pytest.raises(CnnlabError, match="not a cnnlab transfer checkpoint"):
        C.load(path)
