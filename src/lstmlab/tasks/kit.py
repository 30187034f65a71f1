"""What several tasks need alike: vocabularies, splits, padding, batched evaluation and
classification metrics. One place, so that tasks import from here and never from each other.

Everything here is plain NumPy and knows nothing of any one task; what a task's data means
(its symbols, its reserved ids, its split fractions) stays in the task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

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
            out, _ = predictor.run(x[:T, idx], lengths=lens)
            parts.append((idx, np.asarray(out, dtype=np.float64)))
        whole = np.empty((x.shape[1], *parts[0][1].shape[1:]))
        for idx, out in parts:
            whole[idx] = out
        return whole
    outs = []
    for a in range(0, x.shape[1], size):
        lens = None if lengths is None else lengths[a:a + size]
        out, _ = predictor.run(x[:, a:a + size], lengths=lens)
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
