"""Trials another study already trained (``cnnlab study run --reuse``): a claimed trial whose
training identity (its config with the learning rate it will train at, and its seed:
``spec.plan.training_identity``) matches a completed trial of the reuse study is copied from it,
not trained again. A study that adds factors to an earlier one, or a finer sweep whose choice
lands on the earlier rate, pays only for what is new.

The copy keeps what was measured and where: the metrics, the history, the test predictions,
the seconds and the environment that timed them; ``reused_from`` names the source trial (it
appears in ``results.csv``). The two studies must have scored the same test labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.trial import TrialState

from cnnlab.errors import CnnlabError
from cnnlab.study.spec.plan import PlannedTrial, training_identity
from cnnlab.study.storage import _optuna
from cnnlab.study.storage.connection import load_study, open_storage, safe_url
from cnnlab.study.storage.format import ENV_ATTR, ENV_PREFIX, PRED_ATTR, unpack
from cnnlab.study.storage.results import stored_test_labels


@dataclass
class Copied:
    outcome: dict[str, Any]  # what a trainer returns, plus "seconds" and "reused_from"
    environment: str | None  # the source's name for the environment that timed it
    environment_info: Any  # and its description


class ReuseSource:
    """The completed trials of study ``name`` in ``url``, by training identity."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.study = load_study(open_storage(url), name)  # a missing study: CnnlabError
        self.labels = stored_test_labels(self.study)
        self._by_identity: dict[str, Any] | None = None

    def describe(self) -> str:
        return f"study {self.name!r} in {safe_url(self.url)}"

    def check_labels(self, labels: np.ndarray | None) -> None:
        """Refuse a source scored against other test labels (another dataset or split)."""
        if labels is None or self.labels is None:
            return
        if not np.array_equal(labels, self.labels):
            raise CnnlabError(
                f"cannot reuse trials of {self.describe()}: its trials were scored against "
                "other test labels than this study's"
            )

    def _index(self) -> dict[str, Any]:
        if self._by_identity is None:
            self._by_identity = {}
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                a = t.user_attrs
                if PRED_ATTR not in t.system_attrs or "config" not in a:
                    continue
                config = dict(a["config"])
                if a.get("lr") is not None:  # the rate it trained at (a tuned trial's choice)
                    config["lr"] = a["lr"]
                self._by_identity.setdefault(training_identity(config), t)
        return self._by_identity

    def trained(self, trials: Iterable[PlannedTrial]) -> list[dict[str, Any]]:
        """The configs of ``trials`` this study already trained, among those whose learning
        rate is known before they run (not a tuned trial's, nor a bracketing round's)."""
        index = self._index() if self.labels is not None else {}
        known = (t.config for t in trials if t.config.get("lr") is not None)
        return [config for config in known if training_identity(config) in index]

    def find(self, config: dict[str, Any]) -> Copied | None:
        """The source's completed trial that trained ``config`` (learning rate resolved)."""
        if self.labels is None or config.get("lr") is None:
            return None
        t = self._index().get(training_identity(config))
        if t is None:
            return None
        a = t.user_attrs
        env = t.system_attrs.get(ENV_ATTR)
        info = _optuna.study_system_attrs(self.study).get(f"{ENV_PREFIX}{env}") if env else None
        outcome = {
            "metrics": a["metrics"], "history": a["history"], "seconds": float(a["seconds"]),
            "test_pred": unpack(t.system_attrs[PRED_ATTR]), "test_labels": self.labels,
            "reused_from": f"{self.name} trial {t.number}",
        }  # fmt: skip
        return Copied(outcome, env, info)
