"""The report's scenario parts: each factor's regime and why, learning curves with the gap on
clean training images, the batch-size steps- and seconds-to-target table (Shallue et al.
2019), and the optimizers' learning-rate sweeps with their bracketing and convergence curves.

Kept apart from the package module (the document, its summary and per-factor tables) so that each
scenario's extra evidence reads in one place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab import plots
from cnnlab.fmnist.config import TrainConfig
from cnnlab.report import Report
from cnnlab.study.analysis import CellSummary, StudyAnalysis, curves
from cnnlab.study.analysis.curves import POINTS
from cnnlab.study.spec import Factor, LrSweep
from cnnlab.study.spec.plan import steps_per_epoch, train_split
from cnnlab.study.spec.words import describe_batch_factor

_BUDGET_FIELDS = ("train_limit", "epochs", "val_size")


def factor_cells(a: StudyAnalysis, factor: Factor) -> list[tuple[str, CellSummary]]:
    """(level, summary) of each level of ``factor`` with completed trials."""
    cells = ((lv.label, a.cells.get(f"{factor.name}={lv.label}")) for lv in factor.levels)
    return [(label, s) for label, s in cells if s is not None and s.n]


def regime_part(rep: Report, a: StudyAnalysis, factor: Factor) -> None:
    """Which regime the factor ran in (budget and changes from the study's baseline) and why."""
    spec = a.spec
    base = spec.factor_baseline(factor)
    regime = factor.regime
    n = train_split(base.to_dict())
    budget = (
        f"{n:,} training images x {base.epochs} epochs at batch size {base.batch_size} "
        f"({steps_per_epoch(base.to_dict()):,} steps per epoch), {base.val_size:,} validation "
        f"images, validation target {spec.val_target_of(factor):.0%}"
    )
    changed = regime.changes if regime else {}
    if changed:
        what = ", ".join(f"{k} = {v}" for k, v in changed.items())
        where = f"its own regime ({what}, instead of the study's baseline): {budget}."
    else:
        where = f"the study's baseline: {budget}."
    if factor.kind == "batch_size":
        where += f" Levels: {describe_batch_factor(factor, base)}."
    why = ""
    if regime and regime.text:  # the design's intent: what the data did is said below it
        why = f" Why (the spec, fixed before any trial ran): {regime.text}"
    rep.paragraph(f"Regime: {where}{why}", css_class="conclusion")


def learning_curves_part(rep, a: StudyAnalysis, records, factor: Factor, folder: Path) -> None:
    """Mean validation curves per level, with training accuracy on clean training images
    (inference mode) where the trials measured it; for regularization also the gap per epoch."""
    cells = factor_cells(a, factor)
    histories = {lv: [records[k].history for k in s.cell.keys if k in records] for lv, s in cells}
    clean = all(s.clean_gap for _, s in cells)
    train_key = curves.CLEAN if clean else "train_accuracy"
    data = {
        lv: {"train": curves.mean_curve(h, train_key), "val": curves.mean_curve(h, "val_accuracy")}
        for lv, h in histories.items()
    }
    path = plots.curves_by_level(
        data, folder / f"{factor.name}_curves.png", factor.name, ylabel="accuracy (%)"
    )
    train_text = (
        "training accuracy on clean training images in inference mode (no dropout, no augmentation)"
        if clean
        else "the running training accuracy (this study predates the clean measurement)"
    )
    rep.image(path, f"Mean learning curves over seeds: validation solid, {train_text} dashed")
    if factor.kind != "regularization" or not clean:
        return
    series = {}
    for lv, h in histories.items():
        gap = curves.mean_gap_curve(h)
        epochs = list(range(1, len(gap) + 1))
        series[lv] = (epochs, gap, gap, gap)
    path = plots.lines_by_x(
        series, folder / f"{factor.name}_gap.png", "epoch",
        "clean train - validation accuracy (points)",
        f"{factor.name}: generalization gap per epoch (mean over seeds)",
    )  # fmt: skip
    rep.image(
        path,
        "Generalization gap: accuracy on the trial's own training images (inference mode) minus "
        "validation accuracy, per epoch; a regularizer that works keeps it lower",
    )


# -- batch size ----------------------------------------------------------------------------


def batch_part(
    rep: Report, a: StudyAnalysis, factor: Factor, folder: Path, threads: str = ""
) -> None:
    """``threads``: the CPU threads each worker trained with (seconds depend on it)."""
    cells = factor_cells(a, factor)
    if not cells:
        return
    target = a.spec.val_target_of(factor)
    rep.heading(f"Steps and seconds to {target:.0%} validation accuracy", 3)
    rep.paragraph(
        "Shallue et al. (2019) compare batch sizes by the optimizer steps needed to reach a "
        "target; on a CPU the seconds to it are what a user waits for. Both are read at epoch "
        "ends (an upper bound, one epoch coarse), as medians over the seeds that reached it."
        + (f" Seconds were measured with {threads} per worker, on the machine(s) of "
           "Appendix C; with more threads per worker, larger batches may gain more (they keep "
           "more cores busy)." if threads else "")
    )  # fmt: skip
    rows = []
    for lv, s in cells:
        rows.append({
            "batch size": lv, "epochs": s.steps // s.steps_per_epoch if s.steps else "",
            "steps/epoch": s.steps_per_epoch, "steps": s.steps,
            "s/epoch": f"{s.epoch_seconds.mean:.2f}",
            "steps to target": _reached(s.steps_to_target, s, "{:,.0f}"),
            "seconds to target": _reached(s.seconds_to_target, s, "{:.1f}"),
        })  # fmt: skip
    rep.table(rows)


def _reached(value, s: CellSummary, fmt: str) -> str:
    if value is None:
        return f"not reached (0/{s.n})"
    return f"{fmt.format(value)} ({s.reached}/{s.n})"


def batch_plots(rep: Report, a: StudyAnalysis, folder: Path) -> None:
    """Once, across every batch-size factor: accuracy, steps and seconds to the target."""
    batch = [f for f in a.spec.factors if f.kind == "batch_size"]
    # "batch_sizes_": a factor named batch_size writes batch_size_accuracy.png of its own
    if not batch or (folder / "batch_sizes_accuracy.png").exists():
        return
    acc, steps, seconds = {}, {}, {}
    for f in batch:
        cells = [(int(lv), s) for lv, s in factor_cells(a, f)]
        if not cells:
            continue
        name = f"{f.name} ({describe_batch_factor(f, a.spec.factor_baseline(f))})"
        xs = [x for x, _ in cells]
        acc[name] = (xs, [s.accuracy.mean for _, s in cells], [s.accuracy.low for _, s in cells],
                     [s.accuracy.high for _, s in cells])  # fmt: skip
        got = [(x, s) for x, s in cells if s.steps_to_target is not None]
        if got:
            st = [float(s.steps_to_target) for _, s in got]
            sec = [float(s.seconds_to_target) for _, s in got]
            steps[name] = ([x for x, _ in got], st, st, st)
            seconds[name] = ([x for x, _ in got], sec, sec, sec)
    for stem, series, ylabel, title in (
        ("accuracy", acc, "test accuracy (%)", "Test accuracy vs batch size (mean, 95% CI)"),
        ("steps_to_target", steps, "optimizer steps", "Steps to the validation target"),
        ("seconds_to_target", seconds, "training seconds", "Seconds to the validation target"),
    ):
        if series:
            path = plots.lines_by_x(series, folder / f"batch_sizes_{stem}.png", "batch size",
                                    ylabel, title, logx=True)  # fmt: skip
            rep.image(path, f"{title}, every batch-size factor (a level that never reached the "
                      "target is left out)")  # fmt: skip


# -- optimizer -----------------------------------------------------------------------------


# what each optimizer level is (cnnlab.fmnist.optim: Keras' optimizers at their defaults)
_OPTIMIZER_NAMES = {
    "sgd": "plain SGD", "momentum": "SGD with momentum 0.9",
    "nesterov": "SGD with Nesterov momentum 0.9", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adam": "Adam", "adamw": "Adam with decoupled weight decay",
    "nadam": "Adam with Nesterov momentum (Nadam)",
}  # fmt: skip


def describe_optimizers(factor: Factor, base: TrainConfig) -> str:
    """One sentence: what each level trains with besides its tuned learning rate."""
    parts = []
    for lv in factor.levels:
        name = str(lv.overrides.get("optimizer", lv.label))
        text = f"{lv.label}: {_OPTIMIZER_NAMES.get(name, name)}"
        decay = base.replace(optimizer=name).decoupled_weight_decay
        if decay is not None:
            text += f" {decay:g} (times the learning rate, each step)"
        parts.append(text)
    return (
        "The optimizers (Keras' implementations; the learning rate is each one's own, "
        "tuned below): " + "; ".join(parts) + "."
    )


def optimizer_part(rep: Report, a: StudyAnalysis, records, factor: Factor, folder: Path) -> None:
    rep.paragraph(describe_optimizers(factor, a.spec.factor_baseline(factor)))
    cells = factor_cells(a, factor)
    if cells:
        histories = {lv: [records[k].history for k in s.cell.keys if k in records]
                     for lv, s in cells}  # fmt: skip
        by_epoch, by_second = {}, {}
        for lv, h in histories.items():
            val = curves.mean_curve(h, "val_accuracy")
            by_epoch[lv] = (list(range(1, len(val) + 1)), val, val, val)
            by_second[lv] = (curves.mean_elapsed(h)[: len(val)], val, val, val)
        for stem, series, xlabel, axis in (("epochs", by_epoch, "epoch", "epochs"),
                                           ("seconds", by_second, "training seconds",
                                            "training seconds")):  # fmt: skip
            path = plots.lines_by_x(
                series, folder / f"{factor.name}_convergence_{stem}.png", xlabel,
                "validation accuracy (%)", f"{factor.name}: convergence against {axis}",
            )  # fmt: skip
            rep.image(path, f"Mean validation accuracy against {axis} at each tuned learning rate")


def _centre_words(sweep: LrSweep) -> str:
    """What a sweep's multipliers multiply, for the report's sentence."""
    untuned = (
        "its own untuned rate (an optimizer's default, a batch size's scaled rate, else the "
        "baseline's)"
    )
    if not sweep.centers:
        return untuned
    given = ", ".join(f"{label} {rate:g}" for label, rate in sweep.centers)
    return f"the rate the spec centred its sweep on (lr_sweep.centers: {given}), else {untuned}"


def sweep_part(rep: Report, a: StudyAnalysis, factor: Factor, folder: Path) -> None:
    sweep = factor.lr_sweep
    assert sweep is not None
    rep.heading("Learning-rate sweep (validation split), bracketed", 3)
    rep.paragraph(
        f"Each level trained the factor's baseline at multiples "
        f"{', '.join(f'{m:g}' for m in sweep.multipliers)} of {_centre_words(sweep)} on seed(s) "
        f"{', '.join(map(str, sweep.seeds))}, which are not study seeds: the test accuracies "
        f"above come from seeds that played no part in the choice. Then up to {sweep.extend} "
        "bracketing round(s): while the best rate was at an edge of those tried, one more step "
        "beyond it; once interior, the geometric mean of the best rate and its better "
        "neighbour. The best mean final validation accuracy chose the rate; the test set played "
        "no part."
    )
    summaries = a.sweeps.get(factor.name, {})
    rep.bullets([s.statement() for s in summaries.values()])
    series, rows = {}, []
    for opt, s in summaries.items():
        by_lr: dict[float, list[float]] = {}
        for run in s.runs:
            by_lr.setdefault(run.lr, []).append(run.val_accuracy * POINTS)
            chosen = s.choice is not None and s.choice["chosen"] == run.lr
            rows.append({"level": opt, "lr": f"{run.lr:.3g}", "round": run.round or "grid",
                         "seed": run.seed, "val acc %": run.val_accuracy * POINTS,
                         "diverged": "yes" if run.diverged else "",
                         "chosen": "yes" if chosen else ""})  # fmt: skip
        xs = sorted(by_lr)
        means = [float(np.mean(by_lr[x])) for x in xs]
        series[opt] = (xs, means, means, means)
    if series:
        path = plots.lines_by_x(
            series, folder / f"{factor.name}_lr_sweep.png", "learning rate",
            "validation accuracy (%)", "LR sweep per level", logx=True,
        )  # fmt: skip
        rep.image(path, "Validation accuracy vs learning rate for each level")
        rep.table(rows)


def proxy_part(rep: Report, a: StudyAnalysis) -> None:
    """The learning-rate factor's check of the sweeps: their choice against the full budget's."""
    check = a.proxy
    if check is None:
        return
    rep.heading("Do the shorter sweeps choose the full budget's rate?", 3)
    rep.paragraph(
        "Every level that tunes its learning rate chose it by a sweep on a shorter budget and "
        "on seeds that are not study seeds: a proxy for the full budget. This factor trains "
        "the same network at several rates for the full budget, so each sweep of that same "
        "network (the same settings but for the rate, the epochs and the seed) is checked "
        "against it, on validation accuracy only."
    )
    rep.paragraph(check.statement(), css_class="conclusion")
    rows = []
    for r in check.rows:
        rows.append({
            "sweep (levels it tuned)": ", ".join(r.sweeps), "epochs": r.epochs,
            "seeds": ", ".join(map(str, r.seeds)), "chose lr": f"{r.chosen:.3g}",
            f"x the full budget's best ({check.best:g})": f"{r.ratio(check.best):.3g}",
            "within one step": "yes" if check.within_step(r) else "no",
            "complete": "yes" if r.complete else "no (still running)",
        })  # fmt: skip
    rep.table(rows)
