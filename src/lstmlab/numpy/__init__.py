"""The glass-box engine: every variant in NumPy, with hand-written backpropagation.

`reference` holds one step of every cell written as the equations (what to read);
`cells` the same steps tuned for speed (what runs, unless a model is built with fast=False).
"""

from . import reference
from .gradcheck import gradcheck
from .losses import ctc_loss, gaussian_nll_loss, mse_loss, softmax_cross_entropy
from .nn import Embedding, Linear
from .optim import SGD, Adam, RMSprop, clip_grad_norm
from .recurrent import GRU, LSTM, RNN, Recurrent

__all__ = ["LSTM", "GRU", "RNN", "Recurrent", "Linear", "Embedding", "mse_loss", "ctc_loss",
           "gaussian_nll_loss", "softmax_cross_entropy", "SGD", "Adam", "RMSprop", "clip_grad_norm",
           "gradcheck", "reference"]
