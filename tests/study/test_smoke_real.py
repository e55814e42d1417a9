"""The smoke study end to end on the real trainer and the real Fashion-MNIST data, and its
report rendered in headless Chromium."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _have_fashion_mnist() -> bool:
    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.errors import CnnlabError

    try:
        load_fashion_mnist(download=False, progress=False)
    except CnnlabError:
        return False
    return True


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    if not _have_fashion_mnist():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    tmp = tmp_path_factory.mktemp("smoke")
    url = f"sqlite:///{tmp}/studies.db"
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "study", "run", "--profile", "smoke", "--storage", url,
         "--workers", "2", "--report", str(tmp / "report")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"dir": tmp / "report", "url": url, "stdout": proc.stdout}


def test_smoke_study_runs_every_trial_and_reports_every_section(smoke):
    from cnnlab.study import load_spec
    from cnnlab.study.spec.words import factor_titles

    spec = load_spec(profile="smoke")
    planned = len(spec.plan()[0])
    out = smoke["stdout"]
    assert f"{planned}/{planned} trials complete" in out
    # the plan and its estimate before the trials, the verdicts after them
    assert out.index("plan: study smoke") < out.index("total: ") < out.index("verdicts: study")
    md = (smoke["dir"] / "report.md").read_text()
    titles = factor_titles(spec)
    for factor in ("kernel_size", "regularization", "regularization_small", "batch_size",
                   "batch_size_scaled", "batch_size_steps", "optimizer"):  # fmt: skip
        assert f"\n## {titles[factor]}\n" in md
        assert f"({factor}_accuracy.png)" in md and f"({factor}_curves.png)" in md
        assert "Regime: " in md.split(f"\n## {titles[factor]}\n")[1].split("## ")[0]
    assert "Learning-rate sweep" in md and "Keras backend tensorflow" in md
    assert "(regularization_small_gap.png)" in md and "(optimizer_convergence_seconds.png)" in md
    assert "Steps and seconds to" in md
    assert f"{planned} of {planned} planned trials completed (complete)" in md
    rows = list(csv.DictReader((smoke["dir"] / "results.csv").open()))
    assert len(rows) == planned
    accuracies = [float(r["test_accuracy"]) for r in rows]
    assert min(accuracies) > 0.0 and sum(accuracies) / len(accuracies) > 0.15  # above chance
    assert all(float(r["train_seconds"]) > 0 for r in rows)
    assert {r["config.train_limit"] for r in rows} == {"500", "200"}  # 200: the small regime
    assert {r["gap_on_clean_train"] for r in rows} == {"True"}


def test_resuming_the_finished_smoke_study_trains_nothing(smoke):
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "study", "run", "--profile", "smoke", "--storage",
         smoke["url"], "--workers", "1"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(0 queued by this run" in proc.stdout


@pytest.mark.browser
def test_report_renders_in_headless_chromium(smoke, chromium):
    driver = chromium
    driver.get(Path(smoke["dir"] / "report.html").resolve().as_uri())
    assert driver.title.startswith("cnnlab study smoke")
    images = driver.find_elements("tag name", "img")
    assert len(images) >= 16
    broken = driver.execute_script(
        "return Array.from(document.images)"
        ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)"
    )
    assert broken == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    headings = [h.text for h in driver.find_elements("tag name", "h2")]
    assert headings[0] == "Takeaways" and "Optimizer" in headings
