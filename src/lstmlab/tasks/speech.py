"""`speech`: speech to text. A bidirectional LSTM reads log-mel frames and writes characters,
trained with connectionist temporal classification (CTC: Graves et al. 2006; Graves, Mohamed
& Hinton 2013), on speech synthesized offline (tasks.speechdata, `lstmlab prepare speech`):
spoken digit strings ("three oh one four") and short command phrases ("turn off the
kitchen light"), the test split spoken by speakers never heard in training.

Input: per 10 ms frame, 40 log-mel bands and their deltas (librosa), less the utterance's
own mean (what a voice, a microphone or a room adds to every frame), over the training
split's standard deviation (kept in the run); `stack` frames side by side make one step
(frame subsampling: stack 3, 30 ms a step, a third of the steps to run). In training,
SpecAugment's masks (random runs of mel bands and of frames set to the mean) keep the model
from leaning on any one band or moment: without them and the per-utterance mean, the same
model learnt the training speakers by heart (training loss 0.02, validation 0.40). Batches
hold utterances of similar length (`bucket`: pools of 50 batches sorted by length, cut and
shuffled): random batches were more than half padding (44% of their steps were speech),
these are 3% padding, so a step costs about half.
Output: per step, logits over the blank (id 0) and the characters of ALPHABET (space, a-z).
Loss: CTC (torch: nn.functional.ctc_loss; NumPy: numpy.losses.ctc_loss, its forward-backward
recursion in log space, checked against torch's).

Decoding: a prefix beam search (width `beam`, 12) that spells only the words of the
training transcripts (`lexicon`: the fixed vocabulary of a command recogniser; no language
model weighs the words), or greedy (`-o beam=0`: the best class per step, repeats merged,
blanks dropped). Metrics (jiwer): character error rate (cer, the ranking metric; edit
distance over reference characters, pooled over the split) and word error rate (wer), for
the whole split and per level (cer_digits, wer_phrases, ...), on the test split also with
greedy decoding (cer_greedy, ...); loss (the CTC loss per target character) and greedy
error rates on validation. Baselines on the same test utterances: the most common training
transcript said every time (majority), and a memoryless frame classifier: a linear layer on
each step and its two neighbours, trained with the same CTC loss and decoded alike
(frames_ctc).

`lstmlab transcribe RUN --wav FILE` (also `predict --input FILE`) reads a WAV (any rate,
mono or stereo), prints the text and each word's start and end from the CTC alignment.
Figures: a test utterance's spectrogram with the LSTM's gates and the CTC alignment under it
(alignment.png), and the test utterances the model gets most wrong (errors.png).

Inspection (lstmlab.inspect, `lstmlab inspect`, `lstmlab serve`): an input is a sound file or
a test utterance; its gates are drawn under the spectrogram the steps hear (input_picture); a
one-directional model (`--no-bidirectional`) hears a test utterance step by step in the
lab's Stream view (stream_frames, stream_prediction: the blank or a character each step).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import ctc_loss, log_softmax
from .base import TRAIN, Batch, Inputs, Task, TaskDefaults, check_int
from .kit import BucketedEpochs, cache_root, count_progress, pad
from .speechdata import ALPHABET, HOP, LEVELS, N_MELS, SAMPLE_RATE, Corpus, logmel, prepare, with_deltas

BLANK = 0
EVAL_BATCH = 128
FEATURES = 80                          # 40 log-mel bands and their deltas


def default_corpus(size: int, seed: int) -> Path:
    """Where a corpus is cached when no folder is given: $LSTMLAB_CACHE (default
    ~/.cache/lstmlab)/speech-n<size>-s<seed>."""
    return cache_root() / f"speech-n{size}-s{seed}"


def encode_text(text: str) -> np.ndarray:
    """A transcript as class ids (1..len(ALPHABET)); ValueError for characters outside it."""
    bad = sorted(set(text) - set(ALPHABET))
    if bad:
        raise ValueError(f"a transcript holds only {ALPHABET!r}; got {' '.join(map(repr, bad))}")
    return np.array([ALPHABET.index(ch) + 1 for ch in text], np.int64)


def greedy(logp: np.ndarray, length: int | None = None) -> tuple[str, list[int]]:
    """The best path of one utterance's (T, V) scores, repeats merged and blanks dropped: the
    text and the step at which each of its characters was first emitted."""
    best = np.asarray(logp)[:length].argmax(-1)
    text, steps, prev = [], [], BLANK
    for t, k in enumerate(best):
        if k != BLANK and k != prev:
            text.append(ALPHABET[k - 1])
            steps.append(t)
        prev = k
    return "".join(text), steps


def align(logp: np.ndarray, text: str) -> list[int]:
    """The most probable CTC alignment of `text` to one utterance's (T, V) scores (Viterbi
    over blank, c1, blank, c2, ..., blank): the step at which each character is first
    emitted. [] when no alignment fits (more characters than steps)."""
    labels = encode_text(text)
    ext = np.zeros(2 * len(labels) + 1, np.int64)
    ext[1::2] = labels
    S, T = ext.size, logp.shape[0]
    skip = np.zeros(S, bool)
    skip[3::2] = labels[1:] != labels[:-1]
    score = np.full(S, -np.inf)
    score[0] = logp[0, BLANK]
    if S > 1:
        score[1] = logp[0, ext[1]]
    back = np.zeros((T, S), np.int64)                            # where each state came from
    for t in range(1, T):
        stay, one = score, np.concatenate([[-np.inf], score[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        moves = np.stack([stay, one, two])
        back[t] = moves.argmax(0)
        score = moves.max(0) + logp[t, ext]
    ends = [S - 1] + ([S - 2] if S > 1 else [])
    s = max(ends, key=lambda e: score[e])
    if not np.isfinite(score[s]):
        return []
    state = np.empty(T, np.int64)
    for t in range(T - 1, -1, -1):
        state[t] = s
        s -= back[t, s]
    firsts = [int(np.argmax(state == 2 * k + 1)) for k in range(len(labels))]
    return firsts


def _lse(a: float, b: float) -> float:
    """ln(e^a + e^b) of two Python floats (np.logaddexp's formula, without its per-call cost)."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


def _add(beams: dict, prefix: tuple, blank: float, nonblank: float) -> None:
    """Add the probabilities (ln) of a prefix ending in blank and in non-blank to `beams`."""
    b, n = beams.get(prefix, (-math.inf, -math.inf))
    beams[prefix] = (_lse(b, blank), _lse(n, nonblank))


SPACE = ALPHABET.index(" ") + 1


class Lexicon:
    """The words a transcript may hold, for beam_search: every word, and every start of one."""

    def __init__(self, words):
        self.words = frozenset(w for w in words if w)
        self.starts = frozenset(w[:k] for w in self.words for k in range(len(w) + 1))

    @classmethod
    def of(cls, texts) -> Lexicon:
        return cls(w for t in texts for w in t.split(" "))

    def allows(self, prefix: tuple, k: int) -> bool:
        """Whether label k may follow `prefix` (labels): a letter that keeps the current word
        the start of a word, or a space after a whole word."""
        tail = prefix[len(prefix) - prefix[::-1].index(SPACE):] if SPACE in prefix else prefix
        return self.follows("".join(ALPHABET[j - 1] for j in tail), k)

    def follows(self, word: str, k: int) -> bool:
        """Whether label k may follow the unfinished last `word` of a prefix (see allows)."""
        return word in self.words if k == SPACE else word + ALPHABET[k - 1] in self.starts

    def complete(self, prefix: tuple) -> bool:
        """Whether `prefix` ends in a whole word (or is empty)."""
        return not prefix or self.allows(prefix, SPACE)


def beam_search(logp: np.ndarray, width: int = 8, length: int | None = None,
                lexicon: Lexicon | None = None) -> str:
    """CTC prefix beam search (Hannun et al. 2014): the most probable labelling summed over
    its alignments, keeping `width` prefixes a step. With a lexicon, only its words are
    spelt (a letter that leaves every word is not tried), as a command recogniser with a
    fixed vocabulary does; no language model weighs the words."""
    logp = np.asarray(logp, np.float64)[:length]
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, -math.inf)}  # ln p ending in blank, in non-blank
    tried = min(logp.shape[1], 2 * width)
    ranked = np.argsort(logp, axis=1)[:, ::-1][:, :tried]       # each step's most probable labels
    word = {(): ""}                                              # each prefix's unfinished last word
    for row, labels in zip(logp.tolist(), ranked.tolist()):     # Python floats: scalar work, fast
        top = [k for k in labels if k != BLANK]
        nxt: dict[tuple, tuple[float, float]] = {}
        for prefix, (pb, pn) in beams.items():
            total = _lse(pb, pn)
            _add(nxt, prefix, total + row[BLANK], -math.inf)    # a blank: the prefix stays
            last = prefix[-1] if prefix else None
            for k in top:
                if k == last:
                    _add(nxt, prefix, -math.inf, pn + row[k])   # a repeat without a blank merges
                longer = prefix + (k,)
                if lexicon is not None:
                    if not lexicon.follows(word[prefix], k):
                        continue
                    if longer not in word:
                        word[longer] = "" if k == SPACE else word[prefix] + ALPHABET[k - 1]
                # k again after a blank (from pb: ending in blank), or a label other than the last
                _add(nxt, longer, -math.inf, (pb if k == last else total) + row[k])
        beams = dict(sorted(nxt.items(), key=lambda kv: -_lse(*kv[1]))[:width])
    ended = {p: v for p, v in beams.items() if lexicon is None or lexicon.complete(p)}
    best = max((ended or beams).items(), key=lambda kv: _lse(*kv[1]))[0]
    text = "".join(ALPHABET[k - 1] for k in best)
    if lexicon is not None and not ended:                      # no beam ends a word: its whole words
        text = text[:text.rfind(" ")] if " " in text else ""
    return text


def error_rates(truth: list[str], said: list[str]) -> dict[str, float]:
    """Character and word error rates pooled over utterances (jiwer): edit operations over
    reference characters and words."""
    import jiwer

    return {"cer": float(jiwer.cer(truth, said)), "wer": float(jiwer.wer(truth, said))}


def spec_augment(f: np.ndarray, rng: np.random.Generator, bands: int = 2, band_width: int = 6,
                 spans: int = 2, span_width: int = 15) -> None:
    """SpecAugment's masks (Park et al. 2019), in place on standardised (T, 80) frames (log-mel
    bands, then their deltas): `bands` runs of up to band_width mel bands and `spans` runs of
    up to span_width frames (at most a fifth of the utterance each) set to 0, the mean."""
    T, n = f.shape[0], f.shape[1] // 2
    for _ in range(bands):
        w = int(rng.integers(0, band_width + 1))
        lo = int(rng.integers(0, n - w + 1))
        f[:, lo:lo + w] = 0.0
        f[:, n + lo:n + lo + w] = 0.0
    for _ in range(spans):
        w = int(rng.integers(0, min(span_width, T // 5) + 1))
        lo = int(rng.integers(0, T - w + 1))
        f[lo:lo + w] = 0.0


def stack_frames(x: np.ndarray, k: int) -> np.ndarray:
    """(T, F) frames as (ceil(T / k), k F): k neighbours side by side, the last step padded
    with zeros (the standardised mean)."""
    T = x.shape[0]
    n = -(-T // k)
    out = np.zeros((n * k, x.shape[1]), x.dtype)
    out[:T] = x
    return out.reshape(n, k * x.shape[1])


class Speech(Task):
    name = "speech"
    summary = ("speech to text: spoken digits and command phrases, synthesized offline, by a "
               "bidirectional LSTM with CTC; character and word error rates on unheard speakers")
    loss = "ctc"
    metric = "cer"
    lower_is_better = True
    loss_note = "CTC loss per utterance, averaged per target character; validation on unheard speakers"
    defaults = TaskDefaults(engine="torch",
                            model={"hidden_size": 128, "num_layers": 2, "bidirectional": True},
                            train={"steps": 4000, "batch_size": 32, "lr": 2e-3, "eval_every": 400,
                                   "clip": 5.0})
    options = {"corpus": ("", "a corpus folder made by `lstmlab prepare speech` (empty: made once "
                              "and cached in $LSTMLAB_CACHE or ~/.cache/lstmlab)"),
               "size": (16000, "training utterances of the corpus (validation 1/16, test 1/8 of it)"),
               "corpus_seed": (0, "the corpus's seed (the same speakers are held out for any seed)"),
               "stack": (3, "10 ms frames stacked into one step (frame subsampling)"),
               "beam": (12, "prefix beam width for decoding the test split and your audio (0: greedy)"),
               "lexicon": (True, "beam search spells only words of the training transcripts"),
               "specaugment": (True, "mask random mel bands and stretches of time in training "
                                     "(SpecAugment), so no band or moment is relied on alone"),
               "bucket": (50, "training batches are drawn from pools of this many batches sorted "
                              "by length, so a batch's utterances are of similar length (1: random "
                              "batches, half their steps padding)")}
    signals = ("position",)

    def __init__(self, seed=0, *, stored=None, **options):
        super().__init__(seed, stored=stored, **options)
        o = self.opts
        self.size = check_int("size", o["size"], 16)
        self.corpus_seed = check_int("corpus_seed", o["corpus_seed"], 0)
        self.stack = check_int("stack", o["stack"], 1, 8)
        self.bucket = check_int("bucket", o["bucket"], 1)
        self.beam = check_int("beam", o["beam"], 0, 128)
        self.corpus_path = Path(o["corpus"]).expanduser() if o["corpus"] else \
            default_corpus(self.size, self.corpus_seed)
        if stored is not None:                                   # a trained run: its statistics
            p = stored.state
            self.mu, self.sd = np.array(p["mu"], np.float32), np.array(p["sd"], np.float32)
            self.words = Lexicon(p["lexicon"])
            self._corpus: Corpus | None = None
            return
        if not o["corpus"] or not (self.corpus_path / "corpus.json").exists():
            prepare(self.corpus_path, self.size, self.corpus_seed,
                    progress=count_progress("speech corpus", "utterance"))
        self._corpus = Corpus.read(self.corpus_path)
        train = self._corpus.split("train")
        if len(train) < 2:
            raise ValueError(f"{self.corpus_path} holds {len(train)} training utterances; make a "
                             "corpus of at least 16")
        frames = self._frames("train")
        s1, s2, n = np.zeros(FEATURES), np.zeros(FEATURES), 0
        for f in frames:                                         # the training split's statistics
            f = f.astype(np.float64)
            f -= f.mean(0)                                       # of utterances' own deviations
            s1 += f.sum(0)
            s2 += (f * f).sum(0)
            n += f.shape[0]
        mu = s1 / n
        self.mu = mu.astype(np.float32)
        self.sd = np.sqrt(np.maximum(s2 / n - mu * mu, 1e-8)).astype(np.float32)
        self.words = Lexicon.of(u["text"] for u in train)

    @classmethod
    def prepare_data(cls, folder=None, quiet: bool = False, size=None, seed: int = 0) -> dict:
        """`lstmlab prepare speech`: make the corpus (or find it made) and say what it holds."""
        size = check_int("--size", cls.options["size"][0] if size is None else size, 16)
        seed = check_int("--seed", seed, 0)
        path = Path(folder).expanduser() if folder else default_corpus(size, seed)
        prepare(path, size, seed, progress=None if quiet else count_progress("speech corpus", "utterance"))
        corpus = Corpus.read(path)
        out: dict = {"corpus": str(path)}
        for split in ("train", "valid", "test"):
            us = corpus.split(split)
            out[split] = (f"{len(us)} utterances, {sum(u['seconds'] for u in us) / 60:.1f} min, "
                          f"{len({u['speaker'] for u in us})} speakers")
        out["examples"] = str(path / "examples")
        return out

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = Corpus.read(self.corpus_path)
        return self._corpus

    def _frames(self, split: str) -> list[np.ndarray]:
        """Every utterance of a split as (T, 80) float16 log-mel frames with deltas, made once."""
        cache = self.__dict__.setdefault("_frames_of", {})
        if split not in cache:
            with np.errstate(under="ignore"):                    # deltas below float16's range: 0
                cache[split] = [with_deltas(self.corpus.logmel(u)).astype(np.float16)
                                for u in self.corpus.split(split)]
        return cache[split]

    def preprocessing(self) -> dict:
        return {"input": f"log-mel (40 bands, 25 ms windows every 10 ms at {SAMPLE_RATE} Hz) and "
                         f"deltas, less the utterance's mean, then (x - mu) / sd with the training "
                         f"split's statistics, {self.stack} frames a step",
                "output": "logits of blank (0) and the characters of the alphabet (1..)",
                "alphabet": ALPHABET, "stack": self.stack, "mu": self.mu.tolist(),
                "lexicon": sorted(self.words.words),
                "sd": self.sd.tolist(), "corpus": str(self.corpus_path)}

    # --- features ------------------------------------------------------------------------------
    def standardised(self, frames: np.ndarray) -> np.ndarray:
        """(T, 80) frames with deltas, less the utterance's own mean (which takes out much of
        what a speaker, a microphone or a room add to every frame), over the training split's
        standard deviation: (T, 80) float32."""
        f = np.asarray(frames, np.float32)
        return ((f - f.mean(0) - self.mu) / self.sd).astype(np.float32)

    def features(self, frames: np.ndarray) -> np.ndarray:
        """(T, 80) frames with deltas as the model reads them: standardised, (ceil(T / stack),
        80 stack)."""
        return stack_frames(self.standardised(frames), self.stack)

    def _batch(self, split: str, idx, rng: np.random.Generator | None = None) -> tuple:
        """x (T, N, F) and lengths (N,) of the split's utterances `idx`; with `rng`, each
        masked as SpecAugment does."""
        frames = self._frames(split)
        out = []
        for k in idx:
            f = self.standardised(frames[k])
            if rng is not None:
                spec_augment(f, rng)
            out.append(stack_frames(f, self.stack))
        return pad(out, np.float32)

    @property
    def step_seconds(self) -> float:
        """The sound one step of the model reads: `stack` 10 ms frames."""
        return self.stack * HOP / SAMPLE_RATE

    def _split_arrays(self, split: str):
        """x (T, N, F), lengths (N,), the transcripts and levels of a held-out split."""
        cache = self.__dict__.setdefault("_arrays_of", {})
        if split not in cache:
            us = self.corpus.split(split)
            x, lengths = self._batch(split, range(len(us)))
            cache[split] = (x, lengths, [u["text"] for u in us], [u["level"] for u in us])
        return cache[split]

    # --- training -----------------------------------------------------------------------------
    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=FEATURES * self.stack, output_size=len(ALPHABET) + 1,
                           readout="sequence", **settings)

    @functools.cached_property
    def epochs(self) -> BucketedEpochs:
        """The training utterances in batches of similar length (pools of `bucket` batches
        sorted by length, cut, and the batches shuffled), made when training first asks: the
        frames load then."""
        lengths = np.array([len(f) for f in self._frames("train")])
        return BucketedEpochs([self.seed, TRAIN], np.arange(len(lengths)), lengths, self.bucket)

    def train_batch(self, step, batch_size):
        train = self.corpus.split("train")
        idx = [int(j) for j in self.epochs.batch(step, batch_size)]
        rng = np.random.default_rng([self.seed, TRAIN, step, 2]) if self.opts["specaugment"] else None
        x, lengths = self._batch("train", idx, rng)
        labels = [encode_text(train[j]["text"]) for j in idx]
        y, target_lengths = pad(labels, np.int64)
        return Batch(x=x, y=y.T, lengths=lengths, target_lengths=target_lengths)

    # --- evaluation ---------------------------------------------------------------------------
    def _logp(self, predictor, x, lengths) -> np.ndarray:
        """(T, N, V) log probabilities per step (0 past each utterance's end): utterances of
        similar length run together, EVAL_BATCH at a time, each call cut to its longest."""
        x = x.astype(np.dtype(predictor.config.dtype))
        out = np.zeros((x.shape[0], x.shape[1], len(ALPHABET) + 1))
        order = np.argsort(lengths, kind="stable")
        for a in range(0, x.shape[1], EVAL_BATCH):
            idx = order[a:a + EVAL_BATCH]
            T = int(lengths[idx].max())
            part, _ = predictor.run(x[:T, idx], lengths=lengths[idx], final=False)
            out[:T, idx] = np.asarray(part, np.float64)
        return log_softmax(out)

    def transcripts(self, logp, lengths, beam: int = 0) -> list[str]:
        """The text of each utterance: greedy (beam 0 or 1) or beam search, with the lexicon
        when the task's option says so."""
        if beam > 1:
            lexicon = self.words if self.opts["lexicon"] else None
            return [beam_search(logp[:, j], beam, int(lengths[j]), lexicon) for j in range(logp.shape[1])]
        return [greedy(logp[:, j], int(lengths[j]))[0] for j in range(logp.shape[1])]

    def evaluate(self, predictor, split):
        x, lengths, texts, levels = self._split_arrays(split)
        logp = self._logp(predictor, x, lengths)
        said = self.transcripts(logp, lengths, self.beam if split == "test" else 0)
        metrics = _scores(texts, said, levels)
        if split == "test" and self.beam > 1:                    # and greedy, for comparison
            greedy_scores = _scores(texts, self.transcripts(logp, lengths), levels)
            metrics.update({f"{k}_greedy": v for k, v in greedy_scores.items()})
        if split == "valid":
            labels = [encode_text(t) for t in texts]
            y, tl = pad(labels, np.int64)
            loss, _ = ctc_loss(logp, y.T, lengths, tl, zero_infinity=True)
            metrics["loss"] = loss
        return metrics

    def baselines(self):
        _, _, texts, levels = self._split_arrays("test")
        train = [u["text"] for u in self.corpus.split("train")]
        values, counts = np.unique(train, return_counts=True)
        majority = str(values[counts.argmax()])
        return {"majority": _scores(texts, [majority] * len(texts), levels),
                "frames_ctc": _scores(texts, self._frames_baseline(), levels)}

    def _frames_baseline(self, steps: int = 400, batch: int = 32) -> list[str]:
        """The test transcripts of a linear layer on each step and its two neighbours (no
        memory), trained with CTC (Adam, lr 0.01) on the same training utterances, decoded as
        the model's are."""
        from ..numpy import Adam

        rng = np.random.default_rng([self.seed, TRAIN, 10**6])
        F, V = FEATURES * self.stack, len(ALPHABET) + 1
        params = {"w": (rng.normal(size=(3 * F, V)) / np.sqrt(3 * F)).astype(np.float32),
                  "b": np.zeros(V, np.float32)}
        opt = Adam(params, lr=0.01)
        for step in range(1, steps + 1):
            b = self.train_batch(step, batch)
            ctx = _context(b.x)
            with np.errstate(under="ignore"):                   # gradients below float32's range: 0
                logits = ctx @ params["w"] + params["b"]
                _, d = ctc_loss(logits, b.y, b.lengths, b.target_lengths, zero_infinity=True)
                opt.step({"w": ctx.reshape(-1, 3 * F).T @ d.reshape(-1, V), "b": d.sum((0, 1))})
        x, lengths, _, _ = self._split_arrays("test")
        logp = log_softmax((_context(x) @ params["w"] + params["b"]).astype(np.float64))
        return self.transcripts(logp, lengths, self.beam)           # decoded as the model is

    # --- figures ------------------------------------------------------------------------------
    def figures(self, predictor, folder, test, baselines):
        folder = Path(folder)
        x, lengths, texts, levels = self._split_arrays("test")
        logp = self._logp(predictor, x, lengths)
        said = self.transcripts(logp, lengths, self.beam)          # as the test split was scored
        us = self.corpus.split("test")
        # the first digit string and phrase of 4 words or more the model gets right, else the first
        pick = next((j for j, u in enumerate(us) if said[j] == texts[j] and len(texts[j].split()) >= 4), 0)
        u = us[pick]
        n = int(lengths[pick])
        trace = predictor.trace(x[:n, pick:pick + 1].astype(np.dtype(predictor.config.dtype)))
        gates = {g: np.asarray(v)[:, 0] for g, v in trace["l0"].items()}
        title = (f"test utterance {pick}: speaker {u['speaker']} ({u['accent']}, never heard in "
                 f"training), {u['rate']} words/min, noise {u['noise']}"
                 + (f" at {u['snr']:.0f} dB" if u["noise"] != "none" else "")
                 + (f", reverberation {u['reverb']:.2f} s" if u["reverb"] else ""))
        paths = [alignment_figure(folder / "alignment.png", self.corpus.logmel(u), gates, logp[:n, pick],
                                  texts[pick], said[pick], self.stack, title=title)]
        import jiwer

        rates = [jiwer.cer(t, h) for t, h in zip(texts, said)]
        worst = np.argsort(rates, kind="stable")[::-1][:14]
        rows = [(f"{rates[j]:.0%}", texts[j], said[j], f"{us[j]['speaker']}, {us[j]['noise']}")
                for j in worst]
        summary = (f"{len(texts)} test utterances by {len({u['speaker'] for u in us})} unheard speakers: "
                   f"CER {test['cer']:.1%} (digits {test.get('cer_digits', float('nan')):.1%}), WER "
                   f"{test['wer']:.1%} (phrases {test.get('wer_phrases', float('nan')):.1%}); "
                   f"frames_ctc CER {baselines['frames_ctc']['cer']:.1%}")
        paths.append(errors_figure(folder / "errors.png", rows, summary))
        return paths

    # --- the user's audio ---------------------------------------------------------------------
    def read_audio(self, path) -> tuple[np.ndarray, np.ndarray]:
        """x (T, 1, F) and lengths (1,) of the user's sound file, as the model reads it."""
        frames = with_deltas(logmel(read_wav(path)))
        x = self.features(frames)[:, None, :]
        return x, np.array([x.shape[0]])

    def predict_file(self, predictor, path):
        """The text of a sound file, with each word's start and end (seconds) from the CTC
        alignment of that text (align): the steps where its first and last letters are
        emitted."""
        x, lengths = self.read_audio(path)
        logp = self._logp(predictor, x, lengths)[:, 0]
        text = self.transcripts(logp[:, None], np.array([logp.shape[0]]), self.beam)[0]
        steps = align(logp, text)
        step = self.step_seconds
        words, k = [], 0
        for word in text.split(" "):
            if word and steps:
                first, last = steps[k], steps[k + len(word) - 1]
                words.append({"word": word, "start": round(first * step, 2),
                              "end": round((last + 1) * step, 2)})
            k += len(word) + 1
        seconds = round(x.shape[0] * step, 2)
        lines = [text if text else "(nothing heard)"]
        lines += [f"  {w['start']:6.2f}-{w['end']:6.2f} s  {w['word']}" for w in words]
        return {"input": str(path), "seconds": seconds, "text": text, "words": words, "lines": lines}

    # --- inspection ---------------------------------------------------------------------------
    def encode_input(self, value):
        """A sound file (WAV, FLAC, ...) as the model reads it."""
        x, lengths = self.read_audio(value)
        return Inputs(x=x, steps=[[f"{t * self.step_seconds:.2f}s" for t in range(x.shape[0])]],
                      lengths=None)

    def input_picture(self, x):
        """The spectrogram the steps read: the 40 standardised log-mel bands of each of a step's
        `stack` frames (its deltas left out)."""
        frames = np.asarray(x, np.float32).reshape(x.shape[0] * self.stack, FEATURES)
        return frames[:, :N_MELS].T, self.stack, "log-mel band"

    # --- streaming: a one-directional model hears an utterance step by step --------------------
    @property
    def stream_width(self) -> int:                               # type: ignore[override]
        """A stream step is one step of the model's input: `stack` standardised frames."""
        return FEATURES * self.stack

    def stream_frames(self, n: int) -> tuple[list[np.ndarray], str]:
        """Test utterance n as the steps a stream reads, (F,) each, the model's input as
        evaluation reads it (standardised with the utterance's own mean, so over the whole
        utterance: a live microphone would need a running mean), and what was said."""
        x, lengths, texts, _ = self._split_arrays("test")
        if not 0 <= n < x.shape[1]:
            raise ValueError(f"example {n} is past the test split, which has examples 0 to "
                             f"{x.shape[1] - 1}")
        return list(x[:int(lengths[n]), n]), texts[n]

    def stream_prediction(self, output, window):
        """The 3 most probable outputs of this step, [{"char": c, "p": probability}, ...];
        "" is the blank (nothing said this step)."""
        p = np.exp(output - output.max())
        p = p / p.sum()
        return [{"char": "" if k == BLANK else ALPHABET[k - 1], "p": float(p[k])}
                for k in np.argsort(-p)[:3]]

    def examples(self, split="test"):
        x, lengths, texts, _ = self._split_arrays(split)
        steps = [[f"{t * self.step_seconds:.2f}s" for t in range(n)] for n in lengths]
        return Inputs(x=x, steps=steps, lengths=lengths)


MAX_SECONDS = 600
MIN_RATE, MAX_RATE = 8000, 384_000     # Hz read: telephone speech and up (its upper bands empty)


def alignment_figure(path, frames, gates, logp, truth: str, said: str, stack: int, *, title: str):
    """One utterance as the model hears it: the log-mel spectrogram (T frames), the input,
    forget and output gates of the first layer's forward direction, and the CTC output per
    step (the probability of the blank and of each character it writes), with the characters
    of the best path where they are emitted."""
    from ..viz.figures import (
        GATE_CMAP,
        GATE_NAMES,
        LABEL_SIZE,
        SUBTITLE_SIZE,
        TICK_SIZE,
        new_figure,
        save_figure,
    )

    step = stack * HOP / SAMPLE_RATE
    n = logp.shape[0]
    shown = [g for g in ("i", "f", "o") if g in gates]
    heights = [1.6] + [1.0] * len(shown) + [1.7]
    with np.errstate(all="ignore"):
        fig = new_figure(1.2 + sum(heights) + 0.3 * len(heights))
        grid = fig.add_gridspec(len(heights), 2, width_ratios=[1.0, 0.018], height_ratios=heights)
        end = frames.shape[0] * HOP / SAMPLE_RATE
        ax = fig.add_subplot(grid[0, 0])
        im = ax.imshow(frames.T, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                       extent=(0, end, -0.5, frames.shape[1] - 0.5))
        ax.set_ylabel("mel band", fontsize=LABEL_SIZE)
        ax.set_title("log-mel spectrogram, 10 ms frames", loc="left", fontsize=SUBTITLE_SIZE)
        ax.tick_params(labelsize=TICK_SIZE, labelbottom=False)
        fig.colorbar(im, cax=fig.add_subplot(grid[0, 1])).ax.tick_params(labelsize=TICK_SIZE)
        top = ax
        for r, g in enumerate(shown, 1):
            ax = fig.add_subplot(grid[r, 0], sharex=top)
            units = min(32, gates[g].shape[1])
            im = ax.imshow(gates[g][:n, :units].T, aspect="auto", cmap=GATE_CMAP, vmin=0, vmax=1,
                           interpolation="nearest", extent=(0, n * step, units - 0.5, -0.5))
            ax.set_ylabel("unit", fontsize=LABEL_SIZE)
            ax.set_title(f"{GATE_NAMES[g]}, layer 1 forward, units 0-{units - 1}", loc="left",
                         fontsize=SUBTITLE_SIZE)
            ax.tick_params(labelsize=TICK_SIZE, labelbottom=False)
            cb = fig.colorbar(im, cax=fig.add_subplot(grid[r, 1]))
            cb.set_ticks([0, 1], labels=["shut", "open"])
            cb.ax.tick_params(labelsize=TICK_SIZE)
        ax = fig.add_subplot(grid[len(heights) - 1, 0], sharex=top)
        rows = [BLANK] + sorted({ALPHABET.index(ch) + 1 for ch in truth + said})
        names = ["blank"] + ["space" if ALPHABET[k - 1] == " " else ALPHABET[k - 1] for k in rows[1:]]
        im = ax.imshow(np.exp(logp[:, rows]).T, aspect="auto", cmap="Greys", vmin=0, vmax=1,
                       interpolation="nearest", extent=(0, n * step, len(rows) - 0.5, -0.5))
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        text, steps = greedy(logp)
        for ch, t in zip(text, steps):
            ax.annotate("_" if ch == " " else ch, ((t + 0.5) * step, rows.index(ALPHABET.index(ch) + 1)),
                        color="#d62728", fontsize=8, ha="center", va="center", fontweight="bold")
        ax.set_xlabel("time (s)", fontsize=LABEL_SIZE)
        ax.set_title(f"CTC output per {step * 1000:.0f} ms step: p(blank), p(character); red: the best "
                     f"path's characters", loc="left", fontsize=SUBTITLE_SIZE)
        ax.tick_params(labelsize=TICK_SIZE)
        fig.colorbar(im, cax=fig.add_subplot(grid[len(heights) - 1, 1])).ax.tick_params(labelsize=TICK_SIZE)
        fig.suptitle(f"said: \"{truth}\"   heard: \"{said}\"\n{title}", fontsize=11)
        return save_figure(fig, path)


def errors_figure(path, rows, summary: str):
    """The test utterances with the highest character error rate: (CER, said, heard, who)."""
    from ..viz.figures import new_figure, save_figure

    fig = new_figure(0.8 + 0.26 * (len(rows) + 1))
    ax = fig.add_subplot()
    ax.axis("off")
    cells = [[r[0], r[1], r[2] or "(nothing)", r[3]] for r in rows]
    table = ax.table(cellText=cells, colLabels=["CER", "said", "heard", "speaker, noise"], loc="upper left",
                     cellLoc="left", colLoc="left", colWidths=[0.07, 0.36, 0.36, 0.21])
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    table.scale(1, 1.25)
    ax.set_title(f"the test utterances heard worst\n{summary}", loc="left", fontsize=10)
    return save_figure(fig, path)


def read_wav(path) -> np.ndarray:
    """A sound file (any rate, mono or stereo) as float32 mono samples at SAMPLE_RATE: the
    channels averaged, then resampled (soxr, through librosa)."""
    import librosa
    import soundfile

    if not Path(path).is_file():
        raise ValueError(f"{path} does not exist; give a WAV file")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as e:                         # LibsndfileError is a RuntimeError
        raise ValueError(f"{path} is not a sound file this reader knows ({str(e).splitlines()[0]}); "
                         "give a WAV (or FLAC, OGG) file") from None
    if info.frames == 0:
        raise ValueError(f"{path} holds no samples; give a recording")
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise ValueError(f"{path} is sampled at {info.samplerate} Hz, which cannot be resampled to "
                         f"speech at {SAMPLE_RATE} Hz; give a recording at {MIN_RATE} to {MAX_RATE} Hz")
    if info.frames > MAX_SECONDS * info.samplerate:
        raise ValueError(f"{path} lasts {info.frames / info.samplerate:.0f} s; transcribe at most "
                         f"{MAX_SECONDS} s at a time (cut it into pieces)")
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wave = data.mean(axis=1)
    if not np.isfinite(wave).all():
        raise ValueError(f"{path} holds samples that are not numbers (NaN or infinite)")
    if rate != SAMPLE_RATE:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return wave.astype(np.float32)


def _context(x: np.ndarray) -> np.ndarray:
    """(T, B, F) steps with their neighbours: (T, B, 3 F), zeros beyond the ends."""
    prev = np.concatenate([np.zeros_like(x[:1]), x[:-1]])
    nxt = np.concatenate([x[1:], np.zeros_like(x[:1])])
    return np.concatenate([prev, x, nxt], axis=2)


def _scores(truth: list[str], said: list[str], levels: list[str]) -> dict[str, float]:
    out = error_rates(truth, said)
    for level in LEVELS:
        idx = [k for k, v in enumerate(levels) if v == level]
        if idx:
            part = error_rates([truth[k] for k in idx], [said[k] for k in idx])
            out.update({f"{m}_{level}": v for m, v in part.items()})
    return out
