"""Training: one loop for both engines, run folders, checkpoints, evaluation."""

from .callbacks import Callback, Live, ProgressBar
from .loop import TrainingDiverged, TrainingInterrupted, evaluate_run, fit, load_run

__all__ = ["fit", "evaluate_run", "load_run", "Callback", "Live", "ProgressBar", "TrainingDiverged",
           "TrainingInterrupted"]
