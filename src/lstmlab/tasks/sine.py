"""`sine`: learn sine waves of random phase and frequency, then continue them alone.

The seed's PyTorch example, made honest: the model sees a wave one value at a time and
predicts the next value (teacher forcing). On held-out waves it is scored two ways:
next-step MSE over the last 50 steps given the true past, and free-running MSE, where after
100 steps of context it feeds its own predictions back for 50 steps. Targets are the clean
wave even when the inputs are noisy (--noise), so noise cannot be learnt as signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ModelConfig
from .base import Batch, Predictor, Task, TaskDefaults, held_out
from .datasets import read_series, series_input
from .kit import series_inputs, with_loss

PERIODS = (12.0, 40.0)        # steps per cycle, drawn uniformly
CONTEXT, FUTURE = 100, 50     # evaluation: steps seen, then steps generated
TRAIN_LEN = 100               # training sequences: 100 inputs, 100 next values


def waves(rng, n: int, length: int, noise: float):
    """(clean, observed): two (length, n) arrays of sine waves with random period and phase."""
    period = rng.uniform(*PERIODS, size=n)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    t = np.arange(length)[:, None]
    clean = np.sin(2 * np.pi * t / period + phase)
    observed = clean + noise * rng.standard_normal(clean.shape) if noise else clean
    return clean, observed


class Sine(Task):
    name = "sine"
    signals = ("value", "above_mean", "rising")
    summary = "next-step and free-running prediction of sine waves (random phase and period)"
    loss = "mse"
    defaults = TaskDefaults(model={"hidden_size": 32},
                            train={"steps": 1200, "batch_size": 32, "lr": 1e-2, "eval_every": 100})
    options = {"noise": (0.0, "standard deviation of noise added to the observed waves"),
               "jitter": (0.02, "noise added to training inputs only: teaches the model to "
                               "recover from its own small errors when it runs free"),
               "test_size": (256, "held-out waves for the test metrics")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        noise, n_test = float(self.opts["noise"]), int(self.opts["test_size"])
        if not 0.0 <= noise < 10.0:
            raise ValueError(f"noise must lie in [0, 10), got {noise}")
        if n_test < 1:
            raise ValueError(f"test_size must be at least 1, got {n_test}")
        self.noise, self.jitter = noise, self.opts["jitter"]
        if not 0.0 <= self.jitter < 10.0:
            raise ValueError(f"jitter must lie in [0, 10), got {self.jitter}")
        jittered = f" with input noise (jitter {self.jitter:g})" if self.jitter else ""
        self.loss_note = (f"training loss: every step of each wave{jittered}, from its first value "
                          f"on (no context yet); validation: clean inputs, last {FUTURE} steps after "
                          f"{CONTEXT} of context. Not on the same scale.")
        # held-out waves come from their own streams, never from the training stream
        self.split = held_out(seed, lambda rng, n: waves(rng, n, CONTEXT + FUTURE, noise),
                              128, n_test, item_bytes=32 * (CONTEXT + FUTURE))

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=1, output_size=1, readout="sequence", **settings)

    def train_batch(self, step, batch_size):
        rng = np.random.default_rng([self.seed, 0, step])
        clean, obs = waves(rng, batch_size, TRAIN_LEN + 1, self.noise)
        if self.jitter:
            obs = obs + self.jitter * rng.standard_normal(obs.shape)
        return Batch(x=obs[:-1, :, None], y=clean[1:, :, None])

    # --- evaluation ----------------------------------------------------------------------
    def _forecasts(self, predictor: Predictor, split: str):
        """(next-step, free-running) predictions of the FUTURE steps, each (FUTURE, n)."""
        clean, obs = self.split[split]
        dtype = np.dtype(predictor.config.dtype)
        x = obs[:-1, :, None].astype(dtype)                      # (T-1, n, 1)
        out, _ = predictor.run(x)
        next_step = out[CONTEXT - 1:, :, 0]                      # predicts steps CONTEXT..T-1
        out, state = predictor.run(x[:CONTEXT])
        last, free = out[-1:], [out[-1, :, 0]]
        for _ in range(FUTURE - 1):                              # feed the prediction back
            last, state = predictor.run(last, state)
            free.append(last[0, :, 0])
        return next_step, np.stack(free)

    def evaluate(self, predictor, split):
        clean = self.split[split][0][CONTEXT:]
        next_step, free = self._forecasts(predictor, split)
        return with_loss({"mse": float(np.mean((next_step - clean) ** 2)),
                          "free_run_mse": float(np.mean((free - clean) ** 2))}, split, "mse")

    def baselines(self):
        clean, obs = self.split["test"]
        future = clean[CONTEXT:]
        persistence_next = obs[CONTEXT - 1:-1]                   # x_t predicts x_{t+1}
        last = np.broadcast_to(obs[CONTEXT - 1], future.shape)   # the last value, repeated
        return {"persistence": {"mse": float(np.mean((persistence_next - future) ** 2)),
                                "free_run_mse": float(np.mean((last - future) ** 2))},
                "zero": {"mse": float(np.mean(future ** 2)),
                         "free_run_mse": float(np.mean(future ** 2))}}

    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import forecast_figure, gate_heatmap

        folder = Path(folder)
        clean, obs = self.split["test"]
        next_step, free = self._forecasts(predictor, "test")
        series = [{"history": obs[:CONTEXT, j], "truth": clean[CONTEXT:, j],
                   "free_run": free[:, j], "next_step": next_step[:, j], "label": f"test wave {j}"}
                  for j in range(min(3, clean.shape[1]))]
        paths = [forecast_figure(folder / "forecast.png", series=series,
                                 title="sine: forecast against the truth",
                                 metrics={"next-step MSE": test["mse"],
                                          f"free-run MSE ({FUTURE} steps)": test["free_run_mse"]})]
        x = obs[:CONTEXT, :1, None].astype(np.dtype(predictor.config.dtype))
        trace = predictor.trace(x)
        paths.append(gate_heatmap(folder / "gates.png", trace["l0"], x=x,
                                  title=f"sine: gates and states of layer 0 ({predictor.config.variant})"))
        return paths

    def predict_file(self, predictor, path, horizon: int = FUTURE):
        """Continue the user's series (one number per line, or a one-column CSV)."""
        values = read_series(path)
        x = values[:, None, None].astype(np.dtype(predictor.config.dtype))
        out, state = predictor.run(x)
        last, forecast = out[-1:], [float(out[-1, 0, 0])]
        for _ in range(horizon - 1):
            last, state = predictor.run(last, state)
            forecast.append(float(last[0, 0, 0]))
        return {"input": str(path), "steps_read": int(len(values)), "next": forecast[0],
                "forecast": forecast}


    # --- inspection -------------------------------------------------------------------------
    def examples(self, split="test"):
        """The held-out waves as the model reads them in evaluation: (CONTEXT + FUTURE - 1)
        observed values each."""
        return series_inputs(self.split[split][1][:-1])

    def encode_input(self, value):
        return series_inputs(series_input(value)[:, None])

    def stream_prediction(self, output, window):
        return [float(output[0])]                                # the output is the next value
