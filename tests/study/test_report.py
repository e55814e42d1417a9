"""Analysis and report on a fake study whose effects are known (see fake_trainer.py)."""

import csv
import math

import pytest

from cnnlab.study import load_spec
from cnnlab.study import storage as st
from cnnlab.study.analysis import analyse, epochs_to_target, stats
from cnnlab.study.analysis.verdicts import comparison_sentence
from cnnlab.study.report import write_report
from cnnlab_testing import run_main


@pytest.fixture(scope="module")
def analysis(finished_fake_study):
    study = st.load_study(st.open_storage(finished_fake_study["url"]), "fake")
    spec = st.stored_spec(study)
    return analyse(spec, st.completed_records(study), st.stored_test_labels(study))


def test_known_effects_are_found(analysis):
    by = {(c.factor, c.level): c for c in analysis.comparisons}
    seven = by[("kernel_size", "7x7")]
    assert seven.reference == "3x3" and seven.n == 3
    assert seven.diff.high < 0 and seven.significant  # the fake costs 7x7 two points
    assert seven.verdict == stats.WORSE
    assert seven.sentence.startswith(f"kernel_size = 7x7 vs 3x3: {seven.diff.mean:+.2f} points")
    assert "— worse: paired t, Holm-adjusted p" in seven.sentence
    # McNemar per seed: in every seed more images lost than gained
    assert len(seven.mcnemar) == 3 and all(m.b > m.c for m in seven.mcnemar)
    bn = by[("regularization", "batch_norm")]
    assert bn.diff.low > 0  # +2 points in the fake, alone in its factor
    assert bn.factor_holm_pvalue == pytest.approx(bn.t_pvalue) and bn.t_pvalue < 0.05
    # the verdict follows the study-wide correction (3 seeds, 6 comparisons)
    assert (bn.verdict == stats.BETTER) == (bn.holm_pvalue < 0.05)
    assert f"— {bn.verdict}" in bn.sentence
    five = by[("kernel_size", "5x5")]  # +0.4 points in the fake: too small for 3 seeds here
    assert abs(five.diff.mean) < 1.5
    assert five.verdict in (stats.UNRESOLVED, stats.BETTER)
    # the optimizer comparisons use the tuned reference level
    assert by[("optimizer", "sgd")].reference == "adam"


def test_a_study_whose_keys_are_not_in_its_plan_is_refused(finished_fake_study):
    """A study written by a cnnlab that hashed trial keys differently must not report empty
    cells as if nothing had run."""
    from cnnlab.errors import CnnlabError

    study = st.load_study(st.open_storage(finished_fake_study["url"]), "fake")
    records = {"old-" + k: r for k, r in st.completed_records(study).items()}
    with pytest.raises(CnnlabError, match="older cnnlab"):
        analyse(st.stored_spec(study), records, st.stored_test_labels(study))


def test_holm_families_the_study_for_verdicts_and_each_factor_beside_it(analysis):
    assert len(analysis.comparisons) == 6  # 5x5, 7x7, batch_norm, 512 (fixed), 512 (scaled), sgd
    families = {}
    for c in analysis.comparisons:
        families.setdefault(c.factor, []).append(c)
    assert {f: len(cs) for f, cs in families.items()} == {
        "kernel_size": 2, "regularization": 1, "batch_size": 1, "batch_size_scaled": 1,
        "optimizer": 1,
    }  # fmt: skip
    for cs in families.values():
        expected = stats.holm([c.t_pvalue for c in cs])
        assert [c.factor_holm_pvalue for c in cs] == pytest.approx(expected)
        assert all(c.factor_family == len(cs) for c in cs)
    sgd = families["optimizer"][0]
    assert sgd.factor_holm_pvalue == pytest.approx(sgd.t_pvalue)  # a family of one
    study = stats.holm([c.t_pvalue for c in analysis.comparisons])
    assert [c.holm_pvalue for c in analysis.comparisons] == pytest.approx(study)
    assert {c.family for c in analysis.comparisons} == {6}


def test_batch_size_lr_share_sentence(analysis):
    lines = " ".join(analysis.conclusions["batch_size_scaled"])
    # fixed LR at 512 loses 3 points in the fake; the linearly scaled LR does not
    assert "At batch size 512, a fixed LR cost" in lines and "recovered" in lines


def test_importance_ranks_the_factors(analysis):
    terms = [i.term for i in analysis.importance]
    assert set(terms) == {"kernel_size", "regularization", "batch_size", "batch_size_scaled",
                          "optimizer"}  # fmt: skip
    omegas = [i.omega_squared for i in analysis.importance]
    assert omegas == sorted(omegas, reverse=True)
    assert terms[-1] == "batch_size_scaled"  # the only factor without an effect in the fake


def test_unresolved_sentence():
    from cnnlab.study.analysis import Comparison
    from cnnlab.study.analysis.stats import Interval

    c = Comparison("kernel_size", "5x5", "3x3", 3, Interval(3, 0.2, 0.3, -0.5, 0.9), 0.3, math.nan,
                   [], 1.4, family=2, holm_pvalue=0.6, verdict=stats.UNRESOLVED,
                   seeds_needed=9)  # fmt: skip
    text = comparison_sentence(c, 0.5)
    assert text.startswith("kernel_size = 5x5 vs 3x3: +0.20 points (95% CI -0.50 to +0.90, n = 3")
    assert "— unresolved: the CI includes zero and reaches beyond ±0.50 points" in text
    assert "about 9 seeds would resolve it" in text and "1.4x slower" in text
    # the unadjusted CI excludes zero, Holm over the study's family does not reject
    c.diff = Interval(3, 0.6, 0.1, 0.3, 0.9)
    c.holm_pvalue = 0.07
    text = comparison_sentence(c, 0.5)
    assert "unresolved: Holm-adjusted p = 0.070 over the study's 2 comparisons" in text


def test_the_machines_section_counts_each_environments_trials_and_warns_when_they_mix():
    from collections import Counter

    from cnnlab.report import Report
    from cnnlab.study.report import machines_part

    env = {"processor": "AMD EPYC (family 25 model 17, AVX-512)", "cpu_count": 2,
           "platform": "Linux", "python": "3.11", "versions": {"keras": "3"}}  # fmt: skip
    one = Report("t")
    machines_part(one, {"machines": {"vm@ab": env}, "machine_trials": Counter({"vm@ab": 7})})
    text = one.to_markdown()
    assert "vm@ab: AMD EPYC (family 25 model 17, AVX-512), 2 CPUs" in text
    assert "Completed trials: 7." in text and "environments" not in text
    assert "Worker time" not in text  # no trial times given: nothing made up
    two = Report("t")
    busy = Counter({"vm@ab": 9000.0, "vm@cd": 1500.0})
    machines_part(two, {"machines": {"vm@ab": env, "vm@cd": {**env, "processor": "AMD EPYC 7551"}},
                        "machine_trials": Counter({"vm@ab": 5, "vm@cd": 3}),
                        "machine_seconds": busy})  # fmt: skip
    text = two.to_markdown()
    assert "vm@ab: AMD EPYC (family 25" in text and "Completed trials: 5, 2.5 h of worker" in text
    assert "vm@cd: AMD EPYC 7551" in text and "Completed trials: 3, 25 min of worker" in text
    assert "Worker time: 2.9 h over 8 completed trials" in text
    assert "The trials ran in 2 environments. Training times" in text
    assert "pairs a level with its reference on the seeds timed in the same environment" in text


def test_epochs_to_target():
    history = [{"epoch": 1, "val_accuracy": 0.7}, {"epoch": 2, "val_accuracy": 0.86}]
    assert epochs_to_target(history, 0.85) == 2 and epochs_to_target(history, 0.9) is None


def test_report_files_and_sections(finished_fake_study, tmp_path):
    html = write_report(finished_fake_study["url"], "fake", tmp_path / "rep")
    out = html.parent
    md = (out / "report.md").read_text()
    for section in (
        "## Takeaways",
        "**Contents**",
        "## Which factor matters most",
        "## Every comparison",
        "## Kernel (filter) size",
        "## Regularization",
        "## Batch size, fixed epochs, fixed LR",
        "## Batch size, fixed epochs, LR scaled linearly + warm-up",
        "## Optimizer",
        "Learning-rate sweep",
        "## Appendix A: statistics behind the verdicts",
        "## Appendix B: each level in detail",
        "## Appendix C: the spec, its baseline and how to reproduce",
        "How to reproduce",
        "Machine and versions",
        "## Appendix D: methods",
    ):
        assert section in md, section  # fmt: skip
    assert "## Factor:" not in md and "## Kernel_size" not in md  # headings in words
    # the body reads as findings: statistics, config and spec come after every factor
    appendix = md.index("## Appendix A")
    assert md.index("## Optimizer") < appendix
    for detail in (
        "Holm p, study (family)",
        "δ = 0.50",
        "partial ω²",
        "| field | baseline |",
        "cnnlab study run",
        "McNemar p per seed",
    ):
        assert md.index(detail) > appendix, detail  # fmt: skip
    assert "— worse: paired t, Holm-adjusted p" in md
    assert "Holm correction over every comparison of the study" in md
    assert "| Kernel (filter) size | 7x7 vs 3x3 | -" in md and "| worse |" in md  # effect first
    text = html.read_text()
    assert text.count("data:image/png;base64,") >= 16 and 'src="kernel' not in text
    rows = list(csv.DictReader((out / "results.csv").open()))
    spec = load_spec(finished_fake_study["spec"])
    assert len(rows) == len(spec.plan()[0])
    assert {"test_accuracy", "config.kernel_size", "seed", "cells", "lr_used"} <= set(rows[0])
    # kernel size changes the work per image: its costs beside its seconds; regularization's
    # levels (dropout, batch norm) do not, so no such table there
    kernel = md[md.index("## Kernel (filter) size") : md.index("## Regularization")]
    assert "| level | params | multiply-adds per image (M) | feature map |" in kernel
    assert "| 3x3 (reference) | 34,826 | 2.44 | 5 x 5 x 64 | 1,600 |" in kernel
    assert "| 7x7 | 104,586 | 3.27 | 2 x 2 x 64 | 256 |" in kernel
    regularization = md[md.index("## Regularization") : md.index("## Batch size")]
    assert "multiply-adds per image" not in regularization
    # test loss and calibration are judged beside accuracy for the regularizers only
    assert "| level | test loss [95% CI] | Δ test loss [95% CI] | test loss verdict |" in (
        regularization
    )
    assert "Test loss and calibration" not in kernel
    # seconds to the target depend on the threads each worker had: the report says how many
    batch = md[md.index("## Batch size") : md.index("## Optimizer")]
    assert "Seconds were measured with " in batch and " per worker, on the machine(s)" in batch
    busy = sum(float(r["trial_seconds"]) for r in rows)  # the trials' own times, summed
    shown = f"{busy / 3600:.1f} h" if busy >= 3600 else f"{busy / 60:.0f} min"
    assert f"Worker time: {shown} over {len(rows)} completed trials" in md


def test_cli_status_and_report(finished_fake_study, tmp_path):
    url = finished_fake_study["url"]
    status = run_main("study", "status", "--storage", url)
    assert status.returncode == 0, status.stderr
    planned = len(load_spec(finished_fake_study["spec"]).plan()[0])
    assert "done" in status.stdout and str(planned) in status.stdout
    rep = run_main("study", "report", "--storage", url, "--name", "fake", "--out", tmp_path / "r")
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.strip().endswith("report.html") and (tmp_path / "r/report.md").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["status", "--storage", "sqlite:////nonexistent-dir/s.db"], "does not exist"),
        (["status", "--storage", "notaurl"], "invalid --storage URL"),
        (["report", "--name", "nope"], "no study named 'nope'"),
        (["run", "--profile", "huge"], "'huge' is not one of 'quick', 'smoke', 'standard'"),
        (["run"], "give a spec file"),
    ],
)
def test_cli_errors_are_one_line(finished_fake_study, args, needle):
    if args[0] == "report":
        args = args + ["--storage", finished_fake_study["url"]]
    proc = run_main("study", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "notes.db").write_text("my notes")
    proc = run_main("study", "status", "--storage", f"sqlite:///{tmp_path}/notes.db")
    assert proc.returncode == 2 and "not a SQLite database" in proc.stderr
    assert (tmp_path / "notes.db").read_text() == "my notes"  # untouched


def test_report_never_replaces_a_folder_of_other_files(finished_fake_study, tmp_path):
    from cnnlab.errors import CnnlabError

    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(CnnlabError, match="not a study report"):
        write_report(finished_fake_study["url"], "fake", tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    first = write_report(finished_fake_study["url"], "fake", tmp_path / "rep")
    before = (tmp_path / "rep" / "report.md").read_bytes()
    # a previous report is replaced only when asked (issue 27: never replace without it)
    with pytest.raises(CnnlabError, match="holds a previous report; add --overwrite"):
        write_report(finished_fake_study["url"], "fake", tmp_path / "rep")
    assert (tmp_path / "rep" / "report.md").read_bytes() == before
    again = write_report(finished_fake_study["url"], "fake", tmp_path / "rep", overwrite=True)
    assert again == first


def test_study_report_without_overwrite_keeps_the_previous_report(
    finished_fake_study, tmp_path, capsys
):
    from cnnlab_testing import call_main  # in this process: start-up is not what is tested

    out = tmp_path / "rep"
    args = ("study", "report", "--storage", finished_fake_study["url"], "--out", str(out))
    assert call_main(capsys, *args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done = call_main(capsys, *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "holds a previous report; add --overwrite" in done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert call_main(capsys, *args, "--overwrite").returncode == 0


def test_the_storage_stays_readable_by_optuna_dashboard(finished_fake_study):
    import io
    import json

    from optuna_dashboard import wsgi

    app = wsgi(st.open_storage(finished_fake_study["url"]))

    def get(path):
        status = {}
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
               "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(), "SERVER_NAME": "x",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http"}  # fmt: skip
        body = b"".join(app(env, lambda s, h, e=None: status.setdefault("s", s)))
        assert status["s"] == "200 OK", path
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    study = next(s for s in studies if s["study_name"] == "fake")
    detail = get(f"/api/studies/{study['study_id']}")
    assert len(detail["trials"]) == len(load_spec(finished_fake_study["spec"]).plan()[0])
    names = {p["name"] for t in detail["trials"] for p in t["params"]}
    assert {"kernel_size", "batch_norm", "optimizer"} <= names
    assert "seed" not in names  # a user attribute: the dashboard must not rank it as a param
    assert get(f"/api/studies/{study['study_id']}/param_importances")["param_importances"]


@pytest.mark.slow
def test_a_factorial_study_reports_cells_and_interactions(tmp_path, fake_env):
    from cnnlab.study import run_study
    from cnnlab.study.spec import parse_spec

    spec = parse_spec({
        "name": "grid", "design": "factorial", "seeds": 2,
        "budget": {"train_limit": 1000, "epochs": 1, "val_size": 500},
        "factors": {"batch_size": [128, 512], "kernel_size": [3, 7]},
    })  # fmt: skip
    url = f"sqlite:///{tmp_path}/s.db"
    run_study(spec, url, "grid", 1, trainer="fake_trainer:trainer", progress=False)
    study = st.load_study(st.open_storage(url), "grid")
    a = analyse(st.stored_spec(study), st.completed_records(study), st.stored_test_labels(study))
    terms = {i.term: i.omega_squared for i in a.importance}
    assert set(terms) == {"batch_size", "kernel_size", "batch_size x kernel_size"}
    assert terms["batch_size"] > terms["batch_size x kernel_size"]  # additive effects in the fake
    seven = next(c for c in a.comparisons if c.level == "7x7")
    assert seven.n == 4  # paired by seed and by the other factor's level
    md = write_report(url, "grid", tmp_path / "rep").with_suffix(".md").read_text()
    assert "## Factorial cells and interaction" in md and "interaction.png" in md


@pytest.mark.parametrize("command", [["study", "run", "--profile", "smoke", "--report"],
                                     ["demo", "--profile", "smoke", "--out"]])  # fmt: skip
def test_a_report_folder_of_other_files_is_refused_before_any_trial_runs(run_cli, tmp_path,
                                                                         command):  # fmt: skip
    """The report comes after the trials: a folder it may not replace (here, one holding the
    study's own storage) must stop the command before them, not after an hour of training."""
    folder = tmp_path / "findings"
    folder.mkdir()
    (folder / "notes.md").write_text("mine\n")
    url = f"sqlite:///{folder}/studies.db"
    r = run_cli(*command[:-1], "--storage", url, command[-1], str(folder))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "holds the study storage" in r.stderr  # files.check_output: never onto an input
    assert sorted(p.name for p in folder.iterdir()) == ["notes.md"]  # no storage: nothing ran
    assert (folder / "notes.md").read_text() == "mine\n"


def test_architecture_costs_are_left_out_where_keras_cannot_load(monkeypatch, small_spec):
    import sys

    from cnnlab.study.report.costs import architecture_costs

    costs = architecture_costs(load_spec(small_spec))
    assert costs["kernel_size=5x5"]["params"] == 62346  # 5x5 valid: 4 x 4 x 64 features
    monkeypatch.setitem(sys.modules, "cnnlab.fmnist.model", None)  # import fails: no Keras
    assert architecture_costs(load_spec(small_spec)) == {}


def test_the_worker_threads_are_named_as_the_machines_recorded_them():
    from cnnlab.study.report.sections import _threads

    assert _threads({"machines": {"a": {"threads": "1"}}}) == "1 thread"
    assert _threads({"machines": {"a": {"threads": "2"}, "b": {"threads": "1"}}}) == (
        "1 or 2 threads"
    )
    assert _threads({"machines": {"a": {}}}) == "" and _threads({}) == ""
