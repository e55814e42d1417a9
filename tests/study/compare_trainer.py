"""Fake trainers for ``test_compare.py``: the fake trainer with one effect reversed.

Loaded by name in the workers (``compare_trainer:batch_norm_hurts``), like ``fake_trainer``.
"""

import fake_trainer

BASE_ACCURACY = fake_trainer.accuracy


def _batch_norm_hurts(config) -> float:
    # fake_trainer gives batch norm +2 points; here it costs 2 points instead
    return BASE_ACCURACY(config) - (0.04 if config.batch_norm else 0.0)


def batch_norm_hurts(data_dir=None):
    fake_trainer.accuracy = _batch_norm_hurts  # the trainer looks it up at each call
    return fake_trainer.trainer(data_dir)
