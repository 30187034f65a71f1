"""lstmlab: a laboratory for Long Short-Term Memory networks.

    import lstmlab
    lstmlab.VARIANTS                      # every cell variant, by name
    m = lstmlab.numpy.LSTM(3, 16, variant="peephole")
    y, (h, c) = m(x)                      # x: (T, B, 3)
"""

from . import numpy
from .spec import VARIANTS, CellSpec, variant

__version__ = "0.1.0"
__all__ = ["VARIANTS", "CellSpec", "variant", "numpy", "__version__"]
