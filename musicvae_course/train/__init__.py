"""Training: the fit loop with the card's recipe, its history, distributed helpers and the CLI.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from .loop import ENCODER_PARTS, FINE_TUNE_LR, TrainingDiverged, beta_schedule, fit, load_weights

__all__ = ["ENCODER_PARTS", "FINE_TUNE_LR", "TrainingDiverged", "beta_schedule", "fit", "load_weights"]
