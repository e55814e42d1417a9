"""Image folders in, decoded splits out: ``folders`` (layout, quality checks, duplicates),
``images`` (one file -> one array, refusing what is unsafe to decode), ``cache`` with
``cache_store`` and ``mapped`` (decoded images on disk, memory-mapped), ``prepare`` (the
train/validation/test splits a run uses, carved and checked for leakage)."""
