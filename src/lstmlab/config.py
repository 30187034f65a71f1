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

from .spec import variant as make_spec

READOUTS = ("sequence", "last", "mean")
ARCHITECTURES = ("sequence", "seq2seq")


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
        for name in ("input_size", "output_size", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for name in ("dropout", "recurrent_dropout", "zoneout", "weight_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture == "seq2seq" and (not self.vocab_size or self.readout != "sequence"):
            raise ValueError("a seq2seq model reads token ids (vocab_size > 0) and reads out every "
                             f"step (readout 'sequence'); got vocab_size {self.vocab_size}, "
                             f"readout {self.readout!r}")
        family = make_spec(self.variant).family                  # a clear error for a bad name
        if family != "lstm" and (self.proj_size or self.forget_bias is not None):
            raise ValueError(f"proj_size and forget_bias apply to LSTM variants only, "
                             f"not {self.variant!r}")

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
        if self.spec.family == "lstm":
            kw.update(proj_size=self.proj_size, forget_bias=self.forget_bias)
        return kw

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return _from_dict(cls, d, "model")


SCHEDULES = ("cosine", "step", "plateau", "constant")
OPTIMIZERS = ("adam", "sgd", "rmsprop")


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

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.clip < 0 or self.patience < 0 or self.plateau_patience < 1:
            raise ValueError("clip and patience must be >= 0 and plateau_patience >= 1")

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
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _from_dict(cls, d, "training")


def _from_dict(cls, d: dict, what: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; known: {', '.join(sorted(known))}")
    return cls(**d)
