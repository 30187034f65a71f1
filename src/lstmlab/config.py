"""A model described as data, so that each engine can build it and a file can carry it.

A task says what goes in and what comes out (`input_size`, `output_size`, token ids or
features, a head on every step or on the last one); the user picks the recurrent stack.
`lstmlab.numpy.SequenceModel(config)` and `lstmlab.torch.SequenceModel(config)` build the
same network with the same parameter names:

    embedding.weight (vocab_size, input_size)     only when the inputs are token ids
    rnn.<PyTorch RNN names>                        the recurrent stack
    head.weight (output_size, D*R), head.bias      a linear read-out
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .checks import check_bool, check_choice, check_int, check_memory, check_real, count_text, listed, shown
from .families import family_of
from .spec import variant as make_spec

READOUTS = ("sequence", "last", "mean")
ARCHITECTURES = ("sequence", "seq2seq")
RECURRENT_INITS = ("uniform", "orthogonal", "identity")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ModelConfig:
    input_size: int                  # features per step (the embedding width with token ids)
    output_size: int                 # outputs of the head per read-out
    variant: str = "lstm"            # a name from lstmlab.VARIANTS, flags composed with '+'
    hidden_size: int = 64            # units per layer and direction
    num_layers: int = 1              # stacked recurrent layers
    bidirectional: bool = False      # a second direction per layer, outputs concatenated
    proj_size: int = 0               # LSTM only: h projected to this width (Sak et al. 2014)
    vocab_size: int = 0              # > 0: inputs are token ids, embedded to input_size
    readout: str = "sequence"        # "sequence": head on every step; "last": on the final state;
                                     # "mean": on the top outputs averaged over each sequence's steps
    forget_bias: float | None = None  # None: PyTorch's init; else the forget-gate bias value
    recurrent_init: str = "uniform"  # "uniform" (PyTorch), "orthogonal" or "identity"
    dropout: float = 0.0             # between layers (both engines' torch path: torch only)
    recurrent_dropout: float = 0.0   # torch engine: variational dropout on h (Gal & Ghahramani)
    zoneout: float = 0.0             # torch engine: keep units of h, c with this probability
    weight_drop: float = 0.0         # torch engine: DropConnect on recurrent weights
    dtype: str = "float32"           # "float32" or "float64"
    architecture: str = "sequence"   # "sequence": one stack and a head; "seq2seq": encoder-decoder
                                     # with attention (Seq2Seq): vocab_size = source vocabulary,
                                     # output_size = target vocabulary, input_size = embedding width

    def __post_init__(self):
        # every field checked for type and range (a config may come from a file or the
        # command line), numbers normalised to plain int and float for the saved JSON
        for name, low in (("input_size", 1), ("output_size", 1), ("hidden_size", 1),
                          ("num_layers", 1), ("proj_size", 0), ("vocab_size", 0)):
            object.__setattr__(self, name, check_int(getattr(self, name), name, low))
        object.__setattr__(self, "bidirectional", check_bool(self.bidirectional, "bidirectional"))
        for name, choices in (("readout", READOUTS), ("dtype", DTYPES), ("architecture", ARCHITECTURES),
                              ("recurrent_init", RECURRENT_INITS)):
            check_choice(getattr(self, name), name, choices)
        for name in ("dropout", "recurrent_dropout", "zoneout", "weight_drop"):
            object.__setattr__(self, name, check_real(getattr(self, name), name, 0, 1))
        if self.forget_bias is not None:
            object.__setattr__(self, "forget_bias", check_real(self.forget_bias, "forget_bias"))
        if not isinstance(self.variant, str):
            raise ValueError(f"variant must be a variant's name (a string), got {shown(self.variant)}")
        if self.architecture == "seq2seq" and (not self.vocab_size or self.readout != "sequence"):
            raise ValueError("a seq2seq model reads token ids (vocab_size > 0) and reads out every "
                             f"step (readout 'sequence'); got vocab_size {self.vocab_size}, "
                             f"readout {self.readout!r}")
        family = family_of(make_spec(self.variant))              # a clear error for a bad name
        if (self.proj_size and not family.projection) or \
                (self.forget_bias is not None and not family.forget_bias):
            raise ValueError(f"proj_size and forget_bias apply to LSTM variants only, "
                             f"not {self.variant!r}")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be 0 or below hidden_size ({self.hidden_size}), "
                             f"got {self.proj_size}")
        check_memory(f"the model's {count_text(self.min_params)} (or more) parameters",
                     self.min_params * (4 if self.dtype == "float32" else 8),
                     "choose smaller sizes (hidden_size, num_layers, vocab_size, input_size)")

    @property
    def min_params(self) -> int:
        """At least how many numbers the model's parameters hold: every weight matrix and bias
        each variant has (peepholes and layer-norm gains come on top). Cheap to compute from
        the sizes alone, so absurd sizes are refused before anything is allocated."""
        G, H, P = self.spec.num_gates, self.hidden_size, self.proj_size
        D = 2 if self.bidirectional else 1
        R = P or H                                               # the width of h
        if self.architecture == "seq2seq":                       # decoder: one direction, D*H units
            W = D * R
            return (stack_params(G, self.input_size, H, P, self.num_layers, D)
                    + stack_params(G, self.input_size, D * H, D * P, self.num_layers, 1)
                    + (self.vocab_size + self.output_size) * self.input_size   # the embeddings
                    + 3 * W * W + W + self.output_size * (W + 1))   # attention, combine, head
        return (self.vocab_size * self.input_size + stack_params(G, self.input_size, H, P,
                                                                  self.num_layers, D)
                + self.output_size * (D * R + 1))

    @property
    def spec(self):
        return make_spec(self.variant)

    @property
    def regularised(self) -> bool:
        """True when a regulariser only the torch engine has is switched on."""
        return any((self.dropout, self.recurrent_dropout, self.zoneout, self.weight_drop))

    def rnn_kwargs(self) -> dict:
        """Arguments for an engine's LSTM/GRU/RNN class (which class: `spec.family`)."""
        kw = dict(num_layers=self.num_layers, bidirectional=self.bidirectional,
                  variant=self.variant, recurrent_init=self.recurrent_init)
        family = family_of(self.spec)
        if family.projection:
            kw["proj_size"] = self.proj_size
        if family.forget_bias:
            kw["forget_bias"] = self.forget_bias
        return kw

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return _from_dict(cls, d, "model")


SCHEDULES = ("cosine", "step", "plateau", "constant")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000                # optimizer updates
    batch_size: int = 32             # sequences per update
    lr: float = 1e-2                 # peak learning rate
    optimizer: str = "adam"          # "adam", "sgd" (momentum 0.9) or "rmsprop"
    schedule: str = "cosine"         # cosine to 0, "step" (x0.1 at 1/2 and 3/4), "plateau", "constant"
    clip: float = 1.0                # global gradient-norm clip; 0 turns it off
    eval_every: int = 100            # steps between validations (and checkpoints)
    patience: int = 0                # early stopping: evaluations without improvement; 0 = off
    plateau_patience: int = 2        # "plateau": halve the lr after this many flat evaluations
    seed: int = 0                    # weights, data order and dropout all follow from it
    precision: str = "fp32"          # "bf16": the torch engine's forward under autocast (CPU or
                                     # GPU); "fp16": the same in float16 with a gradient scaler (GPU)

    def __post_init__(self):
        for name, low in (("steps", 1), ("batch_size", 1), ("eval_every", 1), ("patience", 0),
                          ("plateau_patience", 1), ("seed", 0)):
            object.__setattr__(self, name, check_int(getattr(self, name), name, low))
        object.__setattr__(self, "lr", check_real(self.lr, "lr", 0, open_low=True))
        object.__setattr__(self, "clip", check_real(self.clip, "clip", 0))
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.precision, "precision", PRECISIONS)

    def lr_at(self, step: int, plateau_factor: float = 1.0) -> float:
        """The learning rate of step `step` (1-based); pure, so a resumed run gets the same."""
        if self.schedule == "cosine":
            import math

            return self.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / self.steps))
        if self.schedule == "step":
            return self.lr * (0.1 if step > self.steps // 2 else 1.0) * \
                (0.1 if step > 3 * self.steps // 4 else 1.0)
        if self.schedule == "plateau":
            return self.lr * plateau_factor
        return self.lr

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return _from_dict(cls, d, "training")


def stack_params(G: int, I: int, H: int, P: int, L: int, D: int) -> int:
    """The weights and biases of L layers x D directions of cells with G gate blocks of H
    units, input I to the first layer, outputs projected to P (0: none): what every variant
    of a recurrent stack holds at least (peepholes and layer-norm gains come on top)."""
    R = P or H

    def layer(inputs):                                           # W (G*H, in), R (G*H, R), 2 biases
        return D * (G * H * (inputs + R + 2) + P * H)

    return layer(I) + (L - 1) * layer(D * R)


def _from_dict(cls, d: dict, what: str):
    """`cls(**d)`, with one line for a `d` that is not a mapping, has unknown or lacks
    required settings."""
    if not isinstance(d, dict):
        raise ValueError(f"the {what} settings must be a mapping of names to values, "
                         f"got a {type(d).__name__}")
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted((k for k in d if k not in known), key=str)
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {listed(unknown)}; known: {', '.join(sorted(known))}")
    missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{what} setting(s) {', '.join(missing)} missing")
    return cls(**d)
