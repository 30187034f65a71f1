"""The embedded Reber grammar: next-symbol prediction, one string at a time or as a stream.

A Reber string walks the graph below from B to E, taking either edge with probability 1/2
where there are two. An embedded Reber string wraps one in B T ... T E or B P ... P E, so
that predicting the second-last symbol means remembering the second one across the whole
inner string (Cleeremans, Servan-Schreiber & McClelland 1989; Hochreiter & Schmidhuber
1997, experiment 1):

      B --> 1 --T--> 2 (S loops) --X--> 4 --S--> 6 --E-->
            1 --P--> 3 (T loops) --V--> 5 --V--> 6
                                        5 --P--> 4,  4 --X--> 3

  reber            one embedded string per sequence, the state reset in between
  continual-reber  one endless stream of embedded strings and no resets (Gers, Schmidhuber &
                   Cummins 2000, "Learning to forget"): the network has to reset itself,
                   which a cell without a forget gate (lstm1997) cannot do

A step counts as predicted when the k most probable next symbols are exactly the k legal
ones (k = 1 or 2), the criterion of Hochreiter & Schmidhuber: the output units of the
possible successors must be the most active ones. A string counts when every step does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checks import check_memory
from ..config import ModelConfig
from ..numpy.losses import log_softmax
from .base import TEST, TRAIN, VALID, Batch, Inputs, Task, TaskDefaults, check_int, held_out
from .kit import pad_next, run_batched, with_loss

SYMBOLS = "BTPSXVE"                                   # ids 0..6
ID = {s: k for k, s in enumerate(SYMBOLS)}
N_SYMBOLS = len(SYMBOLS)

# The inner Reber graph, node -> ((symbol, next node), ...); node 1 follows the B, node 7
# is past the E.
REBER_GRAPH = {1: (("T", 2), ("P", 3)), 2: (("S", 2), ("X", 4)), 3: (("T", 3), ("V", 5)),
               4: (("X", 3), ("S", 6)), 5: (("P", 4), ("V", 6)), 6: (("E", 7),)}


def _embedded_grammar():
    """The embedded grammar as a deterministic automaton over states 0..18.

    0 expects the opening B; 1 the branch T or P; per branch b (T: 2..8, P: 9..15) the
    inner B then the graph's nodes 1..6; 16 / 17 the closing T / P (the long memory);
    18 the final E, after which the automaton is back at 0 (the next string, in a stream).
    Returns (edges: state -> ((symbol id, next state), ...), names: state -> a short name).
    """
    edges = {0: ((ID["B"], 1),)}
    names = {0: "open", 1: "branch", 16: "close T", 17: "close P", 18: "end"}
    for sym, first, close in (("T", 2, 16), ("P", 9, 17)):
        edges[1] = edges.get(1, ()) + ((ID[sym], first),)
        edges[first] = ((ID["B"], first + 1),)                   # the inner B
        names[first] = f"{sym}: inner B"
        for node, out in REBER_GRAPH.items():
            state = first + node                                 # node 1..6 -> first+1..first+6
            names[state] = f"{sym}: node {node}"
            edges[state] = tuple((ID[s], close if nxt == 7 else first + nxt) for s, nxt in out)
        edges[close] = ((ID[sym], 18),)
    edges[18] = ((ID["E"], 0),)
    return edges, names


EDGES, STATE_NAMES = _embedded_grammar()
N_STATES = len(EDGES)
NEXT = np.full((N_STATES, N_SYMBOLS), -1, dtype=np.int64)        # (state, symbol) -> state
LEGAL = np.zeros((N_STATES, N_SYMBOLS), dtype=bool)              # the symbols a state allows
for _s, _out in EDGES.items():
    for _sym, _nxt in _out:
        NEXT[_s, _sym] = _nxt
        LEGAL[_s, _sym] = True
CLOSE_STATES = (16, 17)
# each step of a walk takes edge `coin` of its state (a state with one edge ignores the coin)
_WALK_SYMBOL = [[out[c % len(out)][0] for c in (0, 1)] for _, out in sorted(EDGES.items())]
_WALK_NEXT = [[out[c % len(out)][1] for c in (0, 1)] for _, out in sorted(EDGES.items())]


def walk(coins, state: int = 0):
    """A walk through the embedded grammar, one fair coin (0 or 1) per symbol.

    Returns (symbols, states): (n,) int64 ids and the automaton's state after each symbol,
    so LEGAL[states[t]] is the set of symbols that may follow symbol t. Starting at state 0
    the walk is a stream of whole embedded strings back to back.
    """
    symbols, states = [], []
    for c in np.asarray(coins).tolist():
        symbols.append(_WALK_SYMBOL[state][c])
        state = _WALK_NEXT[state][c]
        states.append(state)
    return np.array(symbols, dtype=np.int64), np.array(states, dtype=np.int64)


def embedded_strings(rng, n: int) -> list[np.ndarray]:
    """n embedded Reber strings (arrays of ids, B ... E), independent and identically drawn:
    one walk from state 0, cut after each final E."""
    out: list[np.ndarray] = []
    state, partial = 0, np.zeros(0, dtype=np.int64)
    while len(out) < n:
        symbols, states = walk(rng.integers(0, 2, size=16 * n + 64), state)
        ends = np.flatnonzero(states == 0) + 1                   # one past each final E
        pieces = np.split(symbols, ends)                         # the last one is unfinished
        if ends.size:
            out.append(np.concatenate([partial, pieces[0]]))
            out.extend(pieces[1:-1])
            partial = pieces[-1]
        else:
            partial = np.concatenate([partial, pieces[0]])
        state = int(states[-1])
    return out[:n]


def accepts(string) -> bool:
    """True when `string` (a str over BTPSXVE, or ids) is exactly one embedded Reber string."""
    ids = [ID.get(s, -1) for s in string] if isinstance(string, str) else list(string)
    state = 0
    for k, s in enumerate(ids):
        if not 0 <= s < N_SYMBOLS or NEXT[state, s] < 0:
            return False
        state = int(NEXT[state, s])
        if state == 0 and k != len(ids) - 1:                    # a second string follows
            return False
    return bool(ids) and state == 0


def decode(ids) -> str:
    return "".join(SYMBOLS[int(s)] for s in ids)


def string_batch(strings: list[np.ndarray]):
    """Pad strings into a batch: x, y (T, n) ids (input, next symbol), mask (T, n), lengths
    (n,), legal (T, n, 7) (the symbols allowed after each input) and close (T, n) (the step
    that must recall the branch symbol)."""
    x, y, mask, lengths = pad_next(strings)
    states = np.zeros_like(x)
    for j, s in enumerate(strings):
        states[:lengths[j], j] = walk_states(s[:-1])
    legal = LEGAL[states] & mask[..., None]
    return x, y, mask, lengths, legal, np.isin(states, CLOSE_STATES) & mask


def walk_states(ids, state: int = 0) -> np.ndarray:
    """The automaton's state after each symbol of a grammatical sequence of ids."""
    out = np.empty(len(ids), dtype=np.int64)
    for k, s in enumerate(np.asarray(ids).tolist()):
        state = int(NEXT[state, s])
        out[k] = state
    return out


def score(logp, y, legal, mask):
    """Per step: (right, nll). right: the |legal| most probable symbols are the legal ones
    (strictly: every legal symbol more probable than every other); nll of the actual next."""
    low = np.where(legal, logp, np.inf).min(-1)
    high = np.where(legal, -np.inf, logp).max(-1)
    right = (low > high) & mask
    nll = np.where(mask, -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0], 0.0)
    return right, nll


def bigram_logp(pairs_prev, pairs_next) -> np.ndarray:
    """(7, 7) log p(next | previous symbol) from counts, with half a count added to each."""
    counts = np.full((N_SYMBOLS, N_SYMBOLS), 0.5)
    np.add.at(counts, (pairs_prev, pairs_next), 1.0)
    return np.log(counts / counts.sum(1, keepdims=True))


def reference_logp(legal, x, bigram) -> dict[str, np.ndarray]:
    """The baselines' log probabilities for inputs x (...) with legal sets (..., 7)."""
    with np.errstate(divide="ignore"):                           # log 0 for illegal symbols
        grammar = np.log(legal / np.maximum(legal.sum(-1, keepdims=True), 1))
    return {"uniform": np.full(legal.shape, -np.log(N_SYMBOLS)),
            "bigram": bigram[x],
            "grammar": grammar}


class Reber(Task):
    name = "reber"
    summary = ("next-symbol prediction on embedded Reber strings (Hochreiter & Schmidhuber "
               "1997, experiment 1); a string counts when every step's legal set is predicted")
    loss = "xent"
    metric = "accuracy"                # whole strings predicted (ranks models; ablation)
    lower_is_better = False
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 32},
                            train={"steps": 1500, "batch_size": 32, "lr": 1e-2,
                                   "eval_every": 100})
    options = {"test_size": (1000, "held-out strings for the test metrics")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        n_test = check_int("test_size", self.opts["test_size"], 1)
        self.split = held_out(seed, lambda rng, n: string_batch(embedded_strings(rng, n)),
                              256, n_test, item_bytes=4000)   # ids, mask, legal: ~50 steps

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=N_SYMBOLS, output_size=N_SYMBOLS, vocab_size=N_SYMBOLS,
                           readout="sequence", **settings)

    def train_batch(self, step, batch_size):
        strings = embedded_strings(np.random.default_rng([self.seed, TRAIN, step]), batch_size)
        x, y, mask, lengths, _, _ = string_batch(strings)
        return Batch(x=x, y=y, mask=mask.astype(np.float64), lengths=lengths)

    def _logp(self, predictor, split):
        x, _, _, lengths, _, _ = self.split[split]
        return log_softmax(run_batched(predictor, x, lengths))   # (T, N, 7)

    def _metrics(self, logp, split):
        x, y, mask, _, legal, close = self.split[split]
        right, nll = score(logp, y, legal, mask)
        return {"accuracy": float(np.all(right | ~mask, axis=0).mean()),   # whole strings
                "symbol_accuracy": float(right.sum() / mask.sum()),
                "memory_accuracy": float(right[close].mean()),   # the closing T / P
                "nll": float(nll.sum() / mask.sum())}

    def evaluate(self, predictor, split):
        return with_loss(self._metrics(self._logp(predictor, split), split), split)

    def _bigram(self):
        x, y = [], []
        for step in range(1, 9):                                 # 2048 training strings
            b = self.train_batch(step, 256)
            x.append(b.x[b.mask > 0])
            y.append(b.y[b.mask > 0])
        return bigram_logp(np.concatenate(x), np.concatenate(y))

    def baselines(self):
        x, _, _, _, legal, _ = self.split["test"]
        refs = reference_logp(legal, x, self._bigram())
        return {name: self._metrics(logp, "test") for name, logp in refs.items()}

    def examples(self, split="test"):
        """The split's strings as evaluate reads them: (T, N) int64 symbol ids, every symbol
        but the final E (the model predicts each next one), 0 past each end, with their
        lengths; each step labelled with its letter."""
        x, _, _, lengths, _, _ = self.split[split]
        return Inputs(x=x, steps=[list(decode(x[:n, j])) for j, n in enumerate(lengths)],
                      lengths=lengths)

    def figures(self, predictor, folder, test, baselines):
        x, y, mask, lengths, legal, _ = self.split["test"]
        logp = self._logp(predictor, "test")
        probs = np.exp(logp)
        right, _ = score(logp, y, legal, mask)
        # the first test string of each branch (T, then P), and the longest string
        picks = [int(np.flatnonzero(x[1] == ID[b])[0]) for b in "TP" if np.any(x[1] == ID[b])]
        longest = int(np.argmax(lengths))
        picks += [longest] if longest not in picks else []
        panels = []
        for j in picks:
            n = lengths[j]
            ok = bool(right[:n, j].all())
            panels.append({"probs": probs[:n, j], "legal": legal[:n, j], "inputs": x[:n, j],
                           "targets": y[:n, j], "right": right[:n, j],
                           "label": f"test string {j}: {decode(np.append(x[:n, j], y[n - 1, j]))}"
                                    f"  ({'predicted' if ok else 'missed'})"})
        title = (f"embedded Reber: next-symbol probabilities ({predictor.config.variant}); "
                 f"{test['accuracy']:.1%} of {x.shape[1]} test strings predicted")
        return [symbol_figure(Path(folder) / "predictions.png", panels, title=title)]


def symbol_figure(path, panels, *, title):
    """Next-symbol probabilities step by step, one heatmap per panel: the legal symbols
    framed, the symbol that came marked, the steps predicted wrongly flagged above."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from ..viz.figures import GATE_CMAP, LEGEND_SIZE, SUBTITLE_SIZE, TICK_SIZE, new_figure, save_figure

    with np.errstate(all="ignore"):       # as viz.figures: odd values must not abort a picture
        fig = new_figure(0.9 + 2.7 * len(panels))
        grid = fig.add_gridspec(len(panels), 2, width_ratios=[1.0, 0.015])
        im = None
        for r, p in enumerate(panels):
            ax = fig.add_subplot(grid[r, 0])
            T = len(p["inputs"])
            im = ax.imshow(p["probs"].T, aspect="auto", interpolation="nearest", cmap=GATE_CMAP,
                           vmin=0, vmax=1)
            for t, s in zip(*np.nonzero(p["legal"])):
                ax.add_patch(Rectangle((t - 0.5, s - 0.5), 1, 1, fill=False, edgecolor="white",
                                       linewidth=1.6))
            ax.plot(np.arange(T), p["targets"], linestyle="none", marker="o", markersize=4,
                    color="#ff7f0e")
            wrong = np.flatnonzero(~p["right"])
            if wrong.size:                     # (an empty unclipped line upsets the layout)
                ax.plot(wrong, np.full(wrong.size, -0.9), linestyle="none", marker="v",
                        markersize=7, color="#d62728", clip_on=False)
            ax.set_ylim(N_SYMBOLS - 0.5, -1.2)
            ax.set_yticks(range(N_SYMBOLS), list(SYMBOLS))
            step = max(1, int(np.ceil(T / 60)))
            ticks = np.arange(0, T, step)
            ax.set_xticks(ticks, [SYMBOLS[int(p["inputs"][t])] for t in ticks])
            ax.tick_params(labelsize=TICK_SIZE)
            ax.set_ylabel("next symbol")
            ax.set_title(p["label"], loc="left", fontsize=SUBTITLE_SIZE)
        ax.set_xlabel("input symbol at each step (the model predicts the one after it)")
        cb = fig.colorbar(im, cax=fig.add_subplot(grid[:, 1]))
        cb.set_label("predicted probability", fontsize=TICK_SIZE + 1)
        cb.ax.tick_params(labelsize=TICK_SIZE)
        handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor="#555555", linewidth=1.6),
                   Line2D([], [], linestyle="none", marker="o", markersize=5, color="#ff7f0e"),
                   Line2D([], [], linestyle="none", marker="v", markersize=7, color="#d62728")]
        fig.legend(handles, ["legal next symbols (framed)", "the symbol that came",
                             "step predicted wrongly"], loc="outside lower center", ncols=3,
                   fontsize=LEGEND_SIZE, frameon=False)
        fig.suptitle(title, fontsize=SUBTITLE_SIZE + 1)
        return save_figure(fig, path)


# --- continual ------------------------------------------------------------------------------
STREAM_CHUNK = 10_000          # symbols per predictor call on a long stream


class ContinualReber(Task):
    name = "continual-reber"
    summary = ("one endless stream of embedded Reber strings, no resets (Gers et al. 2000, "
               "'Learning to forget'): truncated BPTT in training, one long test stream")
    loss = "xent"
    metric = "accuracy"                # symbols predicted
    lower_is_better = False
    # 8 cells as Gers et al.'s 4 blocks of 2: lstm learns to reset itself and predicts the
    # whole test stream; lstm1997, which solves `reber` at this size, fails on the stream
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 8},
                            train={"steps": 3000, "batch_size": 32, "lr": 1e-2,
                                   "eval_every": 250})
    options = {"window": (100, "symbols per training window (truncated BPTT length); the "
                               "state carries from one window to the next"),
               "reset_every": (50, "windows per training stream: the state starts from zero "
                                   "every reset_every windows, never within a stream"),
               "test_symbols": (100_000, "length of the one test stream"),
               "valid_symbols": (10_000, "length of the validation stream")}

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        self.window = check_int("window", self.opts["window"], 1)
        self.reset_every = check_int("reset_every", self.opts["reset_every"], 1)
        self.lengths = {"valid": check_int("valid_symbols", self.opts["valid_symbols"], 2),
                        "test": check_int("test_symbols", self.opts["test_symbols"], 2)}
        # symbols and states (int64) of the held-out streams and of one training stream
        check_memory("the validation, test and training streams",
                     32 * (sum(self.lengths.values()) + self.window * self.reset_every),
                     "lower valid_symbols, test_symbols, window or reset_every")
        self._streams = {}                                       # split -> (symbols, states)
        self._segment = (None, None)                             # (key, training streams)

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=N_SYMBOLS, output_size=N_SYMBOLS, vocab_size=N_SYMBOLS,
                           readout="sequence", **settings)

    # --- data ------------------------------------------------------------------------------
    def training_streams(self, segment: int, batch_size: int) -> np.ndarray:
        """(window * reset_every + 1, batch_size) ids: the streams of one training segment."""
        key = (segment, batch_size)
        if self._segment[0] != key:                              # memoised: a pure function
            rng = np.random.default_rng([self.seed, TRAIN, segment])
            coins = rng.integers(0, 2, size=(batch_size, self.window * self.reset_every + 1))
            self._segment = (key, np.stack([walk(c)[0] for c in coins], axis=1))
        return self._segment[1]

    def train_batch(self, step, batch_size):
        segment, k = divmod(step - 1, self.reset_every)
        s = self.training_streams(segment, batch_size)
        a = k * self.window
        return Batch(x=s[a:a + self.window], y=s[a + 1:a + self.window + 1], carry=k > 0)

    def stream(self, split: str):
        """(symbols, states) of the split's one long stream, states after each symbol."""
        if split not in self._streams:
            k = {"valid": VALID, "test": TEST}[split]
            coins = np.random.default_rng([self.seed, k]).integers(0, 2, size=self.lengths[split])
            self._streams[split] = walk(coins)
        return self._streams[split]

    def examples(self, split="test"):
        """The split's stream as evaluate reads it: one sequence (N - 1, 1) of int64 symbol
        ids, every symbol but the last, never reset; each step labelled with its letter."""
        symbols, _ = self.stream(split)
        return Inputs(x=symbols[:-1, None], steps=[list(decode(symbols[:-1]))])

    # --- evaluation ------------------------------------------------------------------------
    def _logp(self, predictor, split):
        """(N - 1, 7): log p(next symbol) at every step of the stream, one run, no resets."""
        symbols, _ = self.stream(split)
        x, state, out = symbols[:-1, None], None, []
        for a in range(0, len(x), STREAM_CHUNK):
            logits, state = predictor.run(x[a:a + STREAM_CHUNK], state)
            out.append(log_softmax(np.asarray(logits[:, 0], dtype=np.float64)))
        return np.concatenate(out)

    def _score(self, logp, split):
        """Per predicted step: right (N - 1,), nll (N - 1,), and which string it belongs to."""
        symbols, states = self.stream(split)
        y, legal = symbols[1:], LEGAL[states[:-1]]
        right, nll = score(logp, y, legal, np.ones(len(y), dtype=bool))
        # string j starts at the j-th opening B; the prediction of symbol t + 1 belongs to the
        # string of symbol t + 1 (so the B of the next string is judged with that string)
        before = np.concatenate([[0], states[:-1]])
        string_of = np.cumsum(before == 0)[1:] - 1               # (N - 1,)
        complete = int(np.sum(states == 0))                      # strings that reached their E
        return right, nll, string_of, complete

    def _metrics(self, logp, split):
        right, nll, string_of, complete = self._score(logp, split)
        inside = string_of < complete                            # judge whole strings only
        bad = np.zeros(complete, dtype=bool)
        np.logical_or.at(bad, string_of[inside], ~right[inside])
        first = int(np.argmax(bad)) if bad.any() else complete
        return {"accuracy": float(right.mean()),
                "strings_until_error": first,
                "string_accuracy": float(1.0 - bad.mean()) if complete else 0.0,
                "nll": float(nll.mean())}

    def evaluate(self, predictor, split):
        return with_loss(self._metrics(self._logp(predictor, split), split), split)

    def baselines(self):
        s = self.training_streams(0, 32)                         # training data: 32 streams
        bigram = bigram_logp(s[:-1].ravel(), s[1:].ravel())
        symbols, states = self.stream("test")
        refs = reference_logp(LEGAL[states[:-1]], symbols[:-1], bigram)
        return {name: self._metrics(logp, "test") for name, logp in refs.items()}

    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import cell_state_norm

        folder = Path(folder)
        variant = predictor.config.variant
        symbols, states = self.stream("test")
        logp = self._logp(predictor, "test")
        right = self._score(logp, "test")[0]
        trace = predictor.trace(symbols[:-1, None])
        c = np.asarray(trace["l0"]["c"], dtype=np.float64)[:, 0]             # (N - 1, H)
        with np.errstate(over="ignore", invalid="ignore"):
            norm = np.linalg.norm(c, axis=-1)
        paths = [cell_state_norm(
            folder / "cell_state.png", [norm],
            labels=[f"{variant}: {test['accuracy']:.2%} of symbols predicted; "
                    f"strings before the first mistake: {test['strings_until_error']}"],
            title=f"continual embedded Reber: the cell state over one stream of {len(norm)} "
                  "symbols, never reset",
            ylabel="‖c_t‖ of layer 0 (log scale)")]
        # the start of the stream, the first mistake (when it lies beyond the start) and the end
        wrong = np.flatnonzero(~right)
        probs, legal, width = np.exp(logp), LEGAL[states[:-1]], 60
        windows = [(0, "the start of the test stream")]
        if wrong.size and wrong[0] >= width:
            windows.append((int(wrong[0]) - width + 15, f"the first mistake, at step {wrong[0]}"))
        n_wrong = f"{wrong.size} mistakes in all" if wrong.size else "no mistake in all"
        windows.append((max(0, len(right) - width), f"the end of the test stream ({n_wrong})"))
        panels = []
        for a, what in windows:
            b = min(a + width, len(right))
            panels.append({"probs": probs[a:b], "legal": legal[a:b], "inputs": symbols[a:b],
                           "targets": symbols[a + 1:b + 1], "right": right[a:b],
                           "label": f"steps {a}..{b - 1}: {what}"})
        paths.append(symbol_figure(
            folder / "stream.png", panels,
            title=f"continual embedded Reber: next-symbol probabilities ({variant})"))
        return paths
