"""Finite-difference check of the hand-written backward pass, for any variant.

The loss is a random linear function of everything the model returns,
L = <wy, y> + <ws, final state>, so its gradient is exactly what `backward(cache, wy, ws)`
computes. Each input, weight and initial-state entry is nudged by +-eps and the central
difference (L(+eps) - L(-eps)) / 2 eps is compared with the analytic gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spec import CellSpec
from ..spec import variant as make_spec
from .recurrent import stack_class

TOLERANCE = 1e-6  # worst relative error allowed in float64


@dataclass
class GradcheckResult:
    variant: str
    errors: dict[str, float] = field(default_factory=dict)  # tensor name -> relative error

    @property
    def worst(self) -> float:
        return max(self.errors.values())

    @property
    def worst_tensor(self) -> str:
        return max(self.errors, key=lambda name: self.errors[name])

    @property
    def passed(self) -> bool:
        return self.worst < TOLERANCE


def relative_error(analytic, numeric) -> float:
    """max |a - n| over the tensor, relative to the larger of the two tensors' max |.|."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    return float(np.abs(analytic - numeric).max() / scale) if scale > 0 else 0.0


def _parts(state) -> list:
    """A state (h alone, or a tuple (h, c, ...)) as a list of its arrays."""
    return [state] if isinstance(state, np.ndarray) else list(state)


def gradcheck(spec: str | CellSpec, *, num_layers=2, bidirectional=True, proj_size=0,
              steps=5, batch=3, input_size=3, hidden_size=4, eps=1e-6, seed=0) -> GradcheckResult:
    """Compare backward() with central differences in float64 on a small random problem.

    Sequences have different lengths (one full, the others shorter), the initial state is
    random, and every tensor that the loss depends on is checked: weights, x, initial state.
    """
    spec = make_spec(spec)
    rng = np.random.default_rng(seed)
    kw = {"proj_size": proj_size} if proj_size else {}
    model = stack_class(spec)(input_size, hidden_size, num_layers=num_layers,
                              bidirectional=bidirectional, variant=spec,
                              dtype=np.float64, seed=seed, **kw)
    for v in model.params.values():                    # weights larger than the init: a harder test
        v[...] = rng.uniform(-0.6, 0.6, v.shape)
    x = rng.standard_normal((steps, batch, input_size))
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps
    state = model.initial_state(batch)
    comps = _parts(state)
    for s in comps:
        s[...] = rng.uniform(-0.8, 0.8, s.shape)
    pack = (lambda c: c[0]) if isinstance(state, np.ndarray) else tuple

    y, final, cache = model.forward(x, pack(comps), lengths)
    wy = rng.standard_normal(y.shape)
    ws = [rng.standard_normal(f.shape) for f in _parts(final)]

    def loss():
        y, final, _ = model.forward(x, pack(comps), lengths)
        return float(np.sum(wy * y) + sum(np.sum(w * f) for w, f in zip(ws, _parts(final))))

    grads, dx, dstate = model.backward(cache, wy, pack(ws))
    dstate = _parts(dstate)
    checks = dict(model.params)
    checks["x"] = x
    names = model._state_names()
    checks.update(zip(names, comps))
    analytic = dict(grads, x=dx, **dict(zip(names, dstate)))

    result = GradcheckResult(spec.name)
    for name, tensor in checks.items():
        result.errors[name] = relative_error(analytic[name], numeric_gradient(loss, tensor, eps))
    return result


def numeric_gradient(loss, tensor: np.ndarray, eps: float) -> np.ndarray:
    """d loss() / d tensor by central differences, nudging `tensor` in place (restored)."""
    numeric = np.empty_like(tensor)
    flat, nflat = tensor.reshape(-1), numeric.reshape(-1)
    for j in range(flat.size):
        keep = flat[j]
        flat[j] = keep + eps
        up = loss()
        flat[j] = keep - eps
        down = loss()
        flat[j] = keep
        nflat[j] = (up - down) / (2 * eps)
    return numeric
