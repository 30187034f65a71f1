"""Look inside a trained recurrent network: the analyses of Karpathy et al. 2015 and LSTMVis,
for every variant, both engines and every task.

    from lstmlab import inspect
    a = inspect.activations("runs/charlm", "In the beginning")   # gates and states per step
    s = inspect.saturation("runs/charlm")                        # over the test split
    t = inspect.timescales("runs/charlm")
    g = inspect.gradient_flow("runs/adding", 0)                  # test example 0
    c = inspect.connectivity("runs/charlm", "And God said")
    r = inspect.ablate("runs/sine", 0, layer=0, unit=3, gate="c", value=0.0)
    u = inspect.top_units("runs/charlm", "position_in_word")
    st = inspect.step_through("runs/sine", 0, t=5, unit=3)      # one step as its equations
    s = inspect.Stream("runs/charlm"); s.step("A")               # one step at a time, state kept

Results are NumPy numbers in dataclasses with `to_json()`; the CLI (`lstmlab inspect`), the
figures and the dashboard read the same ones.
"""

from .analyses import (
    Ablation,
    AblationTable,
    Activations,
    Clamp,
    Connectivity,
    GradientFlow,
    Saturation,
    Timescales,
    TopUnits,
    ablate,
    ablation_table,
    activations,
    connectivity,
    gradient_flow,
    inputs_of,
    open_subject,
    saturation,
    saturation_of,
    timescales,
    timescales_of,
    top_units,
)
from .signals import SIGNALS, signal_values
from .stepthrough import StepThrough, step_through
from .stream import Stream, StreamStep
from .subject import Subject

__all__ = ["Ablation", "AblationTable", "Activations", "Clamp", "Connectivity", "GradientFlow",
           "SIGNALS", "Saturation", "StepThrough", "Stream", "StreamStep", "Subject", "Timescales",
           "TopUnits", "ablate", "ablation_table", "activations", "connectivity", "gradient_flow",
           "inputs_of", "open_subject", "saturation", "saturation_of", "signal_values",
           "step_through", "timescales", "timescales_of", "top_units"]
