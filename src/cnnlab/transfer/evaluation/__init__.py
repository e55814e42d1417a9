"""After fitting: ``assess`` (calibration, threshold, held-out metrics), ``crossval``
(``--folds K``), ``report`` (HTML/Markdown, console summary), ``compare`` (runs side by side)."""
