"""`translate`: date normalisation with an attention encoder-decoder, on held-out dates.

A character-level LSTM encoder reads a date as people write it; an LSTM decoder with
attention (Luong, Pham & Manning 2015, "general" score, no input feeding; see
lstmlab.numpy.seq2seq) writes it in ISO 8601:

    "the 21st of November, 2026"  ->  "2026-11-21"

The toy problem is the one Andrew Ng's sequence-models course and many attention tutorials
use ("human-readable dates to machine dates"); here the corpus is generated, seeded, and the
split is by the date itself, so every test date is unseen in every form.

Dates run from 1950-01-01 to 2049-12-31 (36,525 days). A hash of the ISO date (CRC-32)
puts ~10% of the days in the test split and ~5% in the validation split, for every seed;
training draws from the other ~85%. Surface forms (each maps to exactly one date):

    the 21st of November, 2026     November 21, 2026          November 21st, 2026
    21 Nov 2026                    21 November 2026           21st November 2026
    21-Nov-2026                    Saturday, 21 November 2026  Sat, Nov 21, 2026
    21/11/2026    5/3/2026         21.11.2026                 2026.11.21
    20261121                       nov 21 '26

Numbers with slashes or dots and the year last are always day.month.year (the European
order): no month-first numeric form is generated, since "5/3/2026" would then have two
readings. A two-digit year 'YY means 19YY for YY >= 50 and 20YY below, the window of the
corpus. Each example is written as shown, in lower case or in upper case (probabilities
0.6, 0.2, 0.2).

Tokens are characters. Source ids: 0 PAD, then SOURCE_CHARS. Target ids: 0 PAD, 1 BOS,
2 EOS, then the digits and "-"; every target is 10 characters and EOS.

Metrics on the held-out dates (one form each, drawn once per split): exact_match (the
greedy output is the whole right date; it ranks models), char_accuracy (of the 11 output
positions, EOS included), nll (teacher forcing, nats per target token). Baselines:
`majority` writes each position's most common training character (nll from the positions'
character frequencies), `copy_digits` copies the digit runs of the source (a 4-digit run is
the year; with the year first the next runs are month and day, else day and month; a
missing part comes from `majority`), its nll putting 0.9 on its own character.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..numpy.losses import log_softmax
from ..numpy.seq2seq import BOS, EOS, PAD  # noqa: F401  (PAD: this module's conventions too)
from .base import TEST, TRAIN, VALID, Batch, Inputs, Task, TaskDefaults, check_int
from .datasets import read_text_file
from .kit import Vocabulary, pad, with_loss

FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
TEST_SHARE, VALID_SHARE = 0.10, 0.05
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CASES = (("as is", 0.6), ("lower", 0.2), ("upper", 0.2))
CASE_FN: dict[str, Callable[[str], str]] = {"as is": str, "lower": str.lower, "upper": str.upper}

SOURCE_CHARS = " ',-./0123456789" + "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SOURCE = Vocabulary(SOURCE_CHARS, reserved=("<pad>",))           # 0 is PAD
SRC_VOCAB = len(SOURCE)
TARGET_CHARS = "0123456789-"
TARGET = Vocabulary(TARGET_CHARS, reserved=("<pad>", "<bos>", "<eos>"))   # PAD, BOS, EOS
TGT_VOCAB = len(TARGET)
TGT_LEN = 11                                                     # "YYYY-MM-DD" and EOS
MAX_SOURCE = 48                                                  # longest line predict takes
EVAL_BATCH = 512                                                 # sequences per predictor call


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def _fields(t: datetime.date) -> dict:
    """What a form template may use, for one date."""
    month, weekday = MONTHS[t.month - 1], WEEKDAYS[t.weekday()]
    return dict(day=t.day, dd=f"{t.day:02d}", ord=_ordinal(t.day), month=month, mon=month[:3],
                lmon=month[:3].lower(), m=t.month, mm=f"{t.month:02d}", year=t.year,
                yy=f"{t.year % 100:02d}",
                weekday=weekday, wkd=weekday[:3])


TEMPLATES = {  # form name (21 November 2026 written that way) -> template over _fields
    "the 21st of November, 2026": "the {ord} of {month}, {year}",
    "November 21, 2026": "{month} {day}, {year}",
    "November 21st, 2026": "{month} {ord}, {year}",
    "21 Nov 2026": "{day} {mon} {year}",
    "21 November 2026": "{day} {month} {year}",
    "21st November 2026": "{ord} {month} {year}",
    "21-Nov-2026": "{dd}-{mon}-{year}",
    "Saturday, 21 November 2026": "{weekday}, {day} {month} {year}",
    "Sat, Nov 21, 2026": "{wkd}, {mon} {day}, {year}",
    "21/11/2026": "{dd}/{mm}/{year}",
    "5/3/2026": "{day}/{m}/{year}",
    "21.11.2026": "{dd}.{mm}.{year}",
    "2026.11.21": "{year}.{mm}.{dd}",
    "20261121": "{year}{mm}{dd}",
    "nov 21 '26": "{lmon} {day} '{yy}",
}
FORMS = {name: (lambda t, tpl=tpl: tpl.format(**_fields(t))) for name, tpl in TEMPLATES.items()}
FORM_NAMES = tuple(FORMS)


def all_dates() -> list[datetime.date]:
    n = (LAST - FIRST).days + 1
    return [FIRST + datetime.timedelta(days=k) for k in range(n)]


def split_of(date: datetime.date) -> str:
    """"test", "valid" or "train": a hash of the ISO date, the same for every seed."""
    u = zlib.crc32(date.isoformat().encode()) / 2**32
    return "test" if u < TEST_SHARE else "valid" if u < TEST_SHARE + VALID_SHARE else "train"


def render(date: datetime.date, form: int, case: int) -> str:
    """The date in surface form FORM_NAMES[form], cased as CASES[case]."""
    return CASE_FN[CASES[case][0]](FORMS[FORM_NAMES[form]](date))


def draw(rng, dates: list, n: int | None = None):
    """(sources, targets, forms): n dates drawn from `dates` (all of them, in order, if n is
    None), each in a random form (forms: indices into FORM_NAMES) and case."""
    idx = np.arange(len(dates)) if n is None else rng.integers(0, len(dates), size=n)
    forms = rng.integers(0, len(FORMS), size=len(idx))
    cases = rng.choice(len(CASES), size=len(idx), p=[p for _, p in CASES])
    sources = [render(dates[i], f, c)
               for i, f, c in zip(idx.tolist(), forms.tolist(), cases.tolist())]
    return sources, [dates[i].isoformat() for i in idx.tolist()], forms


def encode_sources(sources: list[str]):
    """x (S, N) ids, PAD after each end, and lengths (N,). Characters must be in SOURCE_CHARS."""
    return pad([SOURCE.encode(s) for s in sources], np.int64)


def encode_targets(targets: list[str]):
    """y (11, N) ids ("YYYY-MM-DD" then EOS) and the decoder inputs BOS + y[:-1]."""
    y = np.array([[*TARGET.encode(t), EOS] for t in targets], dtype=np.int64).T
    y_in = np.concatenate([np.full((1, y.shape[1]), BOS), y[:-1]])
    return y, y_in


def decode_ids(ids) -> list[str]:
    """(T, N) target ids -> N strings, each cut at its first EOS (PAD and BOS dropped)."""
    return ["".join(TARGET.decode(col, stop=EOS)) for col in np.asarray(ids).T]


def copy_digits(source: str, fallback: str) -> str:
    """The `copy_digits` baseline: the source's digit runs as year, month and day."""
    runs, cur = [], ""
    for ch in source + " ":
        if ch.isdigit():
            cur += ch
        elif cur:
            runs.append(cur)
            cur = ""
    year, month, day = fallback[:4], fallback[5:7], fallback[8:10]
    if len(runs) == 1 and len(runs[0]) == 8:                     # 20261121
        return f"{runs[0][:4]}-{runs[0][4:6]}-{runs[0][6:]}"
    k = next((i for i, r in enumerate(runs) if len(r) == 4), None)
    if k is None:
        return f"{year}-{month}-{_two(runs[:1], day)}"           # 'yy: the century is unknown
    year, rest = runs[k], runs[:k] + runs[k + 1:]
    if k == 0:                                                   # year first: month, day
        return f"{year}-{_two(rest[:1], month)}-{_two(rest[1:2], day)}"
    if len(rest) >= 2:                                           # year last: day, month
        return f"{year}-{_two(rest[1:2], month)}-{_two(rest[:1], day)}"
    return f"{year}-{month}-{_two(rest[:1], day)}"               # month as a word: unknown


def _two(run, default):
    return run[0].zfill(2)[-2:] if run else default


def read_lines(path) -> list[str]:
    """The user's text file as its non-blank lines, stripped; one-line errors otherwise."""

    path = Path(path)
    text = read_text_file(
        path, "input file",
        hint="give a UTF-8 text file with one date a line, e.g. 'the 21st of November, 2026'",
        empty="input file {path} is empty; give one date a line, e.g. "
              "'the 21st of November, 2026'",
        not_utf8="input file {path} is not UTF-8: byte 0x{byte:02x} at offset {offset} cannot "
                 "be decoded; convert it to UTF-8")
    # not all blank (read_text_file checked): at least one line
    lines = [(n, s.strip()) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
    for n, s in lines:
        check_source(s, f"{path} line {n}")
    return [s for _, s in lines]


def check_source(s: str, where: str) -> None:
    """ValueError unless `s` is a date line the model can read: its characters, its length."""
    bad = sorted({ch for ch in s if ch not in SOURCE_CHARS})
    if bad or not 0 < len(s) <= MAX_SOURCE:
        what = (f"characters {''.join(bad)!r} the model never saw" if bad
                else f"{len(s)} characters, not 1 to {MAX_SOURCE}")
        raise ValueError(f"{where} has {what}; expected a date written with "
                         "letters, digits, spaces and ,-./' (e.g. '21 Nov 2026')")


class Translate(Task):
    name = "translate"
    summary = ("date normalisation ('the 21st of November, 2026' -> '2026-11-21') with an "
               "attention encoder-decoder (Luong et al. 2015), on held-out dates")
    loss = "xent"
    metric = "exact_match"
    lower_is_better = False
    # 400 steps already pass 99.9% exact match (seed 0); 1000 leave a margin for other seeds
    # and variants, in a few minutes on a CPU
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 64, "bidirectional": True},
                            train={"steps": 1000, "batch_size": 64, "lr": 5e-3,
                                   "eval_every": 100})
    options = {"embedding": (32, "width of the source and target character embeddings"),
               "test_size": (0, "held-out test dates to score (0: all ~3,650)"),
               "valid_size": (0, "held-out validation dates to score (0: all ~1,830)")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        self.embedding = check_int("embedding", self.opts["embedding"], 1)
        by_split = {"train": [], "valid": [], "test": []}
        for d in all_dates():
            by_split[split_of(d)].append(d)
        self.dates = by_split
        self.split = {}                                     # split -> (sources, targets, forms)
        for k, name in ((VALID, "valid"), (TEST, "test")):
            rng = np.random.default_rng([seed, k])
            n = check_int(f"{name}_size", self.opts[f"{name}_size"], 0)
            dates = by_split[name]
            if 0 < n < len(dates):                               # a subset, still in date order
                dates = [dates[i] for i in np.sort(rng.choice(len(dates), n, replace=False))]
            self.split[name] = draw(rng, dates)
        # split -> [((x, lengths), (y, y_in))], EVAL_BATCH sequences each: encoded once
        self.encoded = {name: [(encode_sources(sources[a:a + EVAL_BATCH]),
                                encode_targets(targets[a:a + EVAL_BATCH]))
                               for a in range(0, len(sources), EVAL_BATCH)]
                        for name, (sources, targets, _) in self.split.items()}

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=self.embedding, output_size=TGT_VOCAB, vocab_size=SRC_VOCAB,
                           architecture="seq2seq", **settings)

    def train_batch(self, step, batch_size):
        rng = np.random.default_rng([self.seed, TRAIN, step])
        sources, targets, _ = draw(rng, self.dates["train"], batch_size)
        x, lengths = encode_sources(sources)
        y, y_in = encode_targets(targets)
        return Batch(x=x, y=y, lengths=lengths, target_in=y_in)

    # --- evaluation ------------------------------------------------------------------------
    def translate(self, predictor, sources: list[str]):
        """Greedy outputs (strings) and attention (list of (T, S) arrays) for `sources`."""
        outs, attns = [], []
        for a in range(0, len(sources), EVAL_BATCH):
            x, lengths = encode_sources(sources[a:a + EVAL_BATCH])
            ids, attn = predictor.decode(x, lengths, TGT_LEN + 1)   # +1: a missing EOS shows
            outs.extend(decode_ids(ids))
            attns.extend(attn)
        return outs, attns

    @staticmethod
    def _scores(outputs: list[str], targets: list[str]) -> dict:
        exact = np.mean([o == t for o, t in zip(outputs, targets)])
        # per position of "YYYY-MM-DD" + EOS; a short output misses what it lacks, a long one
        # misses the EOS
        right = [sum(a == b for a, b in zip(o + "$", t + "$")) for o, t in zip(outputs, targets)]
        return {"exact_match": float(exact),
                "char_accuracy": float(np.sum(right) / (TGT_LEN * len(targets)))}

    def evaluate(self, predictor, split):
        """Greedy outputs and teacher-forced nll per target token, one pass over the chunks."""
        outputs, nll = [], []
        for (x, lengths), (y, y_in) in self.encoded[split]:
            ids, _ = predictor.decode(x, lengths, TGT_LEN + 1)   # as `translate`
            outputs.extend(decode_ids(ids))
            logits, _ = predictor.run(x, y_in, lengths)
            logp = log_softmax(np.asarray(logits, dtype=np.float64))
            nll.append(-np.take_along_axis(logp, y[..., None], axis=-1)[..., 0])   # (11, n)
        return with_loss({**self._scores(outputs, self.split[split][1]),
                          "nll": float(np.concatenate(nll, axis=1).mean())}, split)

    def _majority(self):
        """Per position of the target: log-frequencies (11, V) over the training dates."""
        y, _ = encode_targets([d.isoformat() for d in self.dates["train"]])
        counts = np.full((TGT_LEN, TGT_VOCAB), 0.5)
        np.add.at(counts, (np.repeat(np.arange(TGT_LEN), y.shape[1]), y.ravel()), 1.0)
        return np.log(counts / counts.sum(1, keepdims=True))

    def baselines(self):
        sources, targets, _ = self.split["test"]
        y, _ = encode_targets(targets)
        maj = self._majority()                                   # (11, V)
        maj_string = decode_ids(maj.argmax(-1)[:, None])[0]
        maj_nll = float(-maj[np.arange(TGT_LEN)[:, None], y].mean())
        copied = [copy_digits(s, maj_string) for s in sources]
        # copy_digits' nll: 0.9 on its own character, 0.1 spread over the other ids
        hit = encode_targets(copied)[0] == y
        copy_nll = float(np.where(hit, -np.log(0.9), -np.log(0.1 / (TGT_VOCAB - 1))).mean())
        return {"majority": {**self._scores([maj_string] * len(targets), targets), "nll": maj_nll},
                "copy_digits": {**self._scores(copied, targets), "nll": copy_nll}}

    # --- figures and the user's file -------------------------------------------------------
    def figures(self, predictor, folder, test, baselines):
        sources, targets, forms = self.split["test"]
        outputs, attns = self.translate(predictor, sources)
        # heatmaps: four wordy forms, where attention has to find the day, the month name and
        # the year in different places; the k-th from the k-th quarter of the test dates
        wordy = [FORM_NAMES.index(f) for f in ("the 21st of November, 2026", "Sat, Nov 21, 2026",
                                               "21-Nov-2026", "nov 21 '26")]
        picks = []
        for k, f in enumerate(wordy):
            where = np.flatnonzero(forms == f)
            if where.size:
                later = where[where >= k * len(forms) // 4]
                picks.append(int(later[0] if later.size else where[0]))
        # the list: up to 6 mistakes, then other test dates, 12 in all
        wrong = [j for j, (o, t) in enumerate(zip(outputs, targets)) if o != t][:6]
        others = [j for j in range(len(sources)) if j not in picks + wrong]
        listed = wrong + others[:12 - len(wrong)]
        title = (f"translate: attention of the {predictor.config.variant} encoder-decoder on "
                 f"held-out dates; exact match {test['exact_match']:.2%} "
                 f"(copy_digits {baselines['copy_digits']['exact_match']:.1%})")
        return [attention_figure(Path(folder) / "attention.png",
                                 [(sources[j], outputs[j], attns[j], outputs[j] == targets[j])
                                  for j in picks],
                                 [(sources[j], outputs[j], targets[j]) for j in listed],
                                 title=title)]

    # --- inspection ---------------------------------------------------------------------------
    def examples(self, split="test"):
        """The split's source lines (the decoder's inputs come from the model's own greedy
        translation, see lstmlab.inspect)."""
        sources = self.split[split][0]
        x, lengths = encode_sources(sources)
        return Inputs(x=x, steps=[list(s) for s in sources], lengths=lengths)

    def encode_input(self, value):
        value = value.strip()
        check_source(value, "the text")
        x, _ = encode_sources([value])
        return Inputs(x=x, steps=[list(value)])

    @staticmethod
    def target_symbols(ids) -> list[str]:
        """What each decoder input id reads: a character, <bos>, <eos> or <pad>."""
        return [TARGET.tokens[int(i)] for i in ids]

    def predict_file(self, predictor, path):
        """Translate each non-blank line of a UTF-8 text file."""
        lines = read_lines(path)
        outputs, _ = self.translate(predictor, lines)
        return {"input": str(path), "count": len(lines),
                "translations": "\n".join(f"{s}  ->  {o}" for s, o in zip(lines, outputs))}


def attention_figure(path, panels, examples, *, title):
    """Attention heatmaps (source characters across, output characters down), two a row,
    and a list of greedy translations below them (mistakes first)."""
    from ..viz.figures import SUBTITLE_SIZE, TICK_SIZE, new_figure, save_figure
    from ..viz.inspect import draw_attention

    rows = (len(panels) + 1) // 2
    with np.errstate(all="ignore"):       # as viz.figures: odd values must not abort a picture
        text_height = 0.17 * (len(examples) + 1)                 # inches: one line of text each
        fig = new_figure(2.6 * rows + text_height + 0.5)
        grid = fig.add_gridspec(rows + 1, 3, width_ratios=[1, 1, 0.03],
                                height_ratios=[2.6] * rows + [text_height])
        im = None
        for k, (src, out, attn, ok) in enumerate(panels):
            ax = fig.add_subplot(grid[k // 2, k % 2])
            shown = list(out) + ["EOS"]
            a = np.asarray(attn)[:len(shown), :len(src)]
            im = draw_attention(ax, a, list(src), shown[:len(a)])
            ax.set_title(f"{src!r} -> {out!r} {'(right)' if ok else '(WRONG)'}", loc="left",
                         fontsize=SUBTITLE_SIZE - 1)
            if k % 2 == 0:
                ax.set_ylabel("output character")
            if k // 2 == rows - 1:
                ax.set_xlabel("source character")
        if im is not None:
            cb = fig.colorbar(im, cax=fig.add_subplot(grid[:rows, 2]))
            cb.set_label("attention weight", fontsize=TICK_SIZE + 1)
            cb.ax.tick_params(labelsize=TICK_SIZE)
        ax = fig.add_subplot(grid[rows, :2])
        ax.axis("off")
        lines = [f"{s:<30} -> {o:<12} {'ok' if o == t else 'WRONG, want ' + t}"
                 for s, o, t in examples]
        n_wrong = sum(o != t for _, o, t in examples)
        heading = ("greedy translations of test dates, mistakes first:" if n_wrong else
                   "greedy translations of test dates (no mistake among them):")
        ax.text(0.0, 1.0, heading + "\n" + "\n".join(lines),
                va="top", ha="left", fontfamily="monospace", fontsize=TICK_SIZE,
                transform=ax.transAxes)
        fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
        return save_figure(fig, path)
