"""Training: one loop for both engines, run folders, checkpoints, evaluation."""

from .callbacks import Callback, Live, ProgressBar
from .loop import TrainingDiverged, TrainingInterrupted, evaluate_ensemble, evaluate_run, fit, load_run

__all__ = ["fit", "evaluate_run", "evaluate_ensemble", "load_run", "Callback", "Live", "ProgressBar",
           "TrainingDiverged", "TrainingInterrupted"]
