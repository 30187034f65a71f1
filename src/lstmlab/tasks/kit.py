"""What several tasks need alike: vocabularies, splits, padding, batched evaluation and
classification metrics. One place, so that tasks import from here and never from each other.

Everything here is plain NumPy and knows nothing of any one task; what a task's data means
(its symbols, its reserved ids, its split fractions) stays in the task.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

EVAL_BATCH = 256               # sequences per predictor call when evaluating


# --- vocabularies --------------------------------------------------------------------------
class Vocabulary:
    """Tokens <-> ids. The `reserved` names take ids 0, 1, ... (padding, unknown, BOS, ...:
    whatever the task reserves, in its order), the tokens follow in the order given.

    tokens: id -> token (reserved names included); ids: token -> id."""

    def __init__(self, tokens: Iterable, reserved: Sequence[str] = ()):
        self.n_reserved = len(reserved)
        self.tokens = list(reserved) + list(tokens)
        self.ids = {t: k for k, t in enumerate(self.tokens)}

    @classmethod
    def most_frequent(cls, texts: Iterable[Iterable[str]], limit: int,
                      reserved: Sequence[str] = ()) -> Vocabulary:
        """The `limit` most frequent tokens of `texts` (ties: in sorted order) after
        `reserved`."""
        freq = Counter(w for text in texts for w in text)
        return cls(sorted(freq, key=lambda w: (-freq[w], w))[:limit], reserved)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable, unknown: int | None = None, dtype=np.int64) -> np.ndarray:
        """(n,) ids of `tokens`; a token not in the vocabulary becomes `unknown` (None: a
        KeyError, for callers that checked their input first)."""
        ids = self.ids
        if unknown is None:
            return np.array([ids[t] for t in tokens], dtype=dtype)
        return np.array([ids.get(t, unknown) for t in tokens], dtype=dtype)

    def decode(self, ids, *, stop: int | None = None, reserved_as: str = "") -> list:
        """The tokens of `ids` (n,), up to the first `stop` id (left out); reserved ids and
        ids past the vocabulary become `reserved_as`."""
        out, R, V = [], self.n_reserved, len(self.tokens)
        for i in np.asarray(ids).tolist():
            if i == stop:
                break
            out.append(self.tokens[i] if R <= i < V else reserved_as)
        return out


# --- splits --------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, rng: np.random.Generator,
                     sizes: Callable[[int], Sequence[int]]) -> tuple[np.ndarray, ...]:
    """Index arrays, each sorted, that keep each class's share: per class (in sorted order)
    its examples are shuffled with `rng` and cut into parts of sizes(n) examples, n the
    class's count (the sizes sum to n)."""
    per_class = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        per_class.append(np.split(idx, np.cumsum(sizes(idx.size))[:-1]))
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in zip(*per_class))


# --- padding -------------------------------------------------------------------------------
def pad(xs: Sequence, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Sequences (T_i, ...) as one time-major array (max T_i, N, ...) of dtype, zeros past
    each end, and their lengths (N,) int64: (T_i, F) features or (T_i,) token ids alike."""
    lengths = np.array([len(x) for x in xs], dtype=np.int64)
    out = np.zeros((int(lengths.max()), len(xs), *np.shape(xs[0])[1:]), dtype=dtype)
    for j, x in enumerate(xs):
        out[:len(x), j] = x
    return out, lengths


def pad_next(windows: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Next-symbol batches: windows of ids (each at least 2 long) as x (T, N) all but each
    window's last id, y (T, N) all but its first (the id that follows each input), the mask
    (T, N) of real steps (bool) and lengths (N,), T the longest window less one; ids 0 past
    each end."""
    x, lengths = pad([w[:-1] for w in windows], np.int64)
    y, _ = pad([w[1:] for w in windows], np.int64)
    return x, y, np.arange(x.shape[0])[:, None] < lengths, lengths


def prefixes(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix of one sequence seq (T, ...) as one batch: x (T, T, ...), column j the
    first j + 1 steps (then the rest, which lengths (T,) = 1..T leave unread)."""
    T = len(seq)
    return np.repeat(np.asarray(seq)[:, None], T, axis=1), np.arange(1, T + 1)


# --- training batches of similar lengths ---------------------------------------------------
def length_buckets(order: np.ndarray, lengths: np.ndarray, batch_size: int, pool: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """One pass's batches of the items `order` (shuffled already; lengths[i] item i's length):
    each pool of `pool` batches sorted by length and cut, then the batches shuffled with rng,
    so a batch holds sequences of similar length and padding wastes little (the sortish
    bucketing of fairseq and ESPnet). pool 1: the batches in `order`, unsorted."""
    lens = np.asarray(lengths)[order]
    size = pool * batch_size
    batches = []
    for a in range(0, len(order), size):
        part = order[a:a + size]
        part = part[np.argsort(lens[a:a + size], kind="stable")]
        batches += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


class BucketedEpochs:
    """The length-bucketed batches of each pass over `items` (lengths[i]: item i's length),
    a pure function of (seed, epoch, batch size); the latest pass is kept, as training asks
    for it once a step."""

    def __init__(self, seed: list[int], items: np.ndarray, lengths: np.ndarray, pool: int):
        self.seed, self.items, self.lengths, self.pool = seed, items, lengths, pool
        self._kept: tuple = (None, [])                           # ((epoch, batch_size), batches)

    def per_epoch(self, batch_size: int) -> int:
        """Batches in a pass: `pool` a full pool, ceil(rest / batch_size) the last one."""
        return -(-len(self.items) // batch_size)

    def batch(self, step: int, batch_size: int) -> np.ndarray:
        """The items of training step `step` (from 1): passes follow one another."""
        epoch, k = divmod(step - 1, self.per_epoch(batch_size))
        return self.batches(epoch, batch_size)[k]

    def batches(self, epoch: int, batch_size: int) -> list[np.ndarray]:
        if self._kept[0] != (epoch, batch_size):
            rng = np.random.default_rng([*self.seed, epoch])
            batches = length_buckets(rng.permutation(self.items), self.lengths, batch_size, self.pool, rng)
            self._kept = ((epoch, batch_size), batches)
        return self._kept[1]


# --- batched evaluation --------------------------------------------------------------------
def run_batched(predictor, x: np.ndarray, lengths=None, size: int = EVAL_BATCH, *,
                by_length: bool = False) -> np.ndarray:
    """The predictor's outputs for many sequences, `size` at a time (bounded memory), as
    float64: the same as one call on all of them.

    x (T, N, F) features (cast to the model's dtype) or (T, N) ids; lengths (N,) or None.
    Returns (T, N, O) with readout "sequence", (N, O) with "last" or "mean".
    by_length (readout "last" or "mean"): sequences of similar length run together, each
    call cut to its longest member and given no lengths when all are equal, which saves
    the padding's work where lengths vary a lot."""
    if x.dtype.kind == "f":
        x = x.astype(np.dtype(predictor.config.dtype))
    if by_length:
        order, parts = np.argsort(lengths, kind="stable"), []
        for a in range(0, order.size, size):
            idx = order[a:a + size]
            T = int(lengths[idx].max())
            lens = None if np.all(lengths[idx] == T) else lengths[idx]
            out, _ = predictor.run(x[:T, idx], lengths=lens, final=False)
            parts.append((idx, np.asarray(out, dtype=np.float64)))
        whole = np.empty((x.shape[1], *parts[0][1].shape[1:]))
        for idx, out in parts:
            whole[idx] = out
        return whole
    outs = []
    for a in range(0, x.shape[1], size):
        lens = None if lengths is None else lengths[a:a + size]
        out, _ = predictor.run(x[:, a:a + size], lengths=lens, final=False)
        outs.append(np.asarray(out, dtype=np.float64))
    return np.concatenate(outs, axis=0 if predictor.config.readout != "sequence" else 1)


def with_loss(metrics: dict, split: str, key: str = "nll") -> dict:
    """`metrics` plus "loss" (the value early stopping watches: metrics[key]) on "valid"."""
    return {**metrics, "loss": metrics[key]} if split == "valid" else metrics


# --- classification metrics ----------------------------------------------------------------
def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int counts: row the true class, column the predicted one."""
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (truth, pred), 1)
    return counts


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """F1 per class, 2 TP / (2 TP + FP + FN), averaged over the classes that occur in
    `truth` or `pred` (scikit-learn's f1_score(average="macro") on the same labels)."""
    seen = np.union1d(truth, pred)
    tp = np.array([np.sum((pred == c) & (truth == c)) for c in seen])
    wrong = np.array([np.sum(pred == c) + np.sum(truth == c) for c in seen]) - 2 * tp  # FP + FN
    return float(np.mean(2 * tp / (2 * tp + wrong)))


def f1_of(truth: np.ndarray, pred: np.ndarray, positive: int = 1) -> float:
    """F1 of the class `positive`, 2 TP / (2 TP + FP + FN), 0 when it has no true positive
    (scikit-learn's f1_score(pos_label=positive))."""
    tp = float(np.sum((pred == positive) & (truth == positive)))
    fp = float(np.sum((pred == positive) & (truth != positive)))
    fn = float(np.sum((pred != positive) & (truth == positive)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def nll(logp: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p of the true classes y (N,) under log probabilities logp (N, C), in nats."""
    return float(-logp[np.arange(len(y)), y].mean())


def accuracy(logp: np.ndarray, y: np.ndarray) -> float:
    """Share of rows of logp (N, C) whose most probable class is y (N,)."""
    return float(np.mean(logp.argmax(-1) == y))


def majority_logp(y_train: np.ndarray, n_classes: int, n: int) -> np.ndarray:
    """(n, C) the training class shares as log probabilities, the same for every example:
    the majority baseline (it predicts the most frequent class, ties: the first)."""
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float64)
    return np.tile(np.log(counts / counts.sum()), (n, 1))


def classification_metrics(logp: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """accuracy, macro F1 (macro_f1) and nll of log probabilities logp (N, C) for classes
    y (N,)."""
    return {"accuracy": accuracy(logp, y), "f1": macro_f1(y, logp.argmax(-1)), "nll": nll(logp, y)}


def series_inputs(values: np.ndarray, x: np.ndarray | None = None):
    """Inputs for lstmlab.inspect of series `values` (T, B) (raw, as the user knows them):
    the model's input `x` (T, B, F) (default: the values themselves as one feature), each
    step labelled with its value."""
    from .base import Inputs

    values = np.asarray(values, np.float64)
    feats = values[:, :, None] if x is None else x
    steps = [[f"{v:.4g}" for v in values[:, b]] for b in range(values.shape[1])]
    return Inputs(x=feats, steps=steps, values=values)


# --- signals a reader keeps, for finding the units that keep them (lstmlab.inspect) --------
def text_signals(text: str) -> dict[str, np.ndarray]:
    """Per character of `text`, (N,) float64 each: what a reader keeps track of.

    position_in_word     1, 2, ... inside a word (letters and apostrophes), 0 elsewhere
    inside_word          1 inside a word, else 0
    position_in_line     characters since the last line break (the King James text: the verse)
    position_in_clause   characters since the last , ; : . ? ! or line break
    inside_parentheses   1 from "(" to ")" (nesting counts once), else 0
    inside_quotes        1 between an opening and a closing double quote (" or the curly ones)
    uppercase            1 for an upper-case letter
    """
    n = len(text)
    out = {k: np.zeros(n) for k in ("position_in_word", "position_in_line", "position_in_clause",
                                    "inside_parentheses", "inside_quotes", "uppercase")}
    word = line = clause = depth = 0
    quoted = False
    for i, ch in enumerate(text):
        word = word + 1 if (ch.isalpha() or ch == "'") else 0
        line = 0 if ch == "\n" else line + 1
        clause = 0 if ch in ",;:.?!\n" else clause + 1
        if ch == "(":
            depth += 1
        if ch == '"':                                            # straight quotes open and close
            quoted = not quoted
        elif ch in "\u201c\u201d":                               # curly ones say which
            quoted = ch == "\u201c"
        out["position_in_word"][i], out["position_in_line"][i] = word, line
        out["position_in_clause"][i], out["inside_quotes"][i] = clause, quoted
        out["inside_parentheses"][i] = depth > 0
        out["uppercase"][i] = ch.isupper()
        if ch == ")":
            depth = max(0, depth - 1)
    out["inside_word"] = (out["position_in_word"] > 0).astype(np.float64)
    return out


def reader_counters(passage: str) -> dict[str, np.ndarray]:
    """The counters charlm's figure looks for, by the words it shows, leaving out those that
    never vary in `passage`."""
    s = text_signals(passage)
    out = {"the position in the line": s["position_in_line"],
           "the position in the word": s["position_in_word"],
           "being inside a word": s["inside_word"],
           "the position in the clause": s["position_in_clause"]}
    return {k: v for k, v in out.items() if v.std() > 0}


def ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (1..N, ties sharing their mean rank) along axis 0 of a (N,) or (N, H):
    Pearson's correlation of ranks is Spearman's."""
    a = np.asarray(a)
    cols = a.reshape(len(a), -1)
    out = np.empty(cols.shape)
    for j in range(cols.shape[1]):
        _, group, counts = np.unique(cols[:, j], return_inverse=True, return_counts=True)
        out[:, j] = (np.cumsum(counts) - (counts - 1) / 2)[group.ravel()]
    return out.reshape(a.shape)


def correlations(a: np.ndarray, feature: np.ndarray):
    """(H,) Pearson correlation of each unit's activation a (T, H) with feature (T,); None
    when nothing varies."""
    a = a - a.mean(0)
    f = feature - feature.mean()
    denom = np.sqrt((a * a).sum(0) * (f * f).sum())
    varies = denom > 0
    if not np.any(varies):
        return None
    with np.errstate(invalid="ignore"):                          # inf / inf after an overflow
        return np.divide((a * f[:, None]).sum(0), denom, out=np.zeros_like(denom), where=varies)


# --- lstmlab prepare -----------------------------------------------------------------------
def read_prepared(folder, fmt: str, task: str, whole: Callable[[Path, dict], bool],
                  what: str = "data") -> dict:
    """FOLDER/prepared.json of the format `fmt` that `lstmlab prepare TASK` wrote (`what`:
    what it holds, for the message), if whole(folder, info) agrees with the files beside it;
    else a one-line ValueError."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "prepared.json").read_text())
        if info.get("format") != fmt or not whole(folder, info):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{folder} holds no {what} prepared by `lstmlab prepare {task}` (or it is "
                         "damaged); prepare it again") from None
    return info


def cache_root() -> Path:
    """$LSTMLAB_CACHE, else ~/.cache/lstmlab: where lstmlab keeps what it made once."""
    return Path(os.environ.get("LSTMLAB_CACHE") or Path.home() / ".cache" / "lstmlab").expanduser()


def count_progress(label: str, unit: str) -> Callable[[int, int], None]:
    """progress(done, total): a bar with rate and ETA on stderr (plain lines when stderr is not
    a terminal), started at the first call and closed when done reaches total."""
    from ..train.callbacks import ProgressBar

    bar = ProgressBar(label, unit=unit)
    started: list[bool] = []

    def update(done: int, total: int) -> None:
        if not started:
            bar.on_start(total, 0)
            started.append(True)
        bar.on_step(done)
        if done >= total:
            bar.close()

    return update


def passes_progress(task: str, units: dict | None = None) -> Callable[[str, int, int], None]:
    """progress(what, done, total) for a task's `prepare`: a bar with rate and ETA for each
    pass over the data (`what` names the pass; its unit is units[what], else "byte")."""
    from ..train.callbacks import ProgressBar

    bars: dict = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in bars:
            for bar in bars.values():
                bar.close()
            bars[what] = ProgressBar(f"prepare {task}: {what}", unit=(units or {}).get(what, "byte"))
            bars[what].on_start(total, 0)
        bars[what].on_step(done)
        if done >= total:
            bars[what].close()

    return update
