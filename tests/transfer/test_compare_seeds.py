"""``cnnlab transfer compare --by-seed``: runs equal but for their seed, one row per recipe."""

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from cnnlab.transfer.evaluation.seeds import compare_by_seed
from cnnlab_testing import call_main, cli_error_line, markdown_tables

KEYS = ["accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "specificity"]
FREE = ["roc_auc", "pr_auc", "test_loss", "ece"]
THRESHOLD_DEPENDENT_TITLES = {"accuracy", "balanced accuracy", "macro-F1"} | {
    "sensitivity",
    "specificity",
}
HEADINGS = {
    "Operating point: validation-chosen threshold": "operating_point",
    "Operating point: argmax": "at_argmax",
}


def _expected_cell(values, intervals, upper=1.0):
    """The cell, computed here from scratch: mean [t-interval over seeds, clipped to [0,
    upper]]; runs [mean of the bootstrap bounds]."""
    x = np.asarray(values, dtype=float)
    text = f"{x.mean():.3f}"
    if len(x) > 1:
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        text += f" [{max(x.mean() - half, 0):.3f}, {min(x.mean() + half, upper):.3f}]"
    known = [i for i in intervals if i is not None]
    if not known:
        return text
    low, high = np.mean(known, axis=0)
    return text + f"; runs [{low:.3f}, {high:.3f}]"


# -- trained runs: the cells against each run's own metrics.json -------------------------------
@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory, make_folders):
    """Tiny random-init resnet18 runs (32 px, one epoch) on one test/ folder: the head recipe
    with seeds 0, 1 and 2, and the same recipe at another learning rate with seed 0."""
    from cnnlab.console import make_console
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.pipeline import train

    root = tmp_path_factory.mktemp("seeds")
    make_folders(root / "data" / "train", {"a": 12, "b": 12}, seed=1)
    make_folders(root / "data" / "test", {"a": 8, "b": 8}, seed=2)
    base = TransferConfig(weights="none", image_size=32, strategy="head", epochs=1, batch_size=8)
    runs = {}
    for name, cfg in {
        "head-s0": base,
        "head-s1": base.replace(seed=1),
        "head-s2": base.replace(seed=2),
        "fast-s0": base.replace(lr=1e-2),
    }.items():
        runs[name], _ = train(root / "data", root / name, cfg, console=make_console(quiet=True))
    return runs


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_grouped_cells_are_the_mean_and_t_interval_of_each_runs_metrics(seeded_runs, capsys):
    code, text, _ = call_main(capsys, "transfer", "compare", "--by-seed", *seeded_runs.values())
    assert code == 0
    tables = markdown_tables(text)
    recipes = {row[0]: row for row in tables["Recipes"][1]}
    # grouped by all but the seed; named as the runs are, less their seed suffix (head-s0)
    assert set(recipes) == {"head", "fast"}
    assert recipes["head"][1] == "lr=0.001" and recipes["fast"][1] == "lr=0.01"
    head = [seeded_runs[f"head-s{s}"] for s in range(3)]
    fast = [seeded_runs["fast-s0"]]
    assert recipes["head"][4:6] == ["0, 1, 2", "head-s0, head-s1, head-s2"]
    rss = np.mean([_metrics(r)["peak_rss_mb"] for r in head])
    assert recipes["head"][8] == f"{rss:.0f} MiB" and rss > 50
    for heading, block in HEADINGS.items():
        header, rows = tables[heading]
        assert set(header) >= THRESHOLD_DEPENDENT_TITLES
        for label, group in (("head", head), ("fast", fast)):
            row = next(r for r in rows if r[0] == label)
            assert row[1] == f"n={len(group)}"
            for key, cell in zip(KEYS, row[3:], strict=True):
                ms = [_metrics(r)[block] for r in group]
                want = _expected_cell([m[key] for m in ms], [m["ci"][key] for m in ms])
                assert cell == want, (heading, label, key)
    header, rows = tables["Threshold-free"]
    assert not THRESHOLD_DEPENDENT_TITLES & set(header)
    for key, cell in zip(FREE, rows[0][2:], strict=True):
        ms = [_metrics(r) for r in head]
        upper = np.inf if key == "test_loss" else 1.0
        want = _expected_cell([m[key] for m in ms], [m["ci"].get(key) for m in ms], upper)
        assert cell == want, key
    single = rows[1][2]  # one seed: its value, no interval over seeds
    assert single.count("[") == 1 and single.startswith(f"{_metrics(fast[0])['roc_auc']:.3f}; ")


@pytest.mark.slow
def test_the_ensemble_is_one_more_recipe_of_one_run(seeded_runs):
    text = compare_by_seed(list(seeded_runs.values()), ensemble=True)
    free = {row[0]: row for row in markdown_tables(text)["Threshold-free"][1]}
    assert list(free) == ["head", "fast", "ensemble"] and free["ensemble"][1] == "n=1"
    assert "ensemble: the mean of all 4 runs' probabilities" in text


# -- hand-written runs: grouping and refusals, in milliseconds ---------------------------------
CLASSES = ["NORMAL", "PNEUMONIA"]


def _write_run(root, name, proba, labels, threshold=0.5, **config):
    """A run directory as compare reads it: config, metrics with both operating points' blocks
    and intervals, and the test predictions."""
    run = root / name
    run.mkdir(parents=True)
    rows = ["path,predicted,p_NORMAL,p_PNEUMONIA,error,true"]
    for i, (p, y) in enumerate(zip(proba, labels, strict=True)):
        rows.append(f"/t/{i}.png,{CLASSES[int(p >= 0.5)]},{1 - p},{p},,{CLASSES[y]}")
    (run / "predictions_test.csv").write_text("\n".join(rows) + "\n")
    from cnnlab.metrics import binary_metrics

    blocks = {}
    for block, at in (("operating_point", threshold), ("at_argmax", 0.5)):
        m = binary_metrics(labels, proba, at)
        blocks[block] = {k: m[k] for k in KEYS} | {
            "threshold": at,
            "ci": {k: [m[k] - 0.1, m[k] + 0.05] for k in KEYS},
        }
    metrics = {
        "class_names": CLASSES,
        "threshold": threshold,
        **blocks,
        "roc_auc": 0.9,
        "ci": {"roc_auc": [0.8, 0.95]},
        "epochs_run": 2,
        "best_epoch": 1,
        "train_seconds": 30.0,
        "device": "cpu (2 threads)",
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    recipe = {"arch": "resnet18", "weights": "none", "strategy": "head", "lr": 0.001, "seed": 0}
    (run / "config.json").write_text(json.dumps(recipe | config))
    return run


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)

    def write(name, threshold=0.5, **config):
        proba = np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1)
        return _write_run(tmp_path, name, proba, labels, threshold, **config)

    return write


def test_recipes_are_named_as_their_runs_less_the_seed_suffix_when_that_tells_them_apart(
    written,
):
    runs = [written("lpft-s0"), written("lpft-s1", seed=1), written("full_seed0", strategy="full"),
            written("full_seed1", strategy="full", seed=1)]  # fmt: skip
    recipes = markdown_tables(compare_by_seed(runs))["Recipes"]
    assert recipes[0][:2] == ["recipe", "settings that set it apart"]
    assert [row[:2] for row in recipes[1]] == [["lpft", "strategy=head"], ["full", "strategy=full"]]
    # two groups whose runs would share a name, or a run without a seed suffix: settings instead
    same = [written("x-s0"), written("x-s1", strategy="full", seed=1)]
    assert [row[0] for row in markdown_tables(compare_by_seed(same))["Recipes"][1]] == [
        "strategy=head",
        "strategy=full",
    ]
    plain = [written("head"), written("full-s0", strategy="full")]
    recipes = markdown_tables(compare_by_seed(plain))["Recipes"]
    assert [row[0] for row in recipes[1]] == ["strategy=head", "strategy=full"]
    assert "settings that set it apart" not in recipes[0]  # the label already says it


def test_runs_differing_in_more_than_the_seed_are_separate_recipes(written):
    runs = [
        written("a0", threshold=0.3),
        written("a1", threshold=0.7, seed=1),
        written("b0", strategy="full"),
        written("c0", strategy="full", lr=0.01, seed=3),
    ]
    text = compare_by_seed(runs)
    recipes = {row[0]: row for row in markdown_tables(text)["Recipes"][1]}
    assert list(recipes) == ["lr=0.001, strategy=head", "lr=0.001, strategy=full"] + [
        "lr=0.01, strategy=full"
    ]
    assert [row[3] for row in recipes.values()] == ["0, 1", "0", "3"]
    assert (
        "peak RSS, mean" in markdown_tables(text)["Recipes"][0]
        and recipes["lr=0.01, strategy=full"][7] == "–"
    )
    tables = markdown_tables(text)
    point = {r[0]: r for r in tables["Operating point: validation-chosen threshold"][1]}
    assert point["lr=0.001, strategy=head"][2] == "0.500 (mean)"  # of 0.3 and 0.7
    assert point["lr=0.001, strategy=full"][1] == "n=1"
    assert point["lr=0.001, strategy=full"][3].count("[") == 1  # no interval over one seed


def test_no_grouped_table_mixes_operating_points(written):
    """The validation-chosen thresholds (0.3, 0.7) differ from the argmax, so each point's
    cells differ; each equals its own block's mean, and only the operating-point tables hold
    threshold-dependent columns."""
    runs = [written("a0", threshold=0.3), written("a1", threshold=0.7, seed=1)]
    tables = markdown_tables(compare_by_seed(runs))
    ms = [json.loads((r / "metrics.json").read_text()) for r in runs]
    for heading, (header, rows) in tables.items():
        dependent = THRESHOLD_DEPENDENT_TITLES & set(header)
        if heading not in HEADINGS:
            assert not dependent, heading
            continue
        assert dependent == THRESHOLD_DEPENDENT_TITLES
        for key, cell in zip(KEYS, rows[0][3:], strict=True):
            blocks = [m[HEADINGS[heading]] for m in ms]
            want = _expected_cell([b[key] for b in blocks], [b["ci"][key] for b in blocks])
            assert cell == want, (heading, key)


def test_differences_from_the_first_recipe_are_welch_intervals_one_point_per_table(written):
    """Each later recipe minus the first, over seeds, computed here with SciPy's Welch test
    from the runs' own blocks; a recipe of one seed gets the bare difference; one table per
    operating point and one threshold-free, with no threshold-dependent column outside the
    point tables."""
    a = [written("a0", threshold=0.3), written("a1", threshold=0.7, seed=1)]
    b = [written("b0", strategy="full"), written("b1", strategy="full", seed=1)]
    b.append(written("b2", strategy="full", seed=2))
    c = [written("c0", strategy="full", lr=0.01)]
    tables = markdown_tables(compare_by_seed(a + b + c))
    ms = {name: [json.loads((r / "metrics.json").read_text()) for r in runs]
          for name, runs in (("a", a), ("b", b), ("c", c))}  # fmt: skip
    for heading, block in HEADINGS.items():
        header, rows = tables[
            heading.replace("Operating point", "Differences over seeds at operating point")
        ]
        titles = ["accuracy", "balanced accuracy", "macro-F1", "sensitivity", "specificity"]
        assert header == ["recipe", "n"] + [f"Δ {t}" for t in titles]
        assert [r[0] for r in rows] == ["lr=0.001, strategy=full", "lr=0.01, strategy=full"]
        assert rows[0][1] == "n=3 vs 2" and rows[1][1] == "n=1 vs 2"
        for key, full_cell, single_cell in zip(KEYS, rows[0][2:], rows[1][2:], strict=True):
            ref = [m[block][key] for m in ms["a"]]
            other = [m[block][key] for m in ms["b"]]
            ci = stats.ttest_ind(other, ref, equal_var=False).confidence_interval(0.95)
            diff = np.mean(other) - np.mean(ref)
            mark = " ↑" if ci.low > 0 else " ↓" if ci.high < 0 else ""
            assert full_cell == f"{diff:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]{mark}", (heading, key)
            assert single_cell == f"{ms['c'][0][block][key] - np.mean(ref):+.3f}"  # no interval
    header, rows = tables["Threshold-free differences over seeds"]
    assert header == ["recipe", "n", "Δ ROC-AUC", "Δ PR-AUC", "Δ log loss", "Δ ECE"]
    assert rows[0][2] == "+0.000 [+0.000, +0.000]"  # every written run has ROC-AUC 0.9
    assert rows[0][3] == "–"  # a metric the runs do not have
    one = markdown_tables(compare_by_seed(a))  # one recipe: nothing to difference
    assert not [h for h in one if "Differences" in h]


def test_bad_input_is_one_line_and_exit_2(written, capsys, tmp_path):
    a = written("a0")
    assert "two or more run directories" in cli_error_line(
        capsys, "transfer", "compare", "--by-seed", a
    )
    broken = shutil.copytree(a, tmp_path / "broken")
    (broken / "metrics.json").unlink()
    line = cli_error_line(capsys, "transfer", "compare", "--by-seed", a, broken)
    assert "is not a complete transfer run" in line
    again = shutil.copytree(a, tmp_path / "again")
    line = cli_error_line(capsys, "transfer", "compare", "--by-seed", a, again)
    assert "a0 and again are the same recipe with the same seed 0" in line
    edited = [written("x", seed=[1]), written("y", seed=[1])]  # config.json edited by hand
    line = cli_error_line(capsys, "transfer", "compare", "--by-seed", *edited)
    assert "the same seed [1]" in line


def test_an_interval_over_seeds_stays_inside_the_metrics_range():
    """Two seeds far apart give a t-interval wider than a proportion can be; the cell clips it
    to [0, 1] (a log loss only at 0), and says so in the table's preamble."""
    from cnnlab.transfer.evaluation.seeds import _cell

    assert _cell([0.55, 0.95], [None, None]).startswith("0.750 [0.000, 1.000]")
    assert _cell([0.05, 0.50], [None, None], upper=np.inf) == "0.275 [0.000, 3.134]"
    assert _cell([0.80, 0.82, 0.81], [None] * 3) == "0.810 [0.785, 0.835]"  # inside: as is
