"""Optimizers that update a {name: ndarray} dict in place, with torch.optim's arithmetic.

    opt = Adam(model.params, lr=1e-3)
    grads, dx, _ = model.backward(cache, dy)
    clip_grad_norm(grads, 1.0)
    opt.step(grads)
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.params, self.lr, self.weight_decay = params, lr, weight_decay
        self.steps = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Apply one update; `grads` has (a subset of) the keys of params."""
        self.steps += 1
        for name, g in grads.items():
            p = self.params[name]
            if self.weight_decay:
                g = g + self.weight_decay * p                    # L2 penalty, as torch.optim
            self._update(name, p, g)

    def _update(self, name, p, g):
        raise NotImplementedError

    _slots: tuple[str, ...] = ()                                 # per-parameter state dicts

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, scalars): everything a resumed run needs to continue identically."""
        arrays = {f"{slot}/{name}": a for slot in self._slots
                  for name, a in getattr(self, slot).items()}
        return arrays, {"steps": self.steps, "lr": self.lr}

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict) -> None:
        for slot in self._slots:
            getattr(self, slot).clear()
        for key, a in arrays.items():
            slot, _, name = key.partition("/")
            if slot not in self._slots or name not in self.params:
                raise ValueError(f"optimizer state {key!r} does not belong to this model")
            getattr(self, slot)[name] = np.array(a, dtype=self.params[name].dtype)
        self.steps, self.lr = int(scalars["steps"]), float(scalars["lr"])


class SGD(Optimizer):
    """p -= lr * v, with v = momentum * v + g (plain g without momentum; Nesterov optional)."""

    _slots = ("velocity",)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.velocity: dict[str, np.ndarray] = {}

    def _update(self, name, p, g):
        if self.momentum:
            v = self.velocity.get(name)
            if v is None:
                v = self.velocity[name] = g.copy()
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, as torch.optim.Adam."""

    _slots = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps = betas, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def _update(self, name, p, g):
        b1, b2 = self.betas
        m = self.m.setdefault(name, np.zeros_like(p))
        v = self.v.setdefault(name, np.zeros_like(p))
        m *= b1
        m += (1 - b1) * g                                        # first moment
        v *= b2
        v += (1 - b2) * g * g                                    # second moment
        bc1, bc2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
        p -= (self.lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + self.eps)


class RMSprop(Optimizer):
    """RMSprop (Hinton 2012), as torch.optim.RMSprop: p -= lr * g / (sqrt(avg g^2) + eps)."""

    _slots = ("square", "velocity")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps, self.momentum = alpha, eps, momentum
        self.square: dict[str, np.ndarray] = {}
        self.velocity: dict[str, np.ndarray] = {}

    def _update(self, name, p, g):
        sq = self.square.setdefault(name, np.zeros_like(p))
        sq *= self.alpha
        sq += (1 - self.alpha) * g * g
        step = g / (np.sqrt(sq) + self.eps)
        if self.momentum:
            v = self.velocity.setdefault(name, np.zeros_like(p))
            v *= self.momentum
            v += step
            step = v
        p -= self.lr * step


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm (in place).

    Returns the norm before clipping, as torch.nn.utils.clip_grad_norm_.
    """
    total = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total
