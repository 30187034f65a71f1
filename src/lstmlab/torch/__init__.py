"""The PyTorch engine: every variant of `lstmlab.VARIANTS` as a torch.nn.Module.

    import lstmlab.torch
    m = lstmlab.torch.LSTM(3, 16, variant="peephole", zoneout=0.1, device="auto")
    y, (h, c) = m(x)                      # x: (T, B, 3) tensor

The models take the arguments of `lstmlab.numpy.LSTM` / `GRU` / `RNN` (and start from the
same weights for the same seed), keep their parameters under the same state-dict names, and
compute the same equations. `lstm`, `gru`, `rnn_tanh` and `rnn_relu` run on PyTorch's fused
kernels (cuDNN on a GPU); the other variants, and the regularisers nn.LSTM lacks, run on one
generic cell -> layer -> stack implementation written like the papers.

This package imports torch; `import lstmlab` does not import it.
"""

from ..threads import apply_to_torch
from .device import resolve_device
from .model import SequenceModel
from .recurrent import GRU, LSTM, RNN, Recurrent

__all__ = ["LSTM", "GRU", "RNN", "Recurrent", "SequenceModel", "resolve_device"]

apply_to_torch()     # a training that chose its thread count before torch was loaded
