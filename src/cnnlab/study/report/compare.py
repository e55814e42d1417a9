"""``cnnlab study compare``: does a finding replicate in another study?

Two studies (say the ``quick`` profile and the full-scale ``standard`` one) answer the same
questions at different budgets. For every comparison both hold (the same factor and level
against the same reference level), this puts the two differences with their 95% CIs and
verdicts side by side and says whether the verdicts agree and whether the differences point
the same way. Both studies go through ``analysis.analyse`` exactly as ``study report`` does,
so a verdict here is the verdict of each study's own report (same margin δ); nothing is
recomputed another way.

Why two agreement counts: verdicts agree only when both studies reach the same conclusion
(a quick study with 3 seeds often stays "unresolved" where the full one says "worse"), while
the direction says whether the small study at least points the same way; issue 13 asks the
quick profile to match the full study's direction wherever the full study is significant.

Where each level's learning rate came from, and what else the two studies train differently
for a comparison (its budget, its regime, the level's own settings, the reference's rate), stand
beside each row: a verdict that changed between a study at the baseline's rate and one at each
level's tuned rate is a finding about tuning only when nothing else changed with it (issue 23);
and a difference against a reference whose rate another sweep moved moves with that rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, check_output
from cnnlab.report.document import markdown_table
from cnnlab.study import storage as st
from cnnlab.study.analysis import DEFAULT_MARGIN, Comparison, StudyAnalysis, analyse
from cnnlab.study.spec.factors import Factor
from cnnlab.study.spec.levels import Level
from cnnlab.study.spec.names import check_study_name

Key = tuple[str, str, str]  # (factor, level, reference)


@dataclass(frozen=True)
class Side:
    """One study as compared: where it is stored and its analysis."""

    storage: str  # without password
    name: str
    analysis: StudyAnalysis
    tag: str = "a"  # "a" or "b": which side of a Pair holds this study's comparison


@dataclass(frozen=True)
class Pair:
    factor: str
    level: str
    reference: str
    a: Comparison | None  # None: this comparison is not in study A
    b: Comparison | None

    @property
    def shared(self) -> bool:
        return self.a is not None and self.b is not None

    @property
    def verdicts_agree(self) -> bool:
        return self.shared and self.a.verdict == self.b.verdict

    @property
    def same_direction(self) -> bool:
        """Both differences on the same side of zero (both exactly zero counts as the same)."""
        if not self.shared:
            return False
        da, db = self.a.diff.mean, self.b.diff.mean
        if math.isnan(da) or math.isnan(db):
            return False
        return _sign(da) == _sign(db)


@dataclass(frozen=True)
class StudyComparison:
    a: Side
    b: Side
    pairs: list[Pair]  # in study A's comparison order, then those only in B
    margin: float  # points, the δ both analyses used

    @property
    def shared(self) -> list[Pair]:
        return [p for p in self.pairs if p.shared]

    def rate_moved(self, p: Pair) -> bool:
        """The level's learning rate came from another source in A than in B."""
        return rate_source(self.a, p.factor, p.level) != rate_source(self.b, p.factor, p.level)

    def rate_values_moved(self, p: Pair) -> bool:
        """The level's or its reference's mean learning rate differs between A and B (another
        sweep chose it, or another source set it)."""
        return any(_rate_move(self.a, self.b, p.factor, label) for label in (p.level, p.reference))

    def reference_rate(self, p: Pair) -> str | None:
        """``"adam's rate 0.008 → 0.0113"`` where the reference trained at another mean rate in
        B than in A: its difference then moved with it, which the level's columns do not show."""
        move = _rate_move(self.a, self.b, p.factor, p.reference) if p.shared else None
        return None if move is None else f"{p.reference}'s rate {move[0]:.3g} → {move[1]:.3g}"

    def changes(self, p: Pair) -> list[str]:
        """What else the two studies train differently for this comparison (its level or its
        reference): budget, regime or the level's own settings, as ``field A -> B``; the rate
        and the seed are left out (the rate has its own columns)."""
        return self._changes[(p.factor, p.level, p.reference)]

    @cached_property
    def _changes(self) -> dict[Key, list[str]]:
        """``changes`` of every pair, worked out once: the table and the summary both ask."""
        by_pair = {}
        for p in self.pairs:
            out: dict[str, str] = {}
            for label in (p.level, p.reference):
                a = trained_config(self.a, p.factor, label)
                b = trained_config(self.b, p.factor, label)
                if a is None or b is None:
                    continue
                for key in sorted((a.keys() | b.keys()) - _NOT_CHANGES):
                    if key not in out and a.get(key) != b.get(key):
                        out[key] = f"{key} {_value(a.get(key))} → {_value(b.get(key))}"
            by_pair[(p.factor, p.level, p.reference)] = list(out.values())
        return by_pair

    def significant_in(self, side: str) -> list[Pair]:
        """Shared comparisons that study ``side`` ("a" or "b") finds better or worse."""
        return [p for p in self.shared if getattr(p, side).significant]

    def summary(self) -> list[str]:
        """The closing lines; the last one is the agreement count."""
        shared = self.shared
        lines = []
        for side, other in (("a", "b"), ("b", "a")):
            sig = self.significant_in(side)
            if sig:
                same = sum(p.same_direction for p in sig)
                lines.append(
                    f"significant in {side.upper()}: {len(sig)}; same direction in "
                    f"{other.upper()}: {same} of {len(sig)}"
                )
        only_a = sum(p.b is None for p in self.pairs)
        only_b = sum(p.a is None for p in self.pairs)
        if only_a or only_b:
            lines.append(f"only in A: {only_a}; only in B: {only_b} (not counted in the agreement)")
        groups = (
            ("learning rate from another source in A and B, all else equal (e.g. the baseline's "
             "vs the level's own tuned rate)",
             [p for p in shared if self.rate_moved(p) and not self.changes(p)]),
            ("trained another way in A and B besides the rate (budget, regime or the level's "
             "settings: the last column)", [p for p in shared if self.changes(p)]),
            ("the same source of the learning rate, another rate (the level's or its "
             "reference's: another sweep chose it), all else equal",
             [p for p in shared if not self.rate_moved(p) and not self.changes(p)
              and self.rate_values_moved(p)]),
        )  # fmt: skip
        for what, pairs in groups:
            if pairs:
                kept = sum(p.verdicts_agree for p in pairs)
                lines.append(f"{what}: {len(pairs)} comparisons, verdict kept in {kept}, "
                             f"changed in {len(pairs) - kept}")  # fmt: skip
        agree = sum(p.verdicts_agree for p in shared)
        same = sum(p.same_direction for p in shared)
        lines.append(
            f"agree: {agree} of {len(shared)} comparisons (same direction: {same} of {len(shared)})"
        )
        return lines


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def load_analysis(storage: str, name: str, margin: float = DEFAULT_MARGIN) -> Side:
    """Study ``name`` analysed as ``study report`` analyses it. Creates nothing on disk."""
    name = check_study_name(name, "study name")
    study = st.load_study(st.open_storage(storage, must_exist=True), name)
    records = st.completed_records(study)
    if not records:
        raise CnnlabError(f"study {name!r} has no completed trials yet; nothing to compare")
    analysis = analyse(st.stored_spec(study), records, st.stored_test_labels(study), margin)
    return Side(st.safe_url(storage), name, analysis)


def compare_studies(
    storage_a: str, name_a: str, storage_b: str, name_b: str, margin: float = DEFAULT_MARGIN
) -> StudyComparison:
    a = load_analysis(storage_a, name_a, margin)
    b = load_analysis(storage_b, name_b, margin)
    return pair_up(a, b, margin)


def pair_up(a: Side, b: Side, margin: float) -> StudyComparison:
    a, b = replace(a, tag="a"), replace(b, tag="b")

    def by_key(side: Side) -> dict[Key, Comparison]:
        return {(c.factor, c.level, c.reference): c for c in side.analysis.comparisons}

    in_a, in_b = by_key(a), by_key(b)
    keys = list(in_a) + [k for k in in_b if k not in in_a]
    pairs = [Pair(*k, in_a.get(k), in_b.get(k)) for k in keys]
    return StudyComparison(a, b, pairs, margin)


# -- output --------------------------------------------------------------------------------


def _difference(c: Comparison | None) -> str:
    if c is None:
        return "not in this study"
    d = c.diff
    if math.isnan(d.low):
        return f"{d.mean:+.2f} (no CI, n = {c.n})"
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _verdict(c: Comparison | None) -> str:
    return "-" if c is None else c.verdict


def _agreement(p: Pair) -> tuple[str, str]:
    if not p.shared:
        return ("only in A" if p.b is None else "only in B"), "-"
    return ("yes" if p.verdicts_agree else "no"), ("same" if p.same_direction else "opposite")


def _header(cmp: StudyComparison) -> list[str]:
    lines = []
    for tag, side in (("A", cmp.a), ("B", cmp.b)):
        an = side.analysis
        lines.append(
            f"{tag}: study {side.name} in {side.storage} "
            f"({an.complete} of {an.planned} trials complete)"
        )
    lines.append(
        "differences: test accuracy of the level minus its reference, in points, with the "
        f"95% CI; verdicts as in each study's report (δ = {cmp.margin:g} points)"
    )
    return lines


def rate_source(side: Side, factor: str, level: str) -> str:
    """Where a level's learning rate came from in one study: ``tuned`` (its own sweep),
    ``fixed`` (set by the level) or ``baseline`` (the factor's baseline rate)."""
    found = _level(side, factor, level)
    if found is None:
        return "-"
    lv = found[1]
    if lv.tune_lr:
        return "tuned"
    return "fixed" if lv.overrides.get("lr") is not None else "baseline"


_NOT_CHANGES = frozenset({"lr", "seed"})  # the rate has columns of its own; seeds pair up


def trained_config(side: Side, factor: str, level: str) -> dict[str, Any] | None:
    """The settings a level trains with in one study (its factor's regime, then the level's
    changes), or None where the study lacks the level."""
    found = _level(side, factor, level)
    if found is None:
        return None
    f, lv = found
    return side.analysis.spec.factor_baseline(f).to_dict() | lv.overrides


def _level(side: Side, factor: str, level: str) -> tuple[Factor, Level] | None:
    f = next((x for x in side.analysis.spec.factors if x.name == factor), None)
    lv = next((x for x in f.levels if x.label == level), None) if f is not None else None
    return None if lv is None else (f, lv)


def _value(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _cell_lr(side: Side, factor: str, level: str) -> float | None:
    cell = side.analysis.cells.get(f"{factor}={level}")
    return cell.lr if cell is not None else None


def _rate_move(a: Side, b: Side, factor: str, level: str) -> tuple[float, float] | None:
    """The mean rates of ``level`` in A and B where they differ by more than rounding."""
    ra, rb = _cell_lr(a, factor, level), _cell_lr(b, factor, level)
    if ra is None or rb is None or math.isclose(ra, rb, rel_tol=1e-3):
        return None
    return ra, rb


def _rate(side: Side, p: Pair) -> str:
    if getattr(p, side.tag) is None:
        return "-"
    lr = _cell_lr(side, p.factor, p.level)
    return rate_source(side, p.factor, p.level) + (f" {lr:.3g}" if lr is not None else "")


def _rows(cmp: StudyComparison) -> list[list[str]]:
    return [
        [f"{p.factor} = {p.level} vs {p.reference}", _rate(cmp.a, p), _difference(p.a),
         _verdict(p.a), _rate(cmp.b, p), _difference(p.b), _verdict(p.b), *_agreement(p),
         "; ".join([*cmp.changes(p), *filter(None, [cmp.reference_rate(p)])]) or "-"]
        for p in cmp.pairs
    ]  # fmt: skip


# "A rate": where the level's learning rate came from in A, and its mean: a conclusion drawn at
# the baseline's rate in one study and at each level's tuned rate in the other shows here
_COLUMNS = ["comparison", "A rate", "A difference", "A verdict", "B rate", "B difference",
            "B verdict", "verdicts agree", "direction", "also changed (A → B)"]  # fmt: skip


def format_text(cmp: StudyComparison) -> str:
    rows = [_COLUMNS, *_rows(cmp)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]  # fmt: skip
    return "\n".join([*_header(cmp), "", *table, "", *cmp.summary()]) + "\n"


def format_markdown(cmp: StudyComparison) -> str:
    lines = [f"# Study comparison: {cmp.a.name} (A) vs {cmp.b.name} (B)", ""]
    lines += [f"- {line}" for line in _header(cmp)]
    lines += ["", *markdown_table(_COLUMNS, _rows(cmp)), ""]
    lines += [f"{line}  " for line in cmp.summary()]
    return "\n".join(lines) + "\n"


def check_markdown_out(out: str | Path, storages: tuple[str, ...], overwrite: bool = False) -> Path:
    """``--out`` checked before the studies are read: never a study's database (nor its
    folder's parent), never an existing file unless ``overwrite``."""
    read = [("the storage of a study", f) for f in map(st.sqlite_path, storages) if f]
    return check_output("--out", out, overwrite=overwrite, inputs=read)


def write_markdown(
    cmp: StudyComparison, out: str | Path, storages: tuple[str, ...] = (), overwrite: bool = False
) -> Path:
    """The comparison as a Markdown file, written atomically (a failure leaves no half file)."""
    out = check_markdown_out(out, storages, overwrite)
    return atomic_write_text(out, format_markdown(cmp), overwrite)
