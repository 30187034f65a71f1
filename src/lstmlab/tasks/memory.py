"""Long-memory benchmarks: the adding problem, the copy task and the temporal-order problem.

In each the answer depends on an input seen long before the answer is asked for, and the
steps in between carry nothing useful, so a model that forgets scores no better than a
baseline that never looked:

  adding          sum the two marked values of T random ones (Hochreiter & Schmidhuber 1997,
                  in the form of Le, Jaitly & Hinton 2015): mean baseline MSE 1/6
  copy            reproduce 10 symbols after T blanks (Arjovsky, Shah & Bengio 2016):
                  memoryless baseline 10 ln 8 / (T + 20) nats per symbol
  temporal-order  classify the order of X and Y hidden among ~100 distractors
                  (Hochreiter & Schmidhuber 1997, experiments 6a and 6b): 1 in 4 (or 8)

Data come from np.random.default_rng([seed, split, ...]): split 0 is training (one draw per
step, so a batch is a pure function of seed and step), 1 validation, 2 test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import log_softmax
from ..spec import variant as make_spec
from .base import TRAIN, Batch, Inputs, Task, TaskDefaults, check_int, held_out
from .kit import accuracy, nll, run_batched, with_loss

FORGET_BIAS = 3.0             # copy and temporal-order: see with_forget_bias


def with_forget_bias(settings: dict, value: float) -> dict:
    """`settings` plus forget_bias=value, unless the user set one (None included: PyTorch's
    init) or the variant has no forget gate to bias.

    With PyTorch's init the forget gate starts near 1/2, so at first a cell keeps 0.5^50 of
    what it saw 50 steps ago and no gradient reaches the inputs that matter; a bias of 3
    (f = 0.95) lets it through from the first step, where the task has no shorter lag that
    training could start from (the adding problem has one: its second marker)."""
    if "forget_bias" in settings:
        return settings
    spec = make_spec(settings.get("variant", "lstm"))
    if spec.family == "lstm" and ("f" in spec.gates or spec.coupled_gates):
        return {**settings, "forget_bias": value}
    return settings


# --- adding --------------------------------------------------------------------------------
def adding_sequences(rng, n: int, T: int):
    """n sequences of the adding problem: x (T, n, 2), y (n, 1), and the marked positions.

    Feature 0 is a value drawn uniformly from [0, 1]; feature 1 is the marker, 1 at exactly
    two steps, one in the first half (t < T // 2) and one in the second, 0 elsewhere. The
    target is the sum of the two marked values.
    """
    values = rng.uniform(0.0, 1.0, size=(T, n))
    first = rng.integers(0, T // 2, size=n)
    second = rng.integers(T // 2, T, size=n)
    cols = np.arange(n)
    markers = np.zeros((T, n))
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    x = np.stack([values, markers], axis=-1)                      # (T, n, 2)
    y = (values[first, cols] + values[second, cols])[:, None]    # (n, 1)
    return x, y, first, second


class Adding(Task):
    name = "adding"
    signals = ("value", "position")
    summary = ("the adding problem: the sum of the two marked values among T random ones "
               "(Hochreiter & Schmidhuber 1997; Le et al. 2015)")
    loss = "mse"
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 64},
                            train={"steps": 3000, "batch_size": 64, "lr": 3e-3,
                                   "eval_every": 250})
    options = {"seq_len": (100, "T, steps per sequence: one marker in the first half, one in "
                                "the second, so the first value must be kept >= T/2 steps"),
               "test_size": (1000, "held-out sequences for the test metrics")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        self.T = check_int("seq_len", self.opts["seq_len"], 2)
        n_test = check_int("test_size", self.opts["test_size"], 1)
        self.split = held_out(seed, lambda rng, n: adding_sequences(rng, n, self.T), 500, n_test,
                              item_bytes=40 * self.T)

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=2, output_size=1, readout="last", **settings)

    def train_batch(self, step, batch_size):
        x, y, _, _ = adding_sequences(np.random.default_rng([self.seed, TRAIN, step]),
                                      batch_size, self.T)
        return Batch(x=x, y=y)

    def _predict(self, predictor, split):
        x, y = self.split[split][:2]
        return run_batched(predictor, x)[:, 0], y[:, 0]

    def evaluate(self, predictor, split):
        pred, y = self._predict(predictor, split)
        return with_loss({"mse": float(np.mean((pred - y) ** 2))}, split, "mse")

    def baselines(self):
        x, y, _, second = self.split["test"]
        y = y[:, 0]
        recent = x[second, np.arange(y.size), 0] + 0.5
        # mean: E[u1 + u2] = 1 for u ~ U[0, 1], known without data: MSE -> var = 2/12 = 1/6.
        # second_value: remembers only the value marked in the second half (at most T/2
        # steps back) and adds the first one's mean 0.5: MSE -> 1/12. A model between the
        # two has learnt a short memory but not the long one.
        return {"mean": {"mse": float(np.mean((1.0 - y) ** 2))},
                "second_value": {"mse": float(np.mean((recent - y) ** 2))}}

    def examples(self, split="test"):
        """The split's sequences as evaluate reads them: (T, N, 2) float64, the value and the
        marker; each step labelled with its value, "0.42", starred where marked, "0.42*";
        `values` the values."""
        x = self.split[split][0]
        steps = [[f"{v:.2f}*" if m else f"{v:.2f}" for v, m in x[:, j].tolist()]
                 for j in range(x.shape[1])]
        return Inputs(x=x, steps=steps, values=x[:, :, 0])

    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import gate_heatmap

        folder = Path(folder)
        pred, y = self._predict(predictor, "test")
        first = self.split["test"][2]
        paths = [_adding_figure(folder / "predictions.png", pred, y, lag=self.T - first,
                                T=self.T, baselines=baselines, variant=predictor.config.variant)]
        x = self.split["test"][0][:, :1].astype(np.dtype(predictor.config.dtype))
        trace = predictor.trace(x)
        paths.append(gate_heatmap(
            folder / "gates.png", trace["l0"], x=x,
            title=f"adding, T = {self.T}, {predictor.config.variant}: x[0] the values, "
                  "x[1] the two markers"))
        return paths


def _adding_figure(path, pred, y, *, lag, T, baselines, variant):
    from ..viz.figures import LEGEND_SIZE, SUBTITLE_SIZE, log_y, new_figure, save_figure, style_axes

    with np.errstate(all="ignore"):       # as viz.figures: odd values must not abort a picture
        fig = new_figure(5.2)
        left, right = fig.subplots(1, 2)
        mse = float(np.mean((pred - y) ** 2))
        left.scatter(y, pred, s=7, alpha=0.45, color="#1f77b4", linewidths=0,
                     label=f"{variant}: MSE {mse:.3g}")
        left.plot([0, 2], [0, 2], color="#111111", linewidth=1.2, label="perfect: prediction = sum")
        left.axhline(1.0, color="#d62728", linestyle="--", linewidth=1.4,
                     label=f"mean baseline (always 1): MSE {baselines['mean']['mse']:.3g}")
        left.set_xlabel("target: sum of the two marked values")
        left.set_ylabel("prediction")
        left.set_xlim(-0.05, 2.05)
        left.set_ylim(min(-0.05, float(pred.min()) - 0.05), max(2.05, float(pred.max()) + 0.05))
        left.set_title("prediction against target", loc="left", fontsize=SUBTITLE_SIZE)
        left.legend(fontsize=LEGEND_SIZE - 0.5, frameon=False, loc="upper left")
        style_axes(left)

        err = np.maximum((pred - y) ** 2, 1e-7)                  # log axis: exact hits at the floor
        right.scatter(lag, err, s=7, alpha=0.45, color="#1f77b4", linewidths=0)
        edges = np.linspace(T // 2, T, 6)                        # lags run from T/2 + 1 to T
        mids, means = [], []
        for a, b in zip(edges[:-1], edges[1:]):
            inside = (lag > a) & (lag <= b)
            if inside.any():
                mids.append((a + b) / 2)
                means.append(float(err[inside].mean()))
        right.plot(mids, means, color="#111111", marker="o", linewidth=1.8,
                   label=f"{variant}: mean per bin")
        right.axhline(baselines["mean"]["mse"], color="#d62728", linestyle="--", linewidth=1.4,
                      label="mean baseline")
        right.axhline(baselines["second_value"]["mse"], color="#ff7f0e", linestyle=":",
                      linewidth=1.8, label="remembers only the second value")
        log_y(right)
        right.set_ylim(1e-7 / 2, 5.0)
        right.set_xlabel("steps from the first marked value to the end")
        right.set_ylabel("squared error (log scale)")
        right.set_title("error against how long the first value must be kept", loc="left",
                        fontsize=SUBTITLE_SIZE)
        right.legend(fontsize=LEGEND_SIZE - 0.5, frameon=False, loc="upper center",
                     bbox_to_anchor=(0.5, -0.13), ncols=2, handlelength=1.6,
                     columnspacing=1.0)                         # below: the dots fill the panel
        style_axes(right)
        fig.suptitle(f"adding problem, T = {T}: {y.size} test sequences ({variant})",
                     fontsize=SUBTITLE_SIZE + 2)
        return save_figure(fig, path)


# --- copy ----------------------------------------------------------------------------------
BLANK, DELIMITER = 0, 9        # symbols 1..8 are the data
COPY_SYMBOLS = 10              # blank + 8 data symbols + delimiter
COPY_LEN = 10                  # symbols to remember
COPY_STEP_NAMES = ("_", *map(str, range(1, 9)), ":")   # inspection's labels of ids 0..9


def copy_sequences(rng, n: int, T: int, k: int = COPY_LEN):
    """n sequences of the copy task as Arjovsky et al. 2016 define it, each T + 2k long.

    Input x (T + 2k, n) ids: k data symbols from 1..8, T - 1 blanks, the delimiter, k blanks.
    Target y (T + 2k, n) ids: T + k blanks, then the k data symbols. The last k steps are
    the recall: the model must output what it saw T + k steps earlier.
    """
    data = rng.integers(1, 9, size=(k, n))
    x = np.zeros((T + 2 * k, n), dtype=np.int64)
    x[:k] = data
    x[T + k - 1] = DELIMITER
    y = np.zeros_like(x)
    y[T + k:] = data
    return x, y


class Copy(Task):
    name = "copy"
    summary = ("the copy task: reproduce 10 symbols after T blanks (Arjovsky et al. 2016); "
               "cross-entropy over the whole sequence, as the paper")
    loss = "xent"
    metric = "nll"                     # per symbol, the whole sequence: the paper's
    # model_config adds forget_bias=3 where the variant has a forget gate (with_forget_bias)
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 128},
                            train={"steps": 6000, "batch_size": 64, "lr": 3e-3,
                                   "eval_every": 500})
    options = {"delay": (50, "T: blanks between the data and the delimiter (the paper uses "
                             "100 to 500); sequences are T + 20 steps"),
               "test_size": (1000, "held-out sequences for the test metrics")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        self.T = check_int("delay", self.opts["delay"], 1)
        n_test = check_int("test_size", self.opts["test_size"], 1)
        self.split = held_out(seed, lambda rng, n: copy_sequences(rng, n, self.T), 500, n_test,
                              item_bytes=32 * (self.T + 2 * COPY_LEN))

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=COPY_SYMBOLS, output_size=COPY_SYMBOLS,
                           vocab_size=COPY_SYMBOLS, readout="sequence",
                           **with_forget_bias(settings, FORGET_BIAS))

    def train_batch(self, step, batch_size):
        # the loss counts every step (the paper's), so the mask is None
        x, y = copy_sequences(np.random.default_rng([self.seed, TRAIN, step]), batch_size, self.T)
        return Batch(x=x, y=y)

    def _logp(self, predictor, split):
        x, y = self.split[split]
        return log_softmax(run_batched(predictor, x)), y          # (L, N, 10), (L, N)

    def evaluate(self, predictor, split):
        logp, y = self._logp(predictor, split)
        return with_loss(self._metrics(logp, y), split)

    @staticmethod
    def _metrics(logp, y):
        nll = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]   # (L, N)
        recall = slice(-COPY_LEN, None)
        right = logp[recall].argmax(-1) == y[recall]                     # (k, N)
        return {"nll": float(nll.mean()),                    # per symbol, whole sequence: the paper's
                "recall_nll": float(nll[recall].mean()),     # the k recalled symbols only
                "accuracy": float(right.mean()),             # recalled symbols right
                "exact_match": float(right.all(0).mean())}   # sequences with all k right

    def baselines(self):
        # memoryless (Arjovsky et al.): blanks with certainty until the recall, then each of
        # the 8 data symbols with probability 1/8: 10 ln 8 / (T + 20) nats per symbol.
        L = self.T + 2 * COPY_LEN
        return {"memoryless": {"nll": float(COPY_LEN * np.log(8) / L),
                               "recall_nll": float(np.log(8)), "accuracy": 1 / 8,
                               "exact_match": float(8.0 ** -COPY_LEN)}}

    def examples(self, split="test"):
        """The split's sequences as evaluate reads them: (T + 20, N) int64 ids; each step
        labelled with its symbol, 1..8, "_" a blank, ":" the delimiter (the cue to recall)."""
        x = self.split[split][0]
        return Inputs(x=x, steps=[[COPY_STEP_NAMES[s] for s in x[:, j].tolist()]
                                  for j in range(x.shape[1])])

    def figures(self, predictor, folder, test, baselines):
        logp, y = self._logp(predictor, "test")
        x = self.split["test"][0]
        return [_copy_figure(Path(folder) / "recall.png", np.exp(logp[-COPY_LEN - 1:]),
                             x, y, T=self.T, variant=predictor.config.variant)]


def _copy_figure(path, probs, x, y, *, T, variant):
    """probs (k + 1, N, 10): the delimiter step and the k recall steps."""
    from ..viz.figures import (
        GATE_CMAP,
        LEGEND_SIZE,
        SUBTITLE_SIZE,
        TICK_SIZE,
        new_figure,
        save_figure,
        style_axes,
    )

    names = ["blank"] + [str(s) for s in range(1, 9)] + ["delim"]

    with np.errstate(all="ignore"):       # as viz.figures: odd values must not abort a picture
        fig = new_figure(8.6)
        grid = fig.add_gridspec(3, 2, width_ratios=[1.0, 0.02], height_ratios=[1.0, 1.2, 1.2])
        ax = fig.add_subplot(grid[0, 0])
        right = probs[1:].argmax(-1) == y[-COPY_LEN:]             # (k, N)
        pos = np.arange(1, COPY_LEN + 1)
        ax.bar(pos, right.mean(1), color="#1f77b4", width=0.7, label=f"{variant}")
        ax.axhline(1 / 8, color="#d62728", linestyle="--", linewidth=1.4,
                   label="memoryless: a guess, 1/8")
        ax.set_xticks(pos, [f"{p}" for p in pos])
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recalled symbol (its position among the 10 data symbols)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"accuracy of each recalled symbol over {y.shape[1]} test sequences "
                     f"(all 10 right: {right.all(0).mean():.1%})", loc="left",
                     fontsize=SUBTITLE_SIZE)
        ax.legend(fontsize=LEGEND_SIZE, frameon=False, loc="upper right", ncols=2)
        style_axes(ax)
        for row, j in ((1, 0), (2, 1)):
            ax = fig.add_subplot(grid[row, 0])
            im = ax.imshow(probs[:, j].T, aspect="auto", interpolation="nearest", cmap=GATE_CMAP,
                           vmin=0, vmax=1, origin="upper")
            truth = y[-COPY_LEN:, j]
            ax.plot(np.arange(1, COPY_LEN + 1), truth, linestyle="none", marker="s",
                    markersize=13, markerfacecolor="none", markeredgecolor="#ff7f0e",
                    markeredgewidth=2.0, label="the symbol to recall")
            ax.set_yticks(range(COPY_SYMBOLS), names)
            ax.set_xticks(range(COPY_LEN + 1),
                          ["delim\nseen"] + [f"recall {p}" for p in range(1, COPY_LEN + 1)])
            ax.tick_params(labelsize=TICK_SIZE)
            ax.set_ylabel("predicted symbol")
            shown = " ".join(str(s) for s in x[:COPY_LEN, j])
            ax.set_title(f"test sequence {j}: input {shown}, then {T - 1} blanks and the "
                         "delimiter", loc="left", fontsize=SUBTITLE_SIZE)
            ax.legend(fontsize=LEGEND_SIZE, frameon=False, loc="lower right",
                      bbox_to_anchor=(1.0, 1.0), borderaxespad=0.1)
            cb = fig.colorbar(im, cax=fig.add_subplot(grid[row, 1]))
            cb.ax.tick_params(labelsize=TICK_SIZE)
            cb.set_label("probability", fontsize=TICK_SIZE + 1)
        fig.suptitle(f"copy task, T = {T}: what the model outputs when asked to recall "
                     f"({variant})", fontsize=SUBTITLE_SIZE + 2)
        return save_figure(fig, path)


# --- temporal order ------------------------------------------------------------------------
ORDER_SYMBOLS = ("E", "B", "a", "b", "c", "d", "X", "Y")   # ids 0..7
E_ID, B_ID, X_ID = 0, 1, 6
# (start, end) of each relevant symbol's position, as fractions of the base length L:
# experiment 6a puts them at 10..20 and 50..60 of 100..110 steps, 6b at 10..20, 33..43, 66..76
SLOTS = {2: ((0.10, 0.20), (0.50, 0.60)),
         3: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76))}
CLASS_NAMES = {2: ("Q", "R", "S", "U"), 3: ("Q", "R", "S", "U", "V", "A", "B", "C")}


def order_sequences(rng, n: int, L: int, relevant: int = 2):
    """n sequences of the temporal-order problem (Hochreiter & Schmidhuber 1997, 6a / 6b).

    Each starts with E, ends with the trigger B, is L..L + L//10 steps long, and holds
    distractors a, b, c, d except at `relevant` positions (one per slot of SLOTS), which are
    X or Y. The class is the order read as a binary number, X = 0, Y = 1: for 6a XX -> Q,
    XY -> R, YX -> S, YY -> U. Returns x (max length, n) ids padded with E, lengths (n,),
    classes (n,) and the relevant positions (relevant, n).
    """
    lengths = rng.integers(L, L + L // 10 + 1, size=n)
    x = rng.integers(2, 6, size=(int(lengths.max()), n))         # distractors a..d
    cols = np.arange(n)
    x[0] = E_ID
    x[lengths - 1, cols] = B_ID
    bits = rng.integers(0, 2, size=(relevant, n))
    where = np.stack([rng.integers(round(lo * L), round(hi * L) + 1, size=n)
                      for lo, hi in SLOTS[relevant]])             # (relevant, n)
    x[where, cols] = X_ID + bits
    x[np.arange(x.shape[0])[:, None] >= lengths] = E_ID          # padding past the trigger
    classes = (bits * (2 ** np.arange(relevant - 1, -1, -1))[:, None]).sum(0)
    return x, lengths, classes, where


class TemporalOrder(Task):
    name = "temporal-order"
    summary = ("the temporal-order problem: classify the order of X and Y hidden among ~100 "
               "distractors (Hochreiter & Schmidhuber 1997, experiment 6a; 6b with relevant=3)")
    loss = "xent"
    metric = "accuracy"
    lower_is_better = False
    # model_config adds forget_bias=3 where the variant has a forget gate (with_forget_bias):
    # with PyTorch's init lstm stays at chance here; lstm1997 (no forget gate) learns it too
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 32},
                            train={"steps": 4000, "batch_size": 32, "lr": 5e-3,
                                   "eval_every": 250})
    options = {"seq_len": (100, "L: sequences are L to L + L/10 steps long (the paper: 100)"),
               "relevant": (2, "X/Y symbols to order: 2 (experiment 6a, 4 classes) or 3 "
                               "(experiment 6b, 8 classes)"),
               "test_size": (1000, "held-out sequences for the test metrics")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        self.L = check_int("seq_len", self.opts["seq_len"], 20)
        self.relevant = check_int("relevant", self.opts["relevant"], 2, 3)
        self.classes = CLASS_NAMES[self.relevant]
        n_test = check_int("test_size", self.opts["test_size"], 1)
        self.split = held_out(seed, lambda rng, n: order_sequences(rng, n, self.L, self.relevant),
                              500, n_test, item_bytes=24 * self.L)

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=len(ORDER_SYMBOLS), output_size=len(self.classes),
                           vocab_size=len(ORDER_SYMBOLS), readout="last",
                           **with_forget_bias(settings, FORGET_BIAS))

    def train_batch(self, step, batch_size):
        x, lengths, classes, _ = order_sequences(np.random.default_rng([self.seed, TRAIN, step]),
                                                 batch_size, self.L, self.relevant)
        return Batch(x=x, y=classes, lengths=lengths)

    def _logp(self, predictor, split):
        x, lengths, classes, _ = self.split[split]
        return log_softmax(run_batched(predictor, x, lengths)), classes   # (N, C), (N,)

    def evaluate(self, predictor, split):
        logp, classes = self._logp(predictor, split)
        return with_loss({"accuracy": accuracy(logp, classes), "nll": nll(logp, classes)}, split)

    def examples(self, split="test"):
        """The split's sequences as evaluate reads them: (T, N) int64 ids, E past each
        sequence's trigger B, with their lengths; each step labelled with its symbol (E, B,
        a..d, X, Y)."""
        x, lengths, _, _ = self.split[split]
        return Inputs(x=x, steps=[[ORDER_SYMBOLS[s] for s in x[:n, j].tolist()]
                                  for j, n in enumerate(lengths)], lengths=lengths)

    def baselines(self):
        # every class is equally frequent by construction: the majority predictor picks the
        # first (Q) and the class frequencies give every class 1/C
        classes = self.split["test"][2]
        return {"majority": {"accuracy": float(np.mean(classes == 0)),
                             "nll": float(np.log(len(self.classes)))}}

    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import confusion_figure, gate_heatmap

        folder = Path(folder)
        logp, classes = self._logp(predictor, "test")
        C, variant = len(self.classes), predictor.config.variant
        # each class with the order it stands for: "Q XX" ... "U YY"
        names = [n + " " + "".join("XY"[(c >> b) & 1] for b in range(self.relevant - 1, -1, -1))
                 for c, n in enumerate(self.classes)]
        paths = [confusion_figure(
            folder / "confusion.png", classes, logp, names, chance="majority baseline",
            title=f"temporal order ({C} classes): {classes.size} test sequences, accuracy "
                  f"{test['accuracy']:.1%} (chance {1 / C:.1%}), {variant}")]
        x, lengths, _, _ = self.split["test"]
        seq = x[:lengths[0], :1]                                 # (T, 1) ids of test sequence 0
        trace = predictor.trace(seq)
        marks = np.stack([seq[:, 0] == X_ID, seq[:, 0] == X_ID + 1], -1)[:, None].astype(float)
        order = "".join(ORDER_SYMBOLS[s] for s in seq[:, 0] if s >= X_ID)
        paths.append(gate_heatmap(
            folder / "gates.png", trace["l0"], x=marks,
            title=f"temporal order, {predictor.config.variant}: {order} -> class "
                  f"{self.classes[classes[0]]}; x[0] marks the X, x[1] the Y"))
        return paths

