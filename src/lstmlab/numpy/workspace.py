"""A pool of large scratch arrays, reused from one call to the next.

A fresh multi-megabyte array costs the kernel a page fault per page and the zeroing of the
memory: on a machine like this one about 10 ms per 50 MB, more than the arithmetic that
fills it. PyTorch avoids that cost with a caching allocator; the NumPy engine takes its
per-call buffers (input projections, per-step gates, state histories) from this pool and
gives them back when the forward cache that holds them is gone.

Its arrays start on a 64-byte boundary, as torch's allocator's do: NumPy's start on 16, and a
matrix product writing into an array at 48 bytes past a cache line took 3.3 ms against 1.1
ms here (torch.mm, (3200, 32) (32, 512), MKL).
"""

from __future__ import annotations

import weakref

import numpy as np

_MIN_SIZE = 1 << 16   # elements; smaller arrays are cheap to allocate and not worth pooling
_PER_SIZE = 8         # free arrays kept per (dtype, size): a layernorm layer takes 5 alike
_SIZES = 32           # distinct (dtype, size) kept; the oldest goes first
_ALIGN = 64           # bytes: a cache line, and what AVX-512 loads want


class Workspace:
    def __init__(self):
        self._free: dict[tuple, list[np.ndarray]] = {}

    def empty(self, shape, dtype) -> np.ndarray:
        """An uninitialised array, from the pool when one of this size is free."""
        size = int(np.prod(shape))
        free = self._free.get((np.dtype(dtype), size))
        if free:
            return free.pop().reshape(shape)
        return aligned_empty(shape, dtype)

    def give_back(self, arrays) -> None:
        for a in arrays:
            if a.size < _MIN_SIZE:
                continue
            key = (a.dtype, a.size)
            free = self._free.pop(key, [])                # re-inserted: now the newest size
            if len(free) < _PER_SIZE:
                free.append(a)
            self._free[key] = free
        while len(self._free) > _SIZES:
            del self._free[next(iter(self._free))]

    def lease(self) -> Lease:
        return Lease(self)


def aligned_empty(shape, dtype) -> np.ndarray:
    """np.empty whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class Lease:
    """Arrays taken for one call; they return to the pool when `owner` is garbage collected
    (or at once with `end()`). Nothing returned to the user may be a view of them."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.arrays: list[np.ndarray] = []

    def __call__(self, shape, dtype) -> np.ndarray:
        a = self.ws.empty(shape, dtype)
        self.arrays.append(a)
        return a

    def bind(self, owner) -> None:
        weakref.finalize(owner, self.ws.give_back, self.arrays)

    def end(self) -> None:
        self.ws.give_back(self.arrays)
        self.arrays = []
