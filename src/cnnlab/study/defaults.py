"""Defaults the study modules and command lines share, in a module of their own so that
reading them loads neither Optuna nor SciPy (and no package imports its own caller)."""

# Here rather than in ``storage``: the CLIs read it without loading Optuna.
DEFAULT_STORAGE = "sqlite:///studies.db"
# Half a point of test accuracy: above the seed-to-seed standard deviations measured for the
# full-data presets (0.07-0.41 points, docs/benchmarks.md, Time to accuracy) and the binomial
# standard error of an accuracy near 90% on 10,000 test images (0.3 points); a smaller change
# is not one a reader could act on. A parameter of analyse(), write_report()
# and the report and compare commands, which read it here (it loads no SciPy).
DEFAULT_MARGIN = 0.5
