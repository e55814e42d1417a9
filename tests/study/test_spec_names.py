"""Study names stay inside reports/ and inside one shell word; printed commands are quoted."""

import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from cnnlab.errors import CnnlabError
from cnnlab.study.cli import app
from cnnlab.study.spec import load_spec, parse_spec
from cnnlab.study.spec.names import check_study_name, default_report_dir, shell_command, slug
from cnnlab_testing import call_main

UNSAFE = ["../escape", "/tmp/abs", "a;touch pwned", "a b", ".hidden", "-flag", "a/b", "x" * 65,
          "ünï", "a\nb", ""]  # fmt: skip
SPEC = "budget: {train_limit: 1000, epochs: 1, val_size: 500}\nfactors: {kernel_size: [3, 5]}\n"


@pytest.mark.parametrize("name", ["quick", "my-study_2.v1", "A", "x" * 64, "_x", "2024"])
def test_safe_names_are_accepted(name):
    assert check_study_name(name) == name
    assert parse_spec({"name": name, "factors": {"kernel_size": [3]}}).name == name


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_refused_in_one_line_naming_the_rule(name):
    with pytest.raises(CnnlabError, match="--name") as e:
        check_study_name(name)
    assert "\n" not in str(e.value) and "letters, digits" in str(e.value)
    if name:  # an empty name: the spec's default name applies
        with pytest.raises(CnnlabError, match="spec field name"):
            parse_spec({"name": name, "factors": {"kernel_size": [3]}})


@pytest.mark.parametrize("name", ["../x", "a/b", "a;b", "a b"])
def test_factor_names_are_file_names_in_the_report_so_they_follow_the_rule(name):
    with pytest.raises(CnnlabError, match="factor name"):
        parse_spec({"factors": {name: {"kind": "kernel_size", "levels": [3]}}})


def test_a_spec_file_without_a_name_is_named_after_its_file_made_safe(tmp_path):
    (tmp_path / "my study;v2.yaml").write_text(SPEC)
    assert load_spec(tmp_path / "my study;v2.yaml").name == "my-study-v2"
    assert slug("../..") == "study" and slug("ok.name") == "ok.name"


def test_the_default_report_folder_is_always_under_reports():
    assert default_report_dir("quick").as_posix() == "reports/quick"
    with pytest.raises(CnnlabError):
        default_report_dir("../../elsewhere")


def test_printed_commands_paste_back_as_the_same_words():
    words = ["cnnlab", "study", "report", "--storage", "sqlite:///my dir/a;b.db", "--name",
             "it's", "--out", "DIR"]  # fmt: skip
    line = shell_command(*words)
    assert shlex.split(line) == words
    assert line.endswith("--out DIR")  # plain words stay readable


def test_study_run_prints_a_quoted_next_command(tmp_path, monkeypatch):
    import cnnlab.study.run as run_module

    summary = SimpleNamespace(name="small", complete=6, planned=6, enqueued=6, wall_seconds=1.0)
    monkeypatch.setattr(run_module, "run_study", lambda *a, **k: summary)
    # nothing ran, so there are no verdicts to read back (tests/study/test_cli_plan_verdicts.py)
    monkeypatch.setattr("cnnlab.study.terminal.print_verdicts", lambda *a, **k: None)
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    (tmp_path / "my dir;x").mkdir()  # study run checks --storage's folder before the plan
    storage = f"sqlite:///{tmp_path}/my dir;x/s.db"
    result = CliRunner().invoke(app, ["run", str(spec), "--storage", storage])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("next: "))
    assert shlex.split(line.removeprefix("next: ")) == [
        "cnnlab", "study", "report", "--storage", storage, "--name", "small", "--out", "DIR",
    ]  # fmt: skip


def _one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "other"),
    [("../escape", "status"), ("/tmp/cnnlab-abs-escape", "run"), ("x;touch pwned", "run")],
)
def test_cli_refuses_unsafe_names_before_writing_anything(tmp_path, name, other, capsys,
                                                          monkeypatch):  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    (work / "s.yaml").write_text(SPEC)
    (work / "named.yaml").write_text(f"name: {json.dumps(name)}\n{SPEC}")
    before = sorted(tmp_path.rglob("*"))
    url = f"sqlite:///{work}/s.db"
    runs = [
        ["study", "report", "--storage", url, "--name", name],  # would write reports/NAME
        ["study", "run", "named.yaml", "--storage", url],
        ["study", other, *(["s.yaml"] if other == "run" else []), "--storage", url, "--name", name],
    ]
    with monkeypatch.context() as m:  # the command in this process, run from work/
        m.chdir(work)
        for args in runs:
            assert "letters, digits" in _one_error_line(call_main(capsys, *args))
    assert sorted(tmp_path.rglob("*")) == before  # no database, no reports/, no pwned
    assert not (tmp_path / "escape").exists() and not Path(name).exists()
