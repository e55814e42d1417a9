"""How a cnnlab study is laid out in Optuna's tables: attribute names and compact encodings.

These names are the storage format: renaming one makes existing study databases unreadable.
User attributes hold what ``optuna-dashboard`` may show (the plan, metrics, history); system
attributes hold cnnlab's bookkeeping (workers, failure reasons, packed predictions).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np

# study user attributes
SPEC_ATTR = "cnnlab_spec"  # the spec's source, so any machine can rebuild the plan
DIGEST_ATTR = "cnnlab_spec_digest"
ORIGIN_ATTR = "cnnlab_origin"  # the profile or file the study was started from
# the version of the stored spec's form (version 1 wrote an unset weight_decay out as 0.0;
# the studies published in docs/findings were migrated once)
SPEC_FORMAT_ATTR = "cnnlab_spec_format"
SPEC_FORMAT = 2
# study system attributes
LABELS_ATTR = "cnnlab_test_labels"  # the test labels, packed, once per study
# + an environment's name: machine and versions of each worker environment; the name is
# "host@digest" (see results.record_environment)
ENV_PREFIX = "cnnlab_env:"
# trial system attributes
PRED_ATTR = "cnnlab_test_pred"  # predicted class per test image, packed
WORKER_ATTR = "cnnlab_worker"  # the identity of the process that claimed the trial
ENV_ATTR = "cnnlab_env"  # the name of the environment (machine, versions) that ran the trial
FAIL_REASON_ATTR = "cnnlab_fail_reason"
RETRY_OF_ATTR = "cnnlab_retry_of"  # the number of the failed trial a retry replaces
# the fail reason of a queued trial that the study's plan no longer holds
SUPERSEDED = "superseded: no longer planned (cnnlab changed what this trial trains); not run"
# trial user attributes written at enqueue time: the planned trial
PLAN_ATTRS = ("key", "kind", "label", "seed", "config", "tune_lr", "depends_on")


def pack(labels: np.ndarray) -> str:
    """10k class indices as compact text: uint8, zlib, base64 (about 4 KB instead of 30)."""
    data = np.asarray(labels, dtype=np.uint8).tobytes()
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8).astype(np.int64)


def jsonable(v: Any) -> Any:
    """``v`` as plain JSON values (NumPy arrays and scalars included), as Optuna stores them."""
    return json.loads(
        json.dumps(v, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


def plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
