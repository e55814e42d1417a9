"""Issue 27, the output side of ``cnnlab transfer``: no output lands on a file the user owns.

Every repro runs the real CLI (in this process, as a child would see it: ``run_main``; Ctrl-C
in a child of its own) and checks the contract of the fault-injection
suite (``test_faults.py``, whose helpers it reuses): exit 2, one ``cnnlab: error:`` line, no
traceback, and every file under the watched folders byte-identical afterwards.

Unwritable folders: the tests run as root, for whom permission bits do not apply, so they
write under ``/sys``, where the kernel refuses to create a file for anyone (EACCES).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab_testing import CliResult, cnnlab_env, run_main

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("transfer_faults", HERE / "test_faults.py")
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)
cnnlab, snapshot, refused = faults.cnnlab, faults.snapshot, faults.refused_without_a_trace
images, TINY = faults.images, faults.TINY  # fixture (run_dir is in conftest.py), options
UNWRITABLE = Path("/sys/cnnlab-cannot-write-here")


def cnnlab_in(cwd: Path, *args, umask: int | None = None) -> CliResult:
    """``cnnlab transfer ARGS`` run from the folder ``cwd`` (and under ``umask``)."""
    return run_main("transfer", *args, cwd=cwd, umask=umask)


# -- data loss: an output onto an input --------------------------------------------------------


@pytest.mark.slow
def test_predict_never_writes_onto_the_model_it_reads(tmp_path, run_dir, images):
    for out in (run_dir / "best.pt", run_dir / "predictions.csv"):
        for extra in ((), ("--overwrite",)):
            line = refused(
                "predict", run_dir, images, "--out", out, *extra, watch=(run_dir, images)
            )
            assert "the model" in line


def test_predict_never_writes_into_an_image_folder_it_reads(tmp_path, run_dir, images):
    line = refused(
        "predict", run_dir, images, "--out", images / "a" / "p.csv", watch=(run_dir, images)
    )
    assert "an image input" in line


def test_an_existing_csv_is_replaced_only_with_overwrite(tmp_path, run_dir, images):
    notes = tmp_path / "notes.csv"
    notes.write_text("a user's own notes\n")
    line = refused("predict", run_dir, images, "--out", notes, watch=(tmp_path, run_dir))
    assert "exists" in line and "--overwrite" in line
    assert cnnlab("predict", run_dir, images, "--out", notes, "--overwrite").returncode == 0
    assert notes.read_text().startswith("path,")


def test_existing_overlays_are_replaced_only_with_overwrite(tmp_path, run_dir, images):
    cams = tmp_path / "cams"
    cams.mkdir()
    (cams / "a_000_cam.png").write_bytes(b"a user's picture")
    files = sorted((images / "a").iterdir())[:1]
    assert files[0].stem == "000"
    line = refused("predict", run_dir, *files, "--cam", cams, watch=(tmp_path, run_dir))
    assert "a_000_cam.png exists" in line


@pytest.mark.slow
def test_compare_never_writes_into_a_run_it_reads(trained_run):
    for extra in ((), ("--overwrite",)):
        line = refused(
            "compare", trained_run, trained_run, "--out", trained_run / "metrics.json", *extra,
            watch=(trained_run,),
        )  # fmt: skip
        assert "a run" in line


@pytest.mark.slow
def test_evaluate_up_from_a_class_folder_never_replaces_the_run(trained_run, tmp_path):
    """Repro 2: from inside a class folder, ``evaluate RUN ..`` wrote RUN/evaluations/..,
    which is RUN itself, and --overwrite replaced the whole training run."""
    before = snapshot(trained_run)
    classes = tmp_path / "held-out"
    for name in ("a", "b"):
        (classes / name).mkdir(parents=True)
        for src in sorted((trained_run.parent / "data" / name).iterdir())[:2]:
            (classes / name / src.name).write_bytes(src.read_bytes())
    result = cnnlab_in(classes / "a", "evaluate", trained_run, "..", "--overwrite")
    line = faults.assert_one_line_error(result)
    assert "evaluations/.. holds the model" in line
    assert snapshot(trained_run) == before


def test_evaluate_refuses_an_existing_out_before_the_onnx_export(tmp_path, run_dir, images):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("a user's work")
    cache = Path(os.environ["CNNLAB_CACHE_DIR"]) / "onnx"
    exported = set(cache.glob("*.onnx")) if cache.is_dir() else set()
    refused("evaluate", run_dir, images, "--out", out, "--engine", "onnxruntime",
            watch=(tmp_path, run_dir))  # fmt: skip
    assert (set(cache.glob("*.onnx")) if cache.is_dir() else set()) == exported


@pytest.mark.slow
def test_export_replaces_a_file_only_with_overwrite_and_never_the_model(tmp_path, run_dir):
    model = tmp_path / "model.safetensors"
    assert cnnlab("export", run_dir, "--out", model).returncode == 0
    line = refused("export", run_dir, "--out", model, watch=(tmp_path, run_dir))
    assert "exists" in line
    line = refused("export", model, "--out", model, "--overwrite", watch=(tmp_path, run_dir))
    assert "the model" in line
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"a user's own model")
    refused("export", run_dir, "--out", onnx, "--no-verify", watch=(tmp_path, run_dir))
    assert cnnlab("export", run_dir, "--out", model, "--overwrite").returncode == 0


# -- locks and folders ---------------------------------------------------------------------------


def test_a_symlinked_run_lock_is_refused_and_its_target_untouched(tmp_path, make_folders):
    """Repro 3: the run lock was opened through a planted link and a pid written into its
    target."""
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    victim = tmp_path / "victim.txt"
    victim.write_text("a user's file, which must keep every byte\n")
    (tmp_path / "lk").mkdir()
    (tmp_path / "lk" / ".r.cnnlab-lock").symlink_to(victim)
    line = refused("train", data, "--out", tmp_path / "lk" / "r", *TINY, watch=(tmp_path,))
    assert "symbolic link" in line


def test_tensorboard_inside_out_is_refused_before_anything_is_made(tmp_path, make_folders):
    """Repro 12: a --tensorboard folder made inside --out blocked every rerun."""
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    out = tmp_path / "r"
    line = refused(
        "train", data, "--out", out, "--tensorboard", out / "tb", *TINY, watch=(tmp_path,)
    )
    assert "--tensorboard" in line and not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("predict", "{run}", "{images}", "--out", f"{UNWRITABLE}.csv"),
        ("predict", "{run}", "{images}", "--cam", f"{UNWRITABLE}/cams"),
        ("export", "{run}", "--out", f"{UNWRITABLE}.onnx", "--no-verify"),
        ("export", "{run}", "--out", f"{UNWRITABLE}.safetensors"),
        ("evaluate", "{run}", "{images}", "--out", f"{UNWRITABLE}/eval"),
    ],
)
def test_an_unwritable_folder_is_one_line(tmp_path, run_dir, images, args):
    """Repro 9: PermissionError tracebacks. (``compare``: tests/study and the slow test.)"""
    args = [str(a).format(run=run_dir, images=images) for a in args]
    line = refused(*args, watch=(tmp_path, run_dir))
    assert "cnnlab-cannot-write-here" in line
    assert not UNWRITABLE.parent.joinpath(UNWRITABLE.name).exists()


@pytest.mark.slow
def test_compare_into_an_unwritable_folder_is_one_line(trained_run):
    line = refused(
        "compare", trained_run, trained_run, "--out", f"{UNWRITABLE}.md", watch=(trained_run,)
    )
    assert "Permission denied" in line or "permission denied" in line


def test_every_output_file_follows_the_umask(tmp_path, run_dir, images):
    out, cams, model = tmp_path / "p.csv", tmp_path / "cams", tmp_path / "m.safetensors"
    files = sorted((images / "a").iterdir())
    r = cnnlab_in(tmp_path, "predict", run_dir, *files, "--out", out, "--cam", cams, umask=0o027)
    assert r.returncode == 0, r.stderr
    assert cnnlab_in(tmp_path, "export", run_dir, "--out", model, umask=0o027).returncode == 0
    written = [out, model, *cams.iterdir()]
    assert len(written) == 2 + len(files)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {oct(0o640)}


# -- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_130(tmp_path, make_folders):
    """Repro 12: Typer turned Ctrl-C into a silent exit 130."""
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    args = ["train", data, "--out", tmp_path / "r", *TINY[:-4], "--epochs", "1000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "transfer", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cnnlab_env(),
    )  # fmt: skip
    try:
        for line in proc.stdout:  # the run has started training once it names its classes
            if line.startswith("classes:"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.splitlines() == ["cnnlab: error: interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no run, lock or partial
