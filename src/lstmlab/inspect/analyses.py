"""The analyses: what a trained recurrent network does inside, as NumPy numbers.

Every function takes a run folder (or a `Subject`, or a loaded model) and an input in the
task's own terms (see `inputs_of`), and returns a dataclass with a `to_json()` that the CLI
prints and the dashboard sends. Gates are named as in the equations (LSTM i, f, g, o, c, h;
GRU r, z, n, h; RNN h) and grouped per layer and direction ("l0", "l0_reverse"; seq2seq
"encoder.l0", "decoder.l0").

    activations(run, input)            every gate and state at every step
    saturation(run)                    how often each gate is nearly shut or nearly open
    timescales(run)                    how long each unit remembers, from its forget gate
    gradient_flow(run, input)          |dL/dh_t| and |dL/dc_t| back through time
    connectivity(run, input)           how much the output at t depends on the input at s
    ablate(run, ...)                   clamp a unit and measure what changes
    ablation_table(run, ...)           every unit of a layer clamped in turn, sorted
    top_units(run, signal)             the units that follow a per-step signal
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import check_memory
from ..families import family_of
from ..tasks.base import Inputs
from .signals import signal_values
from .subject import STEP_NAMES, Subject

SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}
RETENTION = {"lstm": "f", "gru": "z"}     # the gate that keeps the old state (h = (1-z) n + z h)
CHUNK_STEPS = 20_000                      # sequence steps per call when reading many examples
MAX_CONNECTIVITY = 500                    # steps connectivity reads (it runs T copies at once)


# --- opening runs and inputs --------------------------------------------------------------
def open_subject(run, engine: str | None = None) -> Subject:
    """A Subject from a run folder (in its own engine unless told), a Subject, or a loaded
    lstmlab model (SequenceModel or Seq2Seq of either engine; no task then)."""
    if isinstance(run, Subject):
        return run
    if isinstance(run, (str, Path)):
        from ..train.loop import load_run

        task, predictor, cfg = load_run(run, engine)
        return Subject(predictor, engine or cfg["engine"], task, Path(run))
    from ..train.engines import predictor_for

    if not hasattr(run, "config") or not hasattr(run.config, "architecture"):
        raise ValueError(f"cannot inspect a {type(run).__name__}: give a run folder or an "
                         "lstmlab SequenceModel / Seq2Seq")
    return Subject(predictor_for(run), "numpy" if hasattr(run, "params") else "torch")


def inputs_of(subject: Subject, input=None) -> Inputs:
    """The sequences an analysis reads, from what the user gave:

    None            every example of the task's test split
    int N           the test split's example N
    str             the task's own input: a text (charlm, sentiment, translate), or a file or
                    numbers separated by commas (forecast, sine)
    Inputs          as they are
    array           the model's input itself: (T, F) or (T, B, F) features, (T,) or (T, B) ids
    """
    task = subject.task
    if isinstance(input, Inputs):
        return input
    if isinstance(input, np.ndarray):
        return _array_inputs(subject, input)
    if task is None:
        raise ValueError("a model without its run folder needs its input as an array")
    if input is None:
        return task.examples("test")
    if isinstance(input, (int, np.integer)) and not isinstance(input, bool):
        examples = task.examples("test")
        if not 0 <= input < examples.size:
            raise ValueError(f"example {input} is past the test split, which has examples "
                             f"0 to {examples.size - 1}")
        return examples.take(int(input))
    if isinstance(input, str):
        return task.encode_input(input)
    raise ValueError(f"an input must be a text, a path, an example number or an array, "
                     f"got a {type(input).__name__}")


def _array_inputs(subject: Subject, x: np.ndarray) -> Inputs:
    tokens = bool(subject.config.vocab_size)
    if x.ndim == (1 if tokens else 2):
        x = x[:, None]
    if x.ndim != (2 if tokens else 3) or x.shape[0] == 0:
        want = "(T,) or (T, B) token ids" if tokens else "(T, F) or (T, B, F) features"
        raise ValueError(f"the model reads {want}, got an array of shape {x.shape}")
    if not tokens and x.shape[-1] != subject.config.input_size:
        raise ValueError(f"x has {x.shape[-1]} features, the model expects {subject.config.input_size}")
    steps = [[str(t) for t in range(x.shape[0])] for _ in range(x.shape[1])]
    return Inputs(x=x, steps=steps)


def first_steps(inputs: Inputs, steps: int) -> Inputs:
    """One sequence's first `steps` steps."""
    n = min(steps, inputs.length(0))
    return Inputs(x=inputs.x[:n], steps=[inputs.steps[0][:n]],
                  values=None if inputs.values is None else inputs.values[:n])


def _chunks(inputs: Inputs, max_steps: int | None) -> Iterator[Inputs]:
    """The sequences in batches of about CHUNK_STEPS steps, up to `max_steps` steps in all."""
    T, B = inputs.x.shape[:2]
    lengths = np.full(B, T) if inputs.lengths is None else np.asarray(inputs.lengths)
    if max_steps is not None and lengths[0] >= max_steps:      # one long stream: its start
        yield first_steps(inputs, max_steps)
        return
    n = B if max_steps is None else max(1, int(np.searchsorted(np.cumsum(lengths), max_steps) + 1))
    n = min(n, B)
    per = max(1, CHUNK_STEPS // max(T, 1))
    for a in range(0, n, per):
        yield inputs.take(slice(a, min(n, a + per)))


def _valid(T: int, lengths) -> np.ndarray:
    """(T, B) or (T, 1) bool: where a step is inside its sequence."""
    t = np.arange(T)[:, None]
    return t < (np.asarray(lengths)[None, :] if lengths is not None else T)


# --- activations ----------------------------------------------------------------------------
@dataclass
class Activations:
    """Every gate and state at every step.

    groups[group][name]: (T, B, H), zero past each sequence's end; outputs: the model's
    outputs; attention: seq2seq only, (B, T2, S). inputs: what was read (with the decoder's
    inputs for seq2seq)."""
    groups: dict[str, dict[str, np.ndarray]]
    outputs: np.ndarray
    inputs: Inputs
    attention: np.ndarray | None = None

    def first(self, steps: int) -> Activations:
        """The first `steps` steps of every sequence (a window to draw), encoder side only
        for seq2seq (the decoder keeps its steps)."""
        cut = self.inputs.take(slice(None))
        lengths = None if cut.lengths is None else np.minimum(cut.lengths, steps)
        cut = Inputs(x=cut.x[:steps], steps=[s[:steps] for s in cut.steps],
                     lengths=None if lengths is None or (lengths == min(steps, cut.x.shape[0])).all()
                     else lengths, values=None if cut.values is None else cut.values[:steps],
                     target_in=cut.target_in, target_steps=cut.target_steps)
        groups = {g: {n: v if g.startswith("decoder.") else v[:steps] for n, v in d.items()}
                  for g, d in self.groups.items()}
        attention = None if self.attention is None else self.attention[:, :, :steps]
        return Activations(groups, self.outputs, cut, attention)

    def to_json(self, sequence: int = 0, units=slice(None)) -> dict:
        """One sequence's values as lists: {group: {name: [[unit values] per step]}};
        `units` (a list of unit numbers or a slice) picks the encoder side's units."""
        T = self.inputs.length(sequence)
        out = {"steps": self.inputs.steps[sequence],
               "groups": {g: {n: v[:T, sequence][:, units].tolist() for n, v in d.items()}
                          for g, d in self.groups.items() if not g.startswith("decoder.")}}
        if self.attention is not None:
            T2 = self.attention.shape[1]
            out["decoder"] = {g: {n: v[:, sequence].tolist() for n, v in d.items()}
                              for g, d in self.groups.items() if g.startswith("decoder.")}
            out["target_steps"] = (self.inputs.target_steps or [[]])[sequence][:T2]
            out["attention"] = self.attention[sequence, :, :T].tolist()
        return out


def activations(run, input=0, engine: str | None = None) -> Activations:
    """The gates and states of every layer and direction at every step of `input` (see
    inputs_of; default the first test example). Seq2seq: the encoder's over the source, the
    decoder's over its own greedy translation, and the attention."""
    subject = open_subject(run, engine)
    inputs = subject.with_targets(inputs_of(subject, input))
    out, groups, attn = subject.record(inputs)
    return Activations(groups, out, inputs, attn)


# --- saturation -----------------------------------------------------------------------------
@dataclass
class Saturation:
    """Per group and sigmoid gate, per unit: the fraction of steps with the gate below `low`
    (nearly shut) and above `high` (nearly open); Karpathy et al. 2015, Fig. 3."""
    low: float
    high: float
    steps: int                                   # steps counted (sequences x their lengths)
    shut: dict[str, dict[str, np.ndarray]]       # group -> gate -> (H,) fraction below low
    open: dict[str, dict[str, np.ndarray]]       # group -> gate -> (H,) fraction above high

    def to_json(self) -> dict:
        return {"low": self.low, "high": self.high, "steps": self.steps,
                "groups": {g: {k: {"shut": self.shut[g][k].tolist(), "open": self.open[g][k].tolist()}
                               for k in self.shut[g]} for g in self.shut}}


def saturation_of(groups: dict, lengths=None, low: float = 0.1, high: float = 0.9,
                  family: str = "lstm") -> tuple[dict, dict, int]:
    """(counts below low, counts above high, steps) of the sigmoid gates in `groups` (as
    Activations.groups), counting only steps inside each sequence."""
    shut: dict = {}
    opened: dict = {}
    steps = 0
    for g, d in groups.items():
        for k in SIGMOID_GATES[family]:
            if k not in d:
                continue
            v = d[k]
            valid = _valid(v.shape[0], lengths)[..., None]       # (T, B, 1)
            shut.setdefault(g, {})[k] = ((v < low) & valid).sum(axis=(0, 1))
            opened.setdefault(g, {})[k] = ((v > high) & valid).sum(axis=(0, 1))
            steps = int(np.broadcast_to(valid, v.shape[:2] + (1,)).sum())
    return shut, opened, steps


def saturation(run, input=None, *, low: float = 0.1, high: float = 0.9,
               max_steps: int | None = 50_000, engine: str | None = None) -> Saturation:
    """Saturation of every sigmoid gate over `input` (default: the task's test split, up to
    `max_steps` sequence steps)."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"saturation needs 0 <= low < high <= 1, got low {low} and high {high}")
    subject = open_subject(run, engine)
    family = subject.config.spec.family
    if not SIGMOID_GATES[family]:
        raise ValueError(f"a {subject.config.variant} network has no gates to saturate")
    total_shut: dict = {}
    total_open: dict = {}
    steps = 0
    for chunk in _chunks(inputs_of(subject, input), max_steps):
        chunk = subject.with_targets(chunk)
        _, groups, _ = subject.record(chunk)
        shut, opened, n = saturation_of(groups, chunk.lengths, low, high, family)
        steps += n
        for g in shut:
            for k in shut[g]:
                total_shut.setdefault(g, {}).setdefault(k, 0)
                total_open.setdefault(g, {}).setdefault(k, 0)
                total_shut[g][k] = total_shut[g][k] + shut[g][k]
                total_open[g][k] = total_open[g][k] + opened[g][k]
    if not total_shut:
        raise ValueError(f"a {subject.config.variant} network has no sigmoid gates to saturate")
    return Saturation(low, high, steps,
                      {g: {k: v / steps for k, v in d.items()} for g, d in total_shut.items()},
                      {g: {k: v / steps for k, v in d.items()} for g, d in total_open.items()})


# --- timescales -----------------------------------------------------------------------------
F_MAX = 1.0 - 1e-7       # a forget gate rounded to 1 counts as this: a horizon of 10^7 steps


@dataclass
class Timescales:
    """Each unit's memory horizon from its forget gate f (GRU: the update gate z, which keeps
    the old h): `mean` (H,) the mean over steps of -1/ln f, the number of steps over which
    f^k falls to 1/e; `survival` (K, H) the mean over t of f_{t+1} ... f_{t+k}, how much of
    c_t is left after k = 1..K steps."""
    gate: str
    steps: int
    mean: dict[str, np.ndarray]                  # group -> (H,)
    survival: dict[str, np.ndarray]              # group -> (K, H)

    def to_json(self) -> dict:
        return {"gate": self.gate, "steps": self.steps,
                "groups": {g: {"mean": self.mean[g].tolist(), "survival": self.survival[g].tolist()}
                           for g in self.mean}}


def timescales_of(f: np.ndarray, lengths=None, horizon: int = 100):
    """(sum of -1/ln f over valid steps (H,), valid steps, sum of survival (K, H), counts (K,))
    for one group's forget gate f (T, B, H)."""
    T, B, H = f.shape
    valid = _valid(T, lengths)                                   # (T, B) or (T, 1)
    valid = np.broadcast_to(valid, (T, B))
    f = np.clip(np.asarray(f, np.float64), 1e-300, F_MAX)
    logf = np.log(f)
    tau = np.where(valid[..., None], -1.0 / logf, 0.0).sum(axis=(0, 1))
    cs = np.concatenate([np.zeros((1, B, H)), np.cumsum(logf, axis=0)])     # cs[m] = sum_{j<m}
    K = max(1, min(horizon, T - 1))
    surv, counts = np.zeros((K, H)), np.zeros(K)
    for k in range(1, K + 1):
        # f_{t+1} ... f_{t+k} for t = 0 .. T-1-k: exp(cs[t+k+1] - cs[t+1])
        with np.errstate(under="ignore"):                        # what survives below 1e-308 is 0
            prod = np.exp(cs[k + 1:] - cs[1:T - k + 1])          # (T - k, B, H)
        ok = valid[k:]                                           # step t+k inside the sequence
        surv[k - 1] = np.where(ok[..., None], prod, 0.0).sum(axis=(0, 1))
        counts[k - 1] = ok.sum()
    return tau, int(valid.sum()), surv, counts


def timescales(run, input=None, *, horizon: int = 100, max_steps: int | None = 50_000,
               engine: str | None = None) -> Timescales:
    """Memory horizons over `input` (default: the test split, up to `max_steps` steps)."""
    subject = open_subject(run, engine)
    family = subject.config.spec.family
    gate = RETENTION.get(family)
    if gate is None:
        raise ValueError(f"a {subject.config.variant} network has no gate that keeps its state, "
                         "so it has no timescales to read (an LSTM's f or a GRU's z)")
    tau: dict = {}                               # group -> sum of -1/ln f over valid steps
    surv: dict = {}                              # group -> sum of survival (K, H), counts (K,)
    steps = 0
    for chunk in _chunks(inputs_of(subject, input), max_steps):
        chunk = subject.with_targets(chunk)
        _, groups, _ = subject.record(chunk)
        for g, d in groups.items():
            if g.startswith("decoder."):         # the decoder reads its own output: not a test split
                continue
            if gate not in d:
                raise ValueError(f"a {subject.config.variant} network has no forget gate (f is 1 "
                                 "at every step): its cells keep everything, for ever")
            f = d[gate]
            if g.endswith("_reverse"):           # a reverse cell carries its state from t to t - 1
                f = _cell_order(f, chunk.lengths)
            t, n, s_k, c_k = timescales_of(f, chunk.lengths, horizon)
            tau[g] = tau.get(g, 0.0) + t
            if g in surv:                        # chunks may differ in length: the shorter K counts
                K = min(len(c_k), len(surv[g][1]))
                surv[g] = (surv[g][0][:K] + s_k[:K], surv[g][1][:K] + c_k[:K])
            else:
                surv[g] = (s_k, c_k)
            last = n
        steps += last
    return Timescales(gate, steps, {g: v / steps for g, v in tau.items()},
                      {g: s_k / np.maximum(c_k, 1)[:, None] for g, (s_k, c_k) in surv.items()})


def _cell_order(a: np.ndarray, lengths) -> np.ndarray:
    """(T, B, H) reversed in time within each sequence's length: a reverse cell's own order."""
    t = np.arange(a.shape[0])[:, None]
    n = np.full(a.shape[1], a.shape[0]) if lengths is None else np.asarray(lengths)
    return np.take_along_axis(a, np.where(t < n, n - 1 - t, t)[..., None], axis=0)


# --- gradients -------------------------------------------------------------------------------
def _output_grad(subject: Subject, o: np.ndarray) -> np.ndarray:
    """d(scalar)/d(output) for one output vector o (..., O): the log-probability of the most
    probable class for a classifier or a language model, the sum of the outputs (the mean
    half of a Gaussian head) for a regression."""
    loss = subject.task.loss if subject.task is not None else "mse"
    o = np.asarray(o, np.float64)
    if loss in ("xent", "ctc"):                                  # ctc: the class of the frame
        e = np.exp(o - o.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        onehot = np.zeros_like(p)
        np.put_along_axis(onehot, o.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return onehot - p
    g = np.ones_like(o)
    if loss == "gaussian":
        g[..., o.shape[-1] // 2:] = 0.0
    return g


@dataclass
class GradientFlow:
    """How the gradient of the model's last output reaches back through time, one sequence:
    dh[group] (T,) |dL/dh_t| and dc[group] (T,) |dL/dc_t| (LSTM), units[group] (T, H) |dL/dh_t|
    per unit. L is the last step's output: the log-probability of its most probable class,
    or the sum of its values for a regression."""
    steps: list[str]
    dh: dict[str, np.ndarray]
    dc: dict[str, np.ndarray]
    units: dict[str, np.ndarray]
    variant: str

    def ratio(self, group: str = "l0") -> float:
        """|dL/dh| at the first step over |dL/dh| at the last: how much of the gradient is
        left after the whole sequence (0 where it vanished)."""
        v = self.dh[group]
        return float(v[0] / v[-1]) if v[-1] > 0 else float("nan")

    def to_json(self) -> dict:
        return {"variant": self.variant, "steps": self.steps,
                "groups": {g: {"dh": self.dh[g].tolist(), "dc": self.dc[g].tolist() if g in self.dc else None,
                               "first_over_last": self.ratio(g)} for g in self.dh}}


def gradient_flow(run, input=0, engine: str | None = None) -> GradientFlow:
    """|dL/dh_t|, |dL/dc_t| for every step of one sequence (the first of `input`), L the
    output at its last step, from the engine's backward (NumPy: the hand-written BPTT;
    torch: autograd)."""
    subject = open_subject(run, engine)
    inputs = inputs_of(subject, input).take(0)
    T = inputs.x.shape[0]
    sequence = subject.config.readout == "sequence"

    def make_dout(out):
        d = np.zeros_like(out, dtype=np.float64)
        if sequence:
            d[T - 1] = _output_grad(subject, out[T - 1])
        else:
            d[:] = _output_grad(subject, out)
        return d

    _, _, state = subject.gradients(inputs, make_dout)
    norm = {g: {k: np.linalg.norm(np.asarray(v, np.float64)[:, 0], axis=-1) for k, v in d.items()}
            for g, d in state.items()}
    return GradientFlow(inputs.steps[0], {g: d["h"] for g, d in norm.items()},
                        {g: d["c"] for g, d in norm.items() if "c" in d},
                        {g: np.abs(np.asarray(d["h"], np.float64)[:, 0]) for g, d in state.items()},
                        subject.config.variant)


@dataclass
class Connectivity:
    """matrix (T_out, T_in): |d y_t / d x_s|, the norm of the gradient of the output at step
    t (as in GradientFlow) with respect to the input at step s (the embedded token for a
    token model): how strongly each prediction depends on each earlier input (Distill,
    "Memorization in RNNs"). One row for a model that reads out one output per sequence."""
    steps: list[str]
    matrix: np.ndarray

    def to_json(self) -> dict:
        return {"steps": self.steps, "matrix": self.matrix.tolist()}


def connectivity(run, input=0, *, steps: int | None = None, engine: str | None = None) -> Connectivity:
    """Connectivity of one sequence (the first of `input`; its first `steps` steps)."""
    subject = open_subject(run, engine)
    inputs = inputs_of(subject, input).take(0)
    if steps is not None:
        inputs = first_steps(inputs, steps)
    T = inputs.x.shape[0]
    if subject.config.readout != "sequence":
        _, dx, _ = subject.gradients(inputs, lambda out: _output_grad(subject, out), states=False)
        return Connectivity(inputs.steps[0], np.linalg.norm(np.asarray(dx, np.float64)[:, 0], axis=-1)[None])
    if T > MAX_CONNECTIVITY:
        raise ValueError(f"connectivity reads at most {MAX_CONNECTIVITY} steps (it runs one copy of "
                         f"the sequence per step), got {T}; give a shorter input")
    c = subject.config
    width = (2 if c.bidirectional else 1) * c.num_layers * 8 * c.hidden_size + c.output_size + c.input_size
    check_memory(f"connectivity over {T} steps ({T} copies of the sequence, read at once)",
                 T * T * width * 8, "give a shorter input")
    # T copies side by side: copy t carries the gradient of step t's output only
    x = np.repeat(inputs.x, T, axis=1)                           # (T, T[, F])
    copies = Inputs(x=x, steps=inputs.steps * T)

    def make_dout(out):                                          # out (T, T, O)
        d = np.zeros_like(out, dtype=np.float64)
        t = np.arange(T)
        d[t, t] = _output_grad(subject, out[t, t])
        return d

    _, dx, _ = subject.gradients(copies, make_dout, states=False)   # (T_in, T_out, I)
    return Connectivity(inputs.steps[0], np.linalg.norm(np.asarray(dx, np.float64), axis=-1).T)


# --- ablation --------------------------------------------------------------------------------
@dataclass
class Clamp:
    """An `edit` that sets `name` ("h", "c" or a gate) of `units` in `group` to `value` (a
    number, or (T,) one per step) at the steps in [start, stop) of the input's time order."""
    group: str
    name: str
    units: np.ndarray
    value: float | np.ndarray
    start: int = 0
    stop: int | None = None

    def __call__(self, group, name, value, when):
        if group != self.group or name != self.name:
            return value
        w = np.asarray(when.cpu() if hasattr(when, "cpu") else when)
        inside = (w >= self.start) & (w < (self.stop if self.stop is not None else np.inf))
        if not inside.any():
            return value
        if np.ndim(self.value) == 0:
            v = np.full((value.shape[0], 1), float(self.value))      # (B, 1)
        else:                                                    # one value per step: this step's
            per_step = np.asarray(self.value, np.float64)
            v = np.broadcast_to(np.reshape(per_step[np.minimum(w, len(per_step) - 1)], (-1, 1)),
                                (value.shape[0], 1))
        sel = np.broadcast_to(np.reshape(inside, (-1, 1)), (value.shape[0], 1))
        if isinstance(value, np.ndarray):
            out = value.copy()
            out[:, self.units] = np.where(sel, v.astype(value.dtype), out[:, self.units])
            return out
        import torch

        out = value.clone()
        dev, dt = value.device, value.dtype
        out[:, self.units] = torch.where(torch.from_numpy(np.array(sel)).to(dev),
                                         torch.from_numpy(np.array(v)).to(dev, dt), out[:, self.units])
        return out


@dataclass
class Ablation:
    """What clamping changed: the outputs on the input before and after, their largest
    difference, and the task's test metric before and after (None without a task)."""
    clamp: dict
    outputs: np.ndarray
    clamped: np.ndarray
    max_change: float
    metric: str | None = None
    before: float | None = None
    after: float | None = None
    lower_is_better: bool = True

    @property
    def change(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before

    def to_json(self) -> dict:
        return {"clamp": self.clamp, "max_output_change": self.max_change, "metric": self.metric,
                "before": self.before, "after": self.after, "change": self.change}


def check_clamp(subject: Subject, layer: int, unit, gate: str,
                direction: str = "forward") -> tuple[str, np.ndarray]:
    """(group, units) for a clamp of `gate` of `unit` (None: all) in `layer`, or a one-line
    ValueError that names what exists."""
    groups = subject.layer_groups()
    layers = list(dict.fromkeys(g.split("_")[0] for g in groups))   # l0, l1, ..., l10 in order
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer!r} does not exist: the model has layer(s) 0 to {len(layers) - 1}")
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    group = layers[layer] + ("_reverse" if direction == "reverse" else "")
    if group not in groups:
        raise ValueError(f"layer {layer} has no reverse direction: the model is not bidirectional")
    family = subject.config.spec.family
    names = [n for n in STEP_NAMES[family] if n not in _absent(subject)]
    if gate not in names:
        raise ValueError(f"a {subject.config.variant} cell has no {gate!r} to clamp; "
                         f"it has: {', '.join(names)}")
    H = subject.hidden_size(group)
    if unit is None:
        return group, np.arange(H)
    us = np.atleast_1d(np.asarray(unit))
    if us.dtype.kind not in "iu" or us.size == 0 or us.min() < 0 or us.max() >= H:
        raise ValueError(f"unit {unit!r} does not exist: layer {layer} has units 0 to {H - 1}")
    return group, us.astype(np.int64)


def _absent(subject: Subject) -> set[str]:
    """The LSTM gates this variant does not compute (nig, nfg, nog, lstm1997)."""
    spec = subject.config.spec
    if spec.family != "lstm":
        return set()
    traced = set(family_of(spec).traced)
    gates = set(spec.gates) | ({"f"} if spec.coupled_gates else set())
    return {k for k in ("i", "f", "o") if k in traced and k not in gates}


def _metric(subject: Subject) -> float:
    assert subject.task is not None
    return float(subject.task.evaluate(subject.predictor, "test")[subject.task.metric])


def _unchanged(group, name, value, when):
    """An edit that changes nothing: the unclamped run on the same path (the reference
    equations) as a clamped one, so that a clamp to what a unit already does changes nothing
    to the last bit."""
    return value


def ablate(run, input=0, layer: int = 0, unit=None, gate: str = "h", value=0.0, *,
           steps: tuple[int, int | None] = (0, None), direction: str = "forward",
           metric: bool = True, engine: str | None = None, baseline: float | None = None) -> Ablation:
    """Clamp `gate` ("h", "c" or a gate name) of `unit` (None: every unit) in `layer` to
    `value` (a number, or (T,) one per step) at the steps [start, stop) of `steps`; return
    the outputs on `input` before and after and, with `metric`, the task's test metric
    before (or `baseline`, when it is known already) and after."""
    subject = open_subject(run, engine)
    group, units = check_clamp(subject, layer, unit, gate, direction)
    start, stop = steps
    clamp = Clamp(group, gate, units, value, start, stop)
    inputs = subject.with_targets(inputs_of(subject, input))
    with subject.edited(clamp):
        after_out, _ = subject.run_outputs(inputs)
        after = _metric(subject) if metric and subject.task is not None else None
    with subject.edited(_unchanged):
        before_out, _ = subject.run_outputs(inputs)
        before = None
        if after is not None:
            before = baseline if baseline is not None else _metric(subject)
    desc = {"group": group, "gate": gate, "units": units.tolist() if unit is not None else "all",
            "value": value if np.ndim(value) == 0 else "per step", "steps": [start, stop]}
    task = subject.task
    return Ablation(desc, before_out, after_out, float(np.max(np.abs(after_out - before_out))),
                    task.metric if task is not None and after is not None else None, before, after,
                    task.lower_is_better if task is not None else True)


@dataclass
class AblationTable:
    """The task's test metric with each unit of a layer clamped in turn, worst change first."""
    metric: str
    baseline: float
    lower_is_better: bool
    gate: str
    value: float
    rows: list[dict] = field(default_factory=list)   # {"group", "unit", "metric", "change"}

    def to_json(self) -> dict:
        return {"metric": self.metric, "baseline": self.baseline, "gate": self.gate,
                "value": self.value, "rows": self.rows}


def ablation_table(run, layer: int = 0, gate: str = "h", value: float = 0.0, *, units=None,
                   direction: str = "forward", engine: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> AblationTable:
    """Clamp `gate` of each unit of `layer` (or of `units`) to `value` in turn and measure the
    test metric; rows sorted from the most harmful clamp to the least. progress(done, total)
    is called after each unit."""
    subject = open_subject(run, engine)
    if subject.task is None:
        raise ValueError("an ablation table needs a run folder: it measures the task's test metric")
    group, units = check_clamp(subject, layer, units, gate, direction)
    task = subject.task
    with subject.edited(_unchanged):
        base = _metric(subject)
    rows: list[dict] = []
    for n, u in enumerate(units):
        with subject.edited(Clamp(group, gate, np.array([u]), value)):
            m = _metric(subject)
        rows.append({"group": group, "unit": int(u), "metric": m, "change": m - base})
        if progress is not None:
            progress(n + 1, len(units))
    sign = 1.0 if task.lower_is_better else -1.0
    rows.sort(key=lambda r: -sign * float(r["change"]))
    return AblationTable(task.metric, base, task.lower_is_better, gate, value, rows)


# --- units that follow a signal ----------------------------------------------------------------
@dataclass
class TopUnits:
    """The units whose activation correlates most with a per-step signal (LSTMVis-style):
    rows {"group", "unit", "state" ("c" or "h"), "r"} by |r|, the strongest first, r the
    `method`'s correlation over `steps` steps; no rows and a `note` where the signal could
    not be measured on the input."""
    signal: str
    steps: int
    rows: list[dict]
    method: str = "pearson"
    note: str = ""

    def to_json(self) -> dict:
        out = {"signal": self.signal, "steps": self.steps, "method": self.method, "rows": self.rows}
        return {**out, "note": self.note} if self.note else out


CORRELATIONS = ("pearson", "spearman")


def top_units(run, signal, input=None, *, k: int = 5, skip: int = 0,
              max_steps: int | None = 20_000, engine: str | None = None,
              method: str = "pearson") -> TopUnits:
    """The `k` units (of c and of h, every layer and direction) whose activation follows
    `signal` best over `input` (default: the test split, up to `max_steps` steps; None reads
    it whole, a chunk at a time, keeping only the states c and h of the steps counted).

    signal: a name of lstmlab.inspect.SIGNALS ("position_in_word", "above_mean", ...), or
    per-step values, (T,) or (T, B), of the whole input. skip: steps at each sequence's start
    left out (the cold start). method: "pearson" (a straight-line relation) or "spearman"
    (the correlation of ranks: any relation that only rises or only falls, such as a counter
    that saturates, or a cell that decays by its forget gate step after step). A signal that
    cannot be measured on the input is a ValueError."""
    found = units_following(run, [signal], input, k=k, skip=skip, max_steps=max_steps,
                            engine=engine, method=method)[0]
    if found.note:
        raise ValueError(found.note)
    return found


def units_following(run, signals: list, input=None, *, k: int = 5, skip: int = 0,
                    max_steps: int | None = 20_000, engine: str | None = None,
                    method: str = "pearson",
                    progress: Callable[[int, int], None] | None = None) -> list[TopUnits]:
    """top_units for several signals from one reading of the input; a signal that cannot be
    measured on it (it does not vary, or it reads a series from a text) gets a note.
    progress(done, total) is told after each chunk of the input is read."""
    from ..tasks.kit import correlations, ranks

    if method not in CORRELATIONS:
        raise ValueError(f"unknown correlation {method!r}; choose one of {', '.join(CORRELATIONS)}")
    subject = open_subject(run, engine)
    if subject.seq2seq:
        raise ValueError("top_units reads sequence models; for translate, inspect activations")
    inputs = inputs_of(subject, input)
    names = [sig if isinstance(sig, str) else "given" for sig in signals]
    features: list[list[np.ndarray]] = [[] for _ in signals]
    notes = [""] * len(signals)
    states: dict[tuple[str, str], list[np.ndarray]] = {}
    done = 0                                                     # sequences read so far
    chunks = list(_chunks(inputs, max_steps))
    for c, chunk in enumerate(chunks):
        if progress is not None:
            progress(c, len(chunks))
        acts = activations(subject, chunk)
        T, B = chunk.x.shape[:2]
        valid = np.broadcast_to(_valid(T, chunk.lengths), (T, B)).copy()
        valid[:skip] = False
        for n, sig in enumerate(signals):
            if not notes[n]:
                try:
                    features[n].append(_chunk_signal(sig, chunk, done)[valid])
                except ValueError as e:
                    notes[n] = str(e)
        done += B
        for g, d in acts.groups.items():
            for state in ("c", "h"):
                if state in d:
                    states.setdefault((g, state), []).append(np.asarray(d[state])[valid])   # (N, H)
    feature = [np.concatenate(f) if f else np.zeros(0) for f in features]
    for n, f in enumerate(feature):
        if not notes[n] and (f.size == 0 or f.std() == 0):
            notes[n] = (f"the signal {names[n]} does not vary over this input; choose an input "
                        "where it does")
    if method == "spearman":
        feature = [ranks(f) for f in feature]
    rows: list[list[dict]] = [[] for _ in signals]
    for (g, state), parts in states.items():
        a = np.concatenate(parts).astype(np.float64)
        parts.clear()                                            # one group's copy at a time
        a = ranks(a) if method == "spearman" else a
        for n, f in enumerate(feature):
            r = None if notes[n] else correlations(a, f)
            if r is not None:
                rows[n] += [{"group": g, "unit": u, "state": state, "r": float(r[u])}
                            for u in range(len(r))]
    for found in rows:
        found.sort(key=lambda row: -abs(float(row["r"])))
    return [TopUnits(names[n], 0 if notes[n] else len(feature[n]), rows[n][:k], method, notes[n])
            for n in range(len(signals))]


def _chunk_signal(signal, chunk: Inputs, first: int) -> np.ndarray:
    """The (T, B) signal over a chunk of the input whose first sequence is sequence `first`:
    a named signal is computed on the chunk, given values are cut to it."""
    if isinstance(signal, str):
        return signal_values(signal, chunk)
    v = np.asarray(signal, np.float64)
    v = v[:, None] if v.ndim == 1 else v
    T, B = chunk.x.shape[:2]
    if v.ndim == 2 and v.shape[1] > 1:
        v = v[:, first:first + B]
    return signal_values(v[:T], chunk)
