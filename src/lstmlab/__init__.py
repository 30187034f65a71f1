"""lstmlab: a laboratory for Long Short-Term Memory networks.

    import lstmlab
    lstmlab.VARIANTS                      # every cell variant, by name
    m = lstmlab.numpy.LSTM(3, 16, variant="peephole")
    y, (h, c) = m(x)                      # x: (T, B, 3)
    lstmlab.save(m, "m.safetensors"); lstmlab.load("m.safetensors", engine="torch")

`lstmlab.torch` (the PyTorch engine) is imported on first use, so the core needs no torch.
"""

import importlib

from . import numpy
from ._version import __version__
from .io.files import load, save
from .spec import VARIANTS, CellSpec, variant

__all__ = ["VARIANTS", "CellSpec", "variant", "numpy", "torch", "save", "load", "__version__"]


def __getattr__(name):
    if name == "torch":                                          # lazy: importing torch takes seconds
        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'lstmlab' has no attribute {name!r}")
