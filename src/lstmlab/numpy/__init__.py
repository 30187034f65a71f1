"""The glass-box engine: every variant in NumPy, with hand-written backpropagation."""

from .recurrent import GRU, LSTM, RNN, Recurrent

__all__ = ["LSTM", "GRU", "RNN", "Recurrent"]
