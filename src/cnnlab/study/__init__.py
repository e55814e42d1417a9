"""The study engine: factors x levels x seeds, run through Optuna storage, analysed, reported."""
