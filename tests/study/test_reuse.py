"""`cnnlab study run --reuse`: a trial that trains exactly what a trial of an earlier study did
(config, learning rate, seed) is copied from it, with its times and environment, and named as
such; everything else is trained; a source scored on other test labels is refused."""

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study import load_spec, run_study
from cnnlab.study import storage as st
from cnnlab.study.report import results_rows, write_report
from cnnlab_testing import call_main

EARLIER = """
name: earlier
seeds: 2
budget: {train_limit: 1000, epochs: 2, val_size: 500}
baseline: {lr: 0.004}
factors:
  kernel_size: [3, 5]
  lr: [0.002, 0.008]
"""

LATER = """
name: later
seeds: 2
budget: {train_limit: 1000, epochs: 2, val_size: 500}
baseline: {lr: 0.004}
factors:
  kernel_size: [3, 7]
  regularization:
    levels: [none, batch_norm]
    tune_lr: true
    lr_sweep: {multipliers: [0.5, 2.0], extend: 0}
"""


def _run(tmp_path, text, name, trainer, reuse=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    spec = load_spec(path)
    url = f"sqlite:///{tmp_path}/{name}.db"
    summary = run_study(spec, url, name, 1, trainer=trainer, progress=False, reuse=reuse)
    study = st.load_study(st.open_storage(url), name)
    return spec, url, summary, st.completed_records(study)


def _trained(log):
    return [line.split()[2:] for line in log.read_text().splitlines() if line.startswith("start")]


@pytest.mark.slow
def test_trials_an_earlier_study_trained_are_copied_not_trained_again(tmp_path, fake_trainer,
                                                                       capsys):  # fmt: skip
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    _, url_a, _, earlier = _run(tmp_path, EARLIER, "earlier", fake_trainer.name(log=str(log_a)))
    # the plan counts what it knows before any sweep: the baseline's two trials
    (tmp_path / "later.yaml").write_text(LATER)
    plan = call_main(capsys, "study", "plan", tmp_path / "later.yaml", "--no-measure",
                     "--reuse", url_a)  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert "reuse: 2 of these trials (4,000 training images) study 'earlier'" in plan.stdout
    spec, url_b, summary, later = _run(tmp_path, LATER, "later", fake_trainer.name(log=str(log_b)),
                                       reuse=(url_a, "earlier"))  # fmt: skip
    by_identity = {(r.config["kernel_size"], r.config["dropout"], r.lr or r.config["lr"],
                    r.seed): r for r in earlier.values()}  # fmt: skip
    copied = {k: r for k, r in later.items() if r.reused_from}
    # the baseline (3x3 at 0.004) on both seeds; a tuned level whose sweep chose 0.002 or 0.008
    # trains what the earlier lr factor did (the rate reached as 0.004 x 0.5 or x 2)
    assert {(r.config["kernel_size"], r.seed) for r in copied.values()} >= {(3, 0), (3, 1)}
    for r in copied.values():
        source = by_identity[(r.config["kernel_size"], r.config["dropout"], r.lr, r.seed)]
        assert r.reused_from == f"earlier trial {source.number}"
        assert r.metrics == source.metrics and r.history == source.history
        assert np.array_equal(r.test_pred, source.test_pred)
        assert r.seconds == source.seconds and r.environment == source.environment
    # everything else trained here, once: 7x7, batch norm, every sweep trial (other seeds)
    assert len(_trained(log_b)) == len(later) - len(copied) > 0
    assert summary.reused == len(copied) and summary.complete == len(spec.plan()[0])
    tuned = [r for r in copied.values() if r.lr_choice]
    assert all(r.lr in (0.002, 0.008) for r in tuned)
    # what results.csv and the report say of them
    rows = {row["key"]: row for row in results_rows(spec, later)}
    assert {k for k, row in rows.items() if row["reused_from"]} == set(copied)
    md = write_report(url_b, "later", tmp_path / "rep").with_suffix(".md").read_text()
    assert f"{len(copied)} of the {len(later)} completed trials were copied from study " in md
    # a resumed run copies and trains nothing more
    _run(tmp_path, LATER, "later", fake_trainer.name(log=str(log_b)), reuse=(url_a, "earlier"))
    assert len(_trained(log_b)) == len(later) - len(copied)


@pytest.mark.slow
def test_a_source_scored_on_other_test_labels_is_refused(tmp_path, fake_trainer):
    _, url, _, _ = _run(tmp_path, EARLIER, "earlier", fake_trainer.name())
    source = st.ReuseSource(url, "earlier")
    source.check_labels(source.labels)  # the same labels: fine
    source.check_labels(None)  # a study that has scored nothing yet: fine
    with pytest.raises(CnnlabError, match="scored against other test labels"):
        source.check_labels((source.labels + 1) % 10)
    # a trial's config without its rate yet is never matched
    assert source.find({"kernel_size": 3, "lr": None, "seed": 0}) is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reuse", "sqlite:///{tmp}/missing.db"], "no study in --reuse sqlite:///"),
        (["--reuse", "sqlite:///{tmp}/s.db"], "s.db is empty"),
        (["--reuse", "sqlite:///{tmp}/a.db"], "--reuse: the storage"),  # a database, no study
        (["--reuse", "sqlite:///{tmp}/a.db", "--reuse-name", "other"], "--reuse: "),
        (["--reuse-name", "earlier"], "--reuse-name needs --reuse"),
    ],
)
def test_a_bad_reuse_source_is_one_line_before_any_trial(capsys, tmp_path, fake_env, extra,
                                                         message):  # fmt: skip
    (tmp_path / "later.yaml").write_text(LATER)
    (tmp_path / "s.db").write_bytes(b"")
    st.open_storage(f"sqlite:///{tmp_path}/a.db")  # a study database with no study in it
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    url = f"sqlite:///{tmp_path}/later.db"
    r = call_main(capsys, "study", "run", tmp_path / "later.yaml", "--storage", url, *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("cnnlab: error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "later.db").exists()  # refused before the study was created


@pytest.mark.slow
def test_reusing_the_study_being_run_is_refused(tmp_path, fake_trainer):
    _, url, _, _ = _run(tmp_path, EARLIER, "earlier", fake_trainer.name())
    with pytest.raises(CnnlabError, match="--reuse names the study being run"):
        _run(tmp_path, EARLIER, "earlier", fake_trainer.name(), reuse=(url, "earlier"))
