"""`music`: next-note prediction on the soprano lines of Bach's chorales, and MIDI generation.

Data: the four-part chorales that ship with music21 (`music21/corpus/bach/*.mxl`, zipped
MusicXML, with two plain `.xml` files), read here with zipfile and xml.etree; music21 is only
located, never imported (its import and parser take 15-40 s). Or `-o folder=PATH`: a folder
of the user's own `.mxl` / `.musicxml` / `.xml` files.

Which voice: the melody, the part named "Soprano..." (the first such part: in the
chorales with instruments the first part is often a horn, trumpet or violin). The built-in
corpus skips files without one (the one piano piece among them, BWV 846); a user's file
without one gives its first part. Within the part the first voice is followed (other voices
after a <backup> are skipped), a chord gives its highest note, grace and cue notes are
skipped, tied notes are merged into one, consecutive rests into one, and the rests before the
first and after the last note are dropped. A chorale is then a list of events
(MIDI pitch or None for a rest, duration in quarter notes). Melodies that repeat another
one exactly up to transposition (the same tune harmonised twice) are kept once, so none sits
in both training and test.

Split: by chorale, deterministic: the files sorted by the MD5 of their name, the first 10% for
test, the next 10% for validation, the rest (80%) for training.

Tokens, one softmax head: a joint (pitch, duration) token. The pitches are a rest plus every
semitone from the lowest to the highest training pitch (widened by the transposition range);
the durations are those seen at least `min_count` times in training. Token id = pitch index *
len(durations) + duration index; every other event is one UNKNOWN id (a rare duration, a
pitch out of range), and a BOS id (input only) starts each chorale, so the first event is
predicted too. The model is scored on every event; an UNKNOWN target is always counted as
a miss in the accuracies (its nll is the model's probability of "something else"). The
pitch and duration accuracies take the argmax of the marginals of the joint distribution.

Training: a batch is `batch_size` training chorales drawn at random, each shifted by a random
number of semitones in [-transpose, transpose] (augmentation; 0 turns it off); a chorale
longer than `window` events gives a random window of that many (the padded batch is as long
as its longest member, so a few long chorales would make every step slow).

Metrics on the test events: nll (nats per event, the ranking metric), accuracy (top-1
event), pitch_accuracy, duration_accuracy, and unknown_rate (the share of UNKNOWN events,
the same for every model). Baselines on the same events: a bigram model (the previous token;
add-one smoothing over the output vocabulary) and a unigram model (add-one), both counted
on the training chorales as they are (not transposed).

`lstmlab generate RUN` samples events (temperature, top-k; the UNKNOWN token is never drawn)
and writes `generated.mid` (mido) and `piano_roll.png`. A prompt is a list of notes,
"C4:1 D#4:0.5 Bb3:2 R:1" (name, accidental, octave, ':', quarter notes; R is a rest).

Source: J. S. Bach, 371 four-part chorales (as encoded in the music21 corpus, Cuthbert &
Ariza 2010); next-note modelling of chorales after Boulanger-Lewandowski, Bengio & Vincent
(2012) and Hadjeres, Pachet & Nielsen (2017, DeepBach).
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import log_softmax
from .base import TRAIN, Batch, Inputs, Task, TaskDefaults, check_int, from_json_array, json_array
from .datasets import package_file
from .kit import pad_next, run_batched, with_loss
from .sampling import autoregress

SUFFIXES = (".mxl", ".musicxml", ".xml")
STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
TEMPO_BPM = 80                # playback speed of the generated MIDI file
TICKS = 480                   # MIDI ticks per quarter note
BOS_NAME = "<bos>"            # how inspection labels the BOS step


# --- reading MusicXML ------------------------------------------------------------------------
def read_score(path) -> ET.Element:
    """The <score-partwise> root of a .mxl (zipped: the rootfile named in
    META-INF/container.xml) or a plain .musicxml / .xml file."""
    path = Path(path)
    if path.suffix.lower() == ".mxl":
        with zipfile.ZipFile(path) as z:
            container = ET.fromstring(z.read("META-INF/container.xml"))
            rootfile = container.find(".//rootfile")
            full_path = None if rootfile is None else rootfile.get("full-path")
            if not full_path:
                raise ValueError("META-INF/container.xml names no rootfile")
            root = ET.fromstring(z.read(full_path))
    else:
        root = ET.parse(path).getroot()
    if root.tag != "score-partwise":
        raise ValueError(f"the root element is <{root.tag}>, not <score-partwise>")
    return root


def melody_part(root: ET.Element, first_if_none: bool):
    """The part named "Soprano..." (the first one), else the first part or None."""
    names = {sp.get("id"): (sp.findtext("part-name") or "").strip().lower()
             for sp in root.findall("part-list/score-part")}
    parts = root.findall("part")
    for p in parts:
        if names.get(p.get("id"), "").startswith("soprano"):
            return p
    return parts[0] if parts and first_if_none else None


def _required_text(el: ET.Element, path: str) -> str:
    """The text of `el`'s child at `path`; refused when the child is missing."""
    text = el.findtext(path)
    if text is None:
        raise ValueError(f"<{el.tag}> has no <{path}>")
    return text


def midi_pitch(note: ET.Element) -> int:
    step, octave = _required_text(note, "pitch/step"), _required_text(note, "pitch/octave")
    alter = float(note.findtext("pitch/alter") or 0)              # microtones round
    return 12 * (int(octave) + 1) + STEPS[step.strip()] + int(round(alter))


def part_events(part: ET.Element) -> list[tuple[int | None, Fraction]]:
    """One voice of a part as events (MIDI pitch or None for a rest, quarter notes)."""
    events: list[list] = []
    divisions, voice, tie_open, last_new = None, None, False, False
    for measure in part.findall("measure"):
        for el in measure:
            if el.tag == "attributes" and el.find("divisions") is not None:
                divisions = int(_required_text(el, "divisions"))
                continue
            is_forward = el.tag == "forward" and el.findtext("voice") is not None
            if el.tag != "note" and not is_forward:
                continue                                         # backup, direction, ...
            if el.find("grace") is not None or el.find("cue") is not None:
                continue
            v = (el.findtext("voice") or "1").strip()
            voice = v if voice is None else voice
            if v != voice:
                continue                                         # another voice of the part
            if divisions is None:
                raise ValueError("a note comes before <divisions>")
            if el.find("chord") is not None:                     # keep the chord's top note
                if last_new and el.find("pitch") is not None and events[-1][0] is not None:
                    events[-1][0] = max(events[-1][0], midi_pitch(el))
                continue
            d = Fraction(int(_required_text(el, "duration")), divisions)
            pitch = None if is_forward or el.find("rest") is not None else midi_pitch(el)
            ties = {t.get("type") for t in el.findall("tie")}
            tied = tie_open and "stop" in ties and events and events[-1][0] == pitch
            if events and (tied or (pitch is None and events[-1][0] is None)):
                events[-1][1] += d                               # a tie or a longer rest
                last_new = False
            else:
                events.append([pitch, d])
                last_new = True
            tie_open = "start" in ties
    while events and events[0][0] is None:
        events.pop(0)
    while events and events[-1][0] is None:
        events.pop()
    return [(p, d) for p, d in events if d > 0]


@dataclass(frozen=True)
class Corpus:
    """The melodies of a folder, deduplicated, and what was left out."""
    names: tuple[str, ...]
    melodies: tuple[tuple[tuple[int | None, Fraction], ...], ...]
    files: int
    unreadable: int               # files that could not be parsed
    no_melody: int                # without a soprano part, or without notes
    duplicates: int               # melodies equal to an earlier one up to transposition
    source: str


def builtin_folder() -> Path:

    return package_file("music21", "corpus/bach", "the Bach chorale corpus", folder=True)


@lru_cache(maxsize=4)
def read_corpus(folder: str, builtin: bool) -> Corpus:
    """Every MusicXML file of `folder` (cached: parsing the chorales takes about 2 s)."""
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"-o folder={folder}: no such folder; give a folder of .mxl, "
                         ".musicxml or .xml files")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no .mxl, .musicxml or .xml files; give a folder of "
                         "MusicXML scores")
    names, melodies, seen = [], [], set()
    unreadable = no_melody = duplicates = 0
    for f in files:
        try:
            part = melody_part(read_score(f), first_if_none=not builtin)
            events = part_events(part) if part is not None else []
        except (zipfile.BadZipFile, ET.ParseError, KeyError, ValueError, TypeError,
                AttributeError, ZeroDivisionError, OSError):
            unreadable += 1
            continue
        first = next((p for p, _ in events if p is not None), None)
        if first is None:
            no_melody += 1
            continue
        shape = tuple((None if p is None else p - first, d) for p, d in events)
        if shape in seen:
            duplicates += 1
            continue
        seen.add(shape)
        names.append(f.name)
        melodies.append(tuple(events))
    if len(melodies) < 3:
        raise ValueError(f"{folder}: {len(melodies)} of {len(files)} files gave a melody "
                         f"({unreadable} unreadable, {no_melody} without notes); at least 3 "
                         "are needed (training, validation, test)")
    return Corpus(tuple(names), tuple(melodies), len(files), unreadable, no_melody, duplicates,
                  "Bach chorales (music21 corpus)" if builtin else str(folder))


def _unpack_corpus(d: dict) -> Corpus:
    """The corpus as Music.stored_arrays kept it."""
    melodies = tuple(tuple((p, Fraction(n, m)) for p, n, m in events) for events in d["melodies"])
    return Corpus(tuple(d["names"]), melodies, d["files"], d["unreadable"], d["no_melody"],
                  d["duplicates"], d["source"])


def split_names(names) -> dict[str, list[int]]:
    """Indices of the test, valid and train chorales: sorted by the MD5 of the name, the
    first 10% test, the next 10% valid, the rest train (at least one in each)."""
    order = sorted(range(len(names)), key=lambda k: hashlib.md5(names[k].encode()).hexdigest())
    n_held = max(1, round(0.1 * len(names)))
    return {"test": sorted(order[:n_held]), "valid": sorted(order[n_held:2 * n_held]),
            "train": sorted(order[2 * n_held:])}


# --- notes as text ---------------------------------------------------------------------------
def note_name(pitch: int | None) -> str:
    return "R" if pitch is None else f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def event_name(pitch: int | None, duration) -> str:
    """"C4:1", "R:0.5": one event as the prompt format writes it."""
    return f"{note_name(pitch)}:{float(duration):g}"


def format_events(events) -> str:
    """"C4:1 D4:0.5 R:1": the prompt format."""
    return " ".join(event_name(p, d) for p, d in events)


_NOTE = re.compile(r"^(?:(R)|([A-Ga-g])(#|b|)(-?\d)):(\d+(?:\.\d+)?(?:/\d+)?)$")


def parse_prompt(text: str, what: str = "--prompt") -> list[tuple[int | None, Fraction]]:
    """Events from a prompt such as "C4:1 D#4:0.5 Bb3:2 R:1"; `what` names it in errors."""
    events = []
    for word in text.split():
        m = _NOTE.match(word)
        if not m:
            raise ValueError(f"{what}: {word!r} is not a note; write NAME OCTAVE:QUARTERS, "
                             "e.g. \"C4:1 D#4:0.5 Bb3:2 R:1\" (R: a rest)")
        rest, step, acc, octave, dur = m.groups()
        d = Fraction(dur).limit_denominator(64)
        if d <= 0:
            raise ValueError(f"{what}: {word!r} has no duration; give quarter notes > 0")
        pitch = None if rest else (12 * (int(octave) + 1) + STEPS[step.upper()]
                                   + {"#": 1, "b": -1, "": 0}[acc])
        events.append((pitch, d))
    if not events:
        raise ValueError("--prompt is empty; give notes such as \"C4:1 D4:0.5\" or leave it out")
    return events


# --- the vocabulary --------------------------------------------------------------------------
class Vocabulary:
    """Joint (pitch, duration) tokens: pitch index * len(durations) + duration index, then
    UNKNOWN and BOS. Pitch index 0 is the rest, k > 0 is MIDI pitch low + k - 1."""

    def __init__(self, low: int, high: int, durations):
        self.low, self.high = int(low), int(high)
        self.durations = tuple(sorted(Fraction(d) for d in durations))
        self.n_pitches = self.high - self.low + 2               # the rest, then low..high
        self.n_durations = len(self.durations)
        self.unknown = self.n_pitches * self.n_durations
        self.bos = self.unknown + 1
        self.size = self.bos + 1                                 # input ids (with BOS)
        self.n_out = self.bos                                    # output ids (no BOS)
        self._dur = {d: k for k, d in enumerate(self.durations)}

    def encode(self, events, shift: int = 0) -> np.ndarray:
        """(n,) token ids of events, transposed by `shift` semitones."""
        out = np.empty(len(events), dtype=np.int64)
        for k, (p, d) in enumerate(events):
            pi = 0 if p is None else p + shift - self.low + 1
            di = self._dur.get(d)
            if di is not None and (p is None or self.low <= p + shift <= self.high):
                out[k] = pi * self.n_durations + di
            else:
                out[k] = self.unknown
        return out

    def decode(self, ids) -> list[tuple[int | None, Fraction]]:
        out = []
        for t in np.asarray(ids).tolist():
            if not 0 <= t < self.unknown:
                raise ValueError(f"token {t} is not a note (UNKNOWN or BOS)")
            pi, di = divmod(t, self.n_durations)
            out.append((None if pi == 0 else self.low + pi - 1, self.durations[di]))
        return out

    def pitch_of(self, ids) -> np.ndarray:
        """Pitch index of each id (-1 for UNKNOWN / BOS)."""
        ids = np.asarray(ids)
        return np.where(ids < self.unknown, ids // self.n_durations, -1)

    def duration_of(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        return np.where(ids < self.unknown, ids % self.n_durations, -1)


def likeliest(logp: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """(n,) the most probable id of each row of logp (n, n_out), UNKNOWN left out."""
    return np.argmax(np.where(np.arange(vocab.n_out) == vocab.unknown, -np.inf, logp), -1)


def add_one_counts(train_tokens, vocab: Vocabulary):
    """Add-one bigram (n_in, n_out) and unigram (n_out,) log probabilities from the
    training chorales' token ids (BOS is the bigram's context of a first note)."""
    V = vocab
    bigram = np.ones((V.size, V.n_out))
    for s in train_tokens:
        np.add.at(bigram, (np.r_[V.bos, s[:-1]], s), 1.0)
    unigram = bigram.sum(0) - V.size + 1.0                       # counts + 1 per token
    return (np.log(bigram / bigram.sum(1, keepdims=True)),
            np.log(unigram / unigram.sum()))


def score_events(logp: np.ndarray, y: np.ndarray, vocab: Vocabulary) -> dict[str, float]:
    """Metrics of log probabilities logp (n, n_out) for the target ids y (n,)."""
    nll = -logp[np.arange(len(y)), y]
    p = np.exp(logp[:, :vocab.unknown]).reshape(len(y), vocab.n_pitches, vocab.n_durations)
    known = y != vocab.unknown                                   # UNKNOWN: always a miss
    best = likeliest(logp, vocab)
    return {"nll": float(nll.mean()),
            "accuracy": float(np.mean(known & (best == y))),
            "pitch_accuracy": float(np.mean(known & (p.sum(2).argmax(1) == vocab.pitch_of(y)))),
            "duration_accuracy": float(np.mean(known & (p.sum(1).argmax(1)
                                                        == vocab.duration_of(y)))),
            "unknown_rate": float(np.mean(~known))}


class Music(Task):
    name = "music"
    summary = ("next-note prediction on the soprano lines of Bach's chorales (pitch and "
               "duration); generate writes a MIDI file")
    loss = "xent"
    metric = "nll"
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 256},
                            train={"steps": 1500, "batch_size": 32, "lr": 3e-3,
                                   "eval_every": 100})
    options = {"folder": ("", "a folder of your own .mxl / .musicxml / .xml scores instead of "
                              "the Bach chorales (the Soprano part, else the first)"),
               "transpose": (3, "training: shift each chorale by a random number of semitones "
                                "in [-k, k] (0: no augmentation)"),
               "min_count": (5, "durations seen fewer times in training are UNKNOWN"),
               "window": (64, "training: events per sequence at most (a random window of a "
                              "longer chorale, which then starts mid-way, not from BOS)"),
               "embedding": (32, "width of the token embedding")}
    sources = ("folder",)

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        o = self.opts
        self.transpose = check_int("transpose", o["transpose"], 0, 12)
        min_count = check_int("min_count", o["min_count"], 1)
        self.embedding = check_int("embedding", o["embedding"], 1)
        self.window = check_int("window", o["window"], 1)
        folder = str(o["folder"]) if o["folder"] else str(builtin_folder())
        self.corpus = (read_corpus(folder, builtin=not o["folder"]) if self.stored is None
                       else _unpack_corpus(from_json_array(self.stored.arrays["corpus"])))
        self.index = split_names(self.corpus.names)
        train = [self.corpus.melodies[k] for k in self.index["train"]]
        pitches = [p for m in train for p, _ in m if p is not None]
        counts = Counter(d for m in train for _, d in m)
        durations = [d for d, c in counts.items() if c >= min_count]
        if not durations:
            raise ValueError(f"no duration occurs {min_count} times in the training chorales; "
                             "lower -o min_count")
        self.vocab = Vocabulary(max(0, min(pitches) - self.transpose),
                                min(127, max(pitches) + self.transpose), durations)
        self.tokens = {s: [self.vocab.encode(self.corpus.melodies[k]) for k in idx]
                       for s, idx in self.index.items()}
        # whole chorales: x (T, n) BOS then the events, y (T, n) the events, mask, lengths
        self.split = {s: pad_next([np.r_[self.vocab.bos, t] for t in self.tokens[s]])
                      for s in ("valid", "test")}
        # training ids (BOS, then the events) of every chorale at every shift, encoded once
        self.shifted = {s: [np.r_[self.vocab.bos, self.vocab.encode(m, s)] for m in train]
                        for s in range(-self.transpose, self.transpose + 1)}
        self.log_counts = add_one_counts(self.tokens["train"], self.vocab)

    def preprocessing(self) -> dict:
        V = self.vocab
        return {"input": "token ids: a (pitch, duration) event is pitch index * n_durations + "
                         "duration index, pitch index 0 a rest and k > 0 the MIDI pitch low + "
                         "k - 1; then unknown_id and bos_id",
                "output": "logits of the next event (ids below bos_id)",
                "low": V.low, "high": V.high, "durations": [str(d) for d in V.durations],
                "n_durations": V.n_durations, "unknown_id": V.unknown, "bos_id": V.bos,
                "source": self.corpus.source}

    def stored_arrays(self) -> dict[str, np.ndarray]:
        c = self.corpus
        return {"corpus": json_array({
            "names": list(c.names), "files": c.files, "unreadable": c.unreadable,
            "no_melody": c.no_melody, "duplicates": c.duplicates, "source": c.source,
            "melodies": [[[p, d.numerator, d.denominator] for p, d in m] for m in c.melodies]})}

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=self.embedding, output_size=self.vocab.n_out,
                           vocab_size=self.vocab.size, readout="sequence", **settings)

    def train_batch(self, step, batch_size):
        rng = np.random.default_rng([self.seed, TRAIN, step])
        train = self.index["train"]
        picks = rng.integers(0, len(train), size=batch_size)
        shifts = rng.integers(-self.transpose, self.transpose + 1, size=batch_size)
        starts = rng.random(batch_size)
        seqs = []
        for k, s, u in zip(picks, shifts, starts):
            ids = self.shifted[int(s)][k]
            a = int(u * (max(0, len(ids) - 1 - self.window) + 1))   # a window of a long one
            seqs.append(ids[a:a + self.window + 1])              # inputs and targets
        x, y, mask, lengths = pad_next(seqs)
        return Batch(x=x, y=y, mask=mask.astype(np.float64), lengths=lengths)

    # --- evaluation ------------------------------------------------------------------------
    def _logp(self, predictor, split) -> np.ndarray:
        x, _, _, lengths = self.split[split]
        return log_softmax(run_batched(predictor, x, lengths))   # (T, N, n_out)

    def evaluate(self, predictor, split):
        _, y, mask, _ = self.split[split]
        return with_loss(score_events(self._logp(predictor, split)[mask], y[mask], self.vocab),
                         split)

    def _counts(self):
        """Add-one bigram (n_in, n_out) and unigram (n_out,) log probabilities from the
        training chorales (counted once, in __init__: add_one_counts)."""
        return self.log_counts

    def baselines(self):
        x, y, mask, _ = self.split["test"]
        bigram, unigram = self._counts()
        return {"bigram": score_events(bigram[x[mask]], y[mask], self.vocab),
                "unigram": score_events(np.broadcast_to(unigram, (int(mask.sum()), len(unigram))),
                                        y[mask], self.vocab)}

    def figures(self, predictor, folder, test, baselines):
        x, y, mask, lengths = self.split["test"]
        j = int(np.argsort(lengths)[len(lengths) // 2])          # a test chorale of median length
        n = int(lengths[j])
        logp = log_softmax(run_batched(predictor, x[:n, j:j + 1], lengths[j:j + 1]))[:, 0]
        bigram, _ = self._counts()                               # logp: (n, n_out)
        events = self.corpus.melodies[self.index["test"][j]]
        ids = y[:n, j]
        p_model = np.exp(logp[np.arange(n), ids])
        p_bigram = np.exp(bigram[x[:n, j], ids])
        guess = self.vocab.decode(likeliest(logp, self.vocab))
        name = self.corpus.names[self.index["test"][j]]
        title = (f"music: a test chorale ({name}, soprano) and the model's next-note "
                 f"probabilities ({predictor.config.variant})\nall {len(lengths)} test "
                 f"chorales: nll {test['nll']:.2f} nats/event (bigram "
                 f"{baselines['bigram']['nll']:.2f}), accuracy {test['accuracy']:.1%} "
                 f"(bigram {baselines['bigram']['accuracy']:.1%})")
        return [piano_roll(Path(folder) / "piano_roll.png", events, probs=p_model,
                           guesses=[g[0] for g in guess], reference=p_bigram, title=title)]

    # --- inspection ------------------------------------------------------------------------
    def examples(self, split="test"):
        """The split's chorales as evaluate reads them: (T, N) int64 ids, BOS and then every
        event but the last (the model predicts each next one), 0 past each end, with their
        lengths; each step labelled "<bos>" or with its event, "A4:1"."""
        x, _, _, lengths = self.split[split]
        steps = [[BOS_NAME] + [event_name(p, d) for p, d in self.corpus.melodies[k][:-1]]
                 for k in self.index[split]]
        return Inputs(x=x, steps=steps, lengths=lengths)

    def encode_input(self, value):
        """Notes in the prompt format, "C4:1 D#4:0.5 R:1", after BOS, as generate reads a
        prompt; notes outside the vocabulary are refused."""
        if not value.split():
            raise ValueError("give notes such as \"C4:1 D4:0.5 R:1\" (name, octave, ':', "
                             "quarter notes; R a rest)")
        events = parse_prompt(value, "--input")
        ids = self.encode_known(events, "--input")
        return Inputs(x=np.r_[self.vocab.bos, ids][:, None],
                      steps=[[BOS_NAME] + [event_name(p, d) for p, d in events]])

    def encode_known(self, events, what: str) -> np.ndarray:
        """(n,) ids of the user's events; events the vocabulary lacks (UNKNOWN) are refused,
        named in one line with `what`, the option that gave them."""
        V = self.vocab
        ids = V.encode(events)
        if np.any(ids == V.unknown):
            bad = [format_events([e]) for e, t in zip(events, ids) if t == V.unknown]
            raise ValueError(f"{what}: {' '.join(bad)} is outside the model's vocabulary: "
                             f"pitches {note_name(V.low)}..{note_name(V.high)} or R, durations "
                             f"{', '.join(f'{float(d):g}' for d in V.durations)}")
        return ids

    # --- generation ------------------------------------------------------------------------
    def generate(self, predictor, folder, *, length, temperature, top_k, prompt, seed):
        import mido

        V = self.vocab
        start = parse_prompt(prompt) if prompt else []
        ids = self.encode_known(start, "--prompt")
        out = autoregress(predictor, np.r_[V.bos, ids], length, temperature, top_k,
                          np.random.default_rng(seed),
                          banned=V.unknown)                      # never "something else"
        events = V.decode(out)
        folder = Path(folder)
        midi = write_midi(folder / "generated.mid", start + events, mido)
        title = (f"music: {length} events sampled (temperature {temperature:g}"
                 f"{f', top {top_k}' if top_k else ''}, seed {seed})"
                 + (f" after a prompt of {len(start)}" if start else ""))
        fig = piano_roll(folder / "piano_roll.png", start + events, title=title,
                         prompt=len(start))
        return {"midi": str(midi), "figure": str(fig), "events": len(events),
                "prompt_events": len(start), "quarters": float(sum(d for _, d in events)),
                "notes": format_events(events)}


def write_midi(path, events, mido) -> Path:
    """A one-track MIDI file of events (pitch or None, quarter notes), written atomically."""
    from ..io.atomic import atomic_path

    mid = mido.MidiFile(ticks_per_beat=TICKS)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(TEMPO_BPM), time=0))
    track.append(mido.Message("program_change", program=52, time=0))   # choir aahs
    wait = 0                                                     # ticks of rest so far
    for p, d in events:
        ticks = int(round(d * TICKS))
        if p is None:
            wait += ticks
            continue
        track.append(mido.Message("note_on", note=p, velocity=80, time=wait))
        track.append(mido.Message("note_off", note=p, velocity=0, time=ticks))
        wait = 0
    track.append(mido.MetaMessage("end_of_track", time=wait))
    with atomic_path(path) as tmp:
        mid.save(str(tmp))
    return Path(path)


def piano_roll(path, events, *, title, probs=None, guesses=None, reference=None, prompt=0):
    """A piano roll of events; with `probs`, each note coloured by the model's probability of
    it, the model's most likely pitch at each onset marked, and below, per event, the
    model's and the bigram's probability of the event that came."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from ..viz.figures import (
        GATE_CMAP,
        LEGEND_SIZE,
        SUBTITLE_SIZE,
        TICK_SIZE,
        new_figure,
        save_figure,
        style_axes,
    )

    onsets = np.r_[0.0, np.cumsum([float(d) for _, d in events])]   # (n + 1,)
    pitches = [p for p, _ in events if p is not None]
    pitches += [g for g in (guesses or []) if g is not None]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (58, 82)
    fig = new_figure(6.4 if probs is not None else 4.2)
    if probs is not None:
        grid = fig.add_gridspec(2, 2, height_ratios=[2.2, 1.0], width_ratios=[1.0, 0.015])
        ax = fig.add_subplot(grid[0, 0])
    else:
        ax = fig.add_subplot(1, 1, 1)
    style_axes(ax)
    for k, (p, d) in enumerate(events):
        if p is None:
            continue
        color = (GATE_CMAP(float(probs[k])) if probs is not None
                 else "#9e9e9e" if k < prompt else "#1f77b4")
        ax.add_patch(Rectangle((onsets[k], p - 0.4), float(d), 0.8, facecolor=color,
                               edgecolor="#333333", linewidth=0.6))
    if guesses is not None:
        g = np.array([np.nan if q is None else q for q in guesses], dtype=float)
        ax.plot(onsets[:-1] + 0.08, g, linestyle="none", marker="x", markersize=5,
                color="#d62728")
    ax.set_xlim(0, max(onsets[-1], 1.0))
    ax.set_ylim(lo, hi)
    naturals = [c for c in range(lo, hi + 1) if c % 12 in (0, 2, 4, 5, 7, 9, 11)]
    ax.set_yticks(naturals, [note_name(c) for c in naturals])
    ax.set_ylabel("pitch")
    if probs is not None:
        cb = fig.colorbar(_mappable(GATE_CMAP), cax=fig.add_subplot(grid[0, 1]))
        cb.set_label("model's probability of the event", fontsize=TICK_SIZE + 1)
        cb.ax.tick_params(labelsize=TICK_SIZE)
        ax.legend([Line2D([], [], linestyle="none", marker="x", color="#d62728")],
                  ["pitch of the model's most likely next event"], loc="upper right",
                  fontsize=LEGEND_SIZE, frameon=False)
        ax2 = fig.add_subplot(grid[1, 0], sharex=ax)
        style_axes(ax2)
        ax2.step(onsets[:-1], probs, where="post", color="#1f77b4", label="LSTM")
        if reference is not None:
            ax2.step(onsets[:-1], reference, where="post", color="#ff7f0e", label="bigram")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("p(event that came)")
        ax2.set_xlabel("time (quarter notes)")
        ax2.legend(loc="upper right", fontsize=LEGEND_SIZE, frameon=False, ncols=2)
    else:
        ax.set_xlabel("time (quarter notes)")
        if prompt:
            ax.legend([Rectangle((0, 0), 1, 1, color=c) for c in ("#9e9e9e", "#1f77b4")],
                      ["prompt", "sampled"], loc="upper right", fontsize=LEGEND_SIZE, frameon=False)
    fig.suptitle(title, fontsize=SUBTITLE_SIZE)
    return save_figure(fig, path)


def _mappable(cmap):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(Normalize(0, 1), cmap)
