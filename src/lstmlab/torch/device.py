"""Where and in which precision the models live: device names and dtypes, checked."""

from __future__ import annotations

import numpy as np
import torch

from ..numpy.module import check_dtype

_TORCH_TO_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
_NUMPY_TO_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """A torch.device from "cpu", "cuda", "cuda:N" or "auto" (CUDA when available, else CPU).

    Raises ValueError, in one line, for an unknown name or a GPU that is not there.
    """
    if name is None or (isinstance(name, str) and name.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(name, torch.device):
        dev = name
    else:
        try:
            dev = torch.device(name.strip().lower() if isinstance(name, str) else name)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(dev)!r} was asked for but CUDA is not available "
                             f"(torch {torch.__version__}, no GPU visible or a CPU-only build); "
                             "use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(dev)!r} was asked for but only "
                             f"{torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(dev)!r} was asked for but MPS is not available; "
                             "use device='cpu' or 'auto'")
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}")
    return dev


def numpy_dtype(dtype) -> np.dtype:
    """float32 or float64 as a NumPy dtype, from a NumPy or torch dtype (or its name)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _TORCH_TO_NUMPY:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        dtype = _TORCH_TO_NUMPY[dtype]
    try:
        return check_dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None


def torch_dtype(dtype) -> torch.dtype:
    """float32 or float64 as a torch dtype, from a NumPy or torch dtype (or its name)."""
    return _NUMPY_TO_TORCH[numpy_dtype(dtype)]
