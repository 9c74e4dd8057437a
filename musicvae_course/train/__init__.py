"""Training: the fit loop with the card's recipe, its settings, run folder, history, distributed helpers, CLI.

Taught in ``notebooks/03_fine_tuning_on_a_subset.ipynb``.
"""

from .config import (
    CARD_BETA_WARMUP_EPOCHS,
    CARD_LR,
    FINE_TUNE_BETA_WARMUP_EPOCHS,
    FINE_TUNE_LR,
    SettingError,
    TrainConfig,
    UnknownSettingError,
)
from .inputs import TrainingDataError, load_weights
from .loop import ENCODER_PARTS, TrainingDiverged, beta_schedule, fit
from .run_folder import RunFolderBusy

__all__ = [
    "CARD_BETA_WARMUP_EPOCHS",
    "CARD_LR",
    "ENCODER_PARTS",
    "FINE_TUNE_BETA_WARMUP_EPOCHS",
    "FINE_TUNE_LR",
    "RunFolderBusy",
    "SettingError",
    "TrainConfig",
    "TrainingDataError",
    "TrainingDiverged",
    "UnknownSettingError",
    "beta_schedule",
    "fit",
    "load_weights",
]
