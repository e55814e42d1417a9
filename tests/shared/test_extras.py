"""Installs that fit the user: each pipeline's framework is an extra (pyproject.toml), and a
command whose framework is missing says in one line which extra to install, exit 2.

A missing package is simulated (tests/shared/missing_modules.py); the real installs of each
extra into fresh virtualenvs are measured in docs/install.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.runtime import EXTRAS, extra_of, requires

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("missing_modules.py")
KERAS_LINE = (
    "cnnlab: error: the Fashion-MNIST commands need TensorFlow and Keras: "
    "pip install 'cnnlab[keras]'"
)
TRANSFER_LINE = (
    "cnnlab: error: the transfer commands need PyTorch and torchvision: "
    "pip install 'cnnlab[transfer]'"
)


def without(modules: str, *args: str | Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """``cnnlab ARGS`` in a fresh process where the comma-separated ``modules`` are absent."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, str(RUNNER), modules, *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- pyproject.toml ------------------------------------------------------------------------


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
            for r in requirements}  # fmt: skip


def test_the_core_install_holds_no_deep_learning_framework():
    core = names(project()["dependencies"])
    assert not core & {"torch", "torchvision", "tensorflow", "tensorflow-cpu", "keras", "gradio"}
    assert {"numpy", "optuna", "typer", "scikit-learn", "statsmodels"} <= core


def test_each_framework_extra_holds_one_framework_with_the_measured_pins():
    extras = project()["optional-dependencies"]
    assert {"tensorflow-cpu", "tensorflow"} <= names(extras["keras"])  # chosen by platform
    assert not names(extras["keras"]) & {"torch", "torchvision"}
    # an unpinned torchvision replaces torch with another build
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(extras["transfer"])
    assert not names(extras["transfer"]) & {"tensorflow", "tensorflow-cpu", "keras"}
    assert "tensorboard" in names(extras["keras"]) & names(extras["transfer"])


# (sys_platform, platform_system, platform_machine) as pip's markers see each machine
PLATFORMS = {
    "linux x86-64": ("linux", "Linux", "x86_64"),
    "windows x86-64": ("win32", "Windows", "AMD64"),
    "apple silicon": ("darwin", "Darwin", "arm64"),
    "linux arm64": ("linux", "Linux", "aarch64"),
}


@pytest.mark.parametrize(
    ("platform", "package"),
    [
        # tensorflow-cpu 2.21.0 has wheels for these two only (PyPI's file list) ...
        ("linux x86-64", "tensorflow-cpu==2.21.0"),
        ("windows x86-64", "tensorflow-cpu==2.21.0"),
        # ... tensorflow 2.21.0 also for macOS arm64 and Linux aarch64
        ("apple silicon", "tensorflow==2.21.0"),
        ("linux arm64", "tensorflow==2.21.0"),
    ],
)
def test_the_keras_extra_installs_the_tensorflow_that_has_wheels_for_the_machine(platform, package):
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    keys = ("sys_platform", "platform_system", "platform_machine")
    environment = {**default_environment(), **dict(zip(keys, PLATFORMS[platform], strict=True))}
    chosen = [
        f"{r.name}{r.specifier}"
        for r in map(Requirement, project()["optional-dependencies"]["keras"])
        if r.name.startswith("tensorflow") and (r.marker is None or r.marker.evaluate(environment))
    ]
    assert chosen == [package]


def test_all_is_every_user_extra_and_make_installs_it_with_the_test_tools():
    extras = project()["optional-dependencies"]
    assert extras["all"] == ["cnnlab[keras,transfer,serve,dicom,tracking]"]
    assert "gradio" not in names(extras["dev"])  # dev is test tools only
    assert "-e '.[all,dev]'" in (ROOT / "Makefile").read_text()


def test_the_helper_knows_the_extras_of_pyproject():
    assert set(EXTRAS) == set(project()["optional-dependencies"]) - {"all", "dev"}


# --- the one line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--preset", "tutorial", "--out", "{tmp}/run"],
        ["evaluate", "{tmp}"],
        ["predict", "{tmp}", "{tmp}/shirt.png"],
        ["demo", "--single-run", "--out", "{tmp}/demo"],
        ["study", "run", "--profile", "smoke", "--storage", "sqlite:///{tmp}/study.db"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_keras_command_without_tensorflow_names_the_keras_extra(tmp_path, args):
    result = without("tensorflow,keras", *(a.format(tmp=tmp_path) for a in args))
    assert one_error_line(result) == KERAS_LINE
    assert list(tmp_path.iterdir()) == []  # nothing started: no run directory, no storage


@pytest.mark.parametrize(
    "args",
    [
        ["train", "{tmp}", "--out", "{tmp}/run"],
        ["predict", "{tmp}", "{tmp}"],
        ["evaluate", "{tmp}", "{tmp}"],
        ["export", "{tmp}", "--out", "{tmp}/model.onnx"],
    ],
    ids=lambda a: a[0],
)
def test_a_transfer_command_without_torch_names_the_transfer_extra(tmp_path, args):
    result = without("torch,torchvision", "transfer", *(a.format(tmp=tmp_path) for a in args))
    assert one_error_line(result) == TRANSFER_LINE
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model_file", "absent", "line"),
    [
        ("model.keras", "tensorflow,keras", KERAS_LINE),
        ("best.pt", "torch,torchvision", TRANSFER_LINE),
    ],
    ids=["fmnist run", "transfer run"],
)
def test_serving_a_run_without_its_framework_names_its_extra(tmp_path, model_file, absent, line):
    (tmp_path / model_file).write_bytes(b"")  # the file that tells the pipeline apart
    result = without(absent, "serve", tmp_path, "--port", free_port())
    assert one_error_line(result) == line


def test_serve_without_gradio_names_the_serve_extra(tmp_path):
    result = without("gradio", "serve", tmp_path, "--port", free_port())
    assert one_error_line(result) == "cnnlab: error: cnnlab serve needs Gradio: " + (
        "pip install 'cnnlab[serve]'"
    )


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["train", "--preset", "tutorial", "--data-dir", "{tmp}/none"], "keras"),
        (["transfer", "train", "{tmp}/none", "--weights", "none"], "transfer"),
    ],
    ids=["fmnist", "transfer"],
)
def test_tensorboard_missing_is_named_before_training(tmp_path, args, extra):
    result = without(
        "tensorboard", *(a.format(tmp=tmp_path) for a in args),
        "--out", tmp_path / "run", "--tensorboard", tmp_path / "tb",
    )  # fmt: skip
    line = one_error_line(result)
    assert "(no module 'tensorboard')" in line and line.endswith(f"'cnnlab[{extra}]'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--preset", "tutorial", "--data-dir", "{tmp}/none"],
        ["transfer", "train", "{tmp}/none", "--weights", "none"],
    ],
    ids=["fmnist", "transfer"],
)
@pytest.mark.parametrize("flag", [["--mlflow"], ["--mlflow-uri", "{tmp}/mlruns"]])
def test_mlflow_missing_is_named_before_anything_else(tmp_path, args, flag):
    given = [a.format(tmp=tmp_path) for a in [*args, "--out", "{tmp}/run", *flag]]
    line = one_error_line(without("mlflow", *given))
    assert line == "cnnlab: error: --mlflow needs MLflow: pip install 'cnnlab[tracking]'"
    assert list(tmp_path.iterdir()) == []  # no run directory, no store, no data looked at


def test_help_and_the_core_commands_work_without_any_framework():
    absent = "tensorflow,keras,torch,torchvision,gradio,tensorboard,mlflow"
    assert without(absent, "--help").returncode == 0
    result = without(absent, "study", "plan", "--profile", "smoke")
    assert result.returncode == 0, result.stderr
    assert "distinct trials" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("absent", "modules"),
    [
        (
            "torch,torchvision",
            "cnnlab.fmnist.training,cnnlab.fmnist.inference,cnnlab.fmnist.tensorboard",
        ),
        (
            "tensorflow,keras",
            "cnnlab.transfer.pipeline,cnnlab.transfer.inference.predict,"
            "cnnlab.transfer.inference.export,cnnlab.transfer.training.tensorboard",
        ),
    ],
    ids=["keras without torch", "transfer without tensorflow"],
)
def test_each_pipeline_imports_without_the_other_framework(absent, modules):
    result = without(absent, "--import", modules)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("imported")


# --- which ModuleNotFoundError becomes the line ----------------------------------------------


def command_raising(missing: str):
    @requires("transfer")
    def command() -> None:
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    return command


def test_a_module_of_the_extra_missing_mid_command_is_named_in_the_line():
    with pytest.raises(CnnlabError) as caught:
        command_raising("onnxruntime.capi")()  # `transfer export --verify`, say
    assert "(no module 'onnxruntime')" in str(caught.value)
    assert str(caught.value).endswith("pip install 'cnnlab[transfer]'")


@pytest.mark.parametrize("missing", ["cnnlab.transfer.nope", "yaml", "tensorflow"])
def test_any_other_missing_module_keeps_its_traceback(missing):
    with pytest.raises(ModuleNotFoundError):  # a bug, not an install choice
        command_raising(missing)()


def test_the_module_is_matched_by_its_top_level_name():
    error = ModuleNotFoundError("x", name="torchvision.transforms.v2")
    assert extra_of(error, ("keras", "transfer")) == "transfer"
    assert extra_of(ModuleNotFoundError("x", name="torchvisionx"), ("transfer",)) is None
    assert extra_of(ModuleNotFoundError("x"), ("transfer",)) is None  # no name: not ours


def test_the_wrapped_command_keeps_its_signature_for_typer():
    import inspect

    def command(run_dir: str, *, port: int = 7860) -> None: ...

    assert inspect.signature(requires("serve")(command)) == inspect.signature(command)
