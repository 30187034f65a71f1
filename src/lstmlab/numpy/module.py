"""What every NumPy model piece shares: named weights, strict loading, checked inputs."""

from __future__ import annotations

import numpy as np

from ..checks import check_numbers, shown


class Module:
    """A piece with weights in `params` ({name: ndarray}) and a strict `load_state_dict`."""

    params: dict[str, np.ndarray]
    dtype: np.dtype

    @property
    def num_params(self) -> int:
        return sum(v.size for v in self.params.values())

    def load_state_dict(self, mapping) -> None:
        """Copy weights in by name (strict: every name, no extra, same shapes).

        Values may be any array-like (a torch state dict converted with .numpy() loads as is).
        Nothing is copied unless every tensor checks out.
        """
        names = set(mapping)
        missing = [n for n in self.params if n not in names]
        unknown = sorted(names - set(self.params))
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                    ([f"unknown {', '.join(unknown)}"] if unknown else [])
            raise ValueError(f"state dict does not match {self!r}: {'; '.join(parts)}")
        arrays = {}
        for name, target in self.params.items():
            v = self._as_array(mapping[name], name)
            if v.shape != target.shape:
                raise ValueError(f"{name} has shape {v.shape}, the model expects {target.shape}")
            arrays[name] = v
        for name, v in arrays.items():
            np.copyto(self.params[name], v)

    def _as_array(self, a, what):
        """`a` as an array of the model's dtype; a clear error for non-numbers, NaN and inf, and
        values beyond the model's dtype (float64 input to a float32 model)."""
        a = check_numbers(np.asarray(a), what, self.dtype)
        return a.astype(self.dtype, copy=False)


def check_dtype(dtype) -> np.dtype:
    try:
        ok = np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))
    except TypeError:                                            # not a dtype at all: 3, "fp32"
        ok = False
    if not ok:
        raise ValueError(f"dtype must be float32 or float64, got {shown(dtype)}")
    return np.dtype(dtype)
