"""The regularisers nn.LSTM lacks: variational recurrent dropout, zoneout, weight drop.

Each is a few lines on top of the generic layer (recurrent.py); inter-layer dropout is
torch's own F.dropout, as in nn.LSTM. All draw from torch's global generator, so
`torch.manual_seed` makes a training step reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def variational_mask(batch: int, size: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """One dropout mask per sequence for the recurrent input h, (B, size), fixed over time.

    Gal & Ghahramani 2016, "A theoretically grounded application of dropout in recurrent
    neural networks": the same units of h are dropped at every step of a sequence (a fresh
    mask per step would destroy the memory). Scaled by 1/(1 - p) so that eval needs no change.
    """
    keep = torch.empty((batch, size), dtype=like.dtype, device=like.device).bernoulli_(1.0 - p)
    return keep.div_(1.0 - p)


def zoneout(prev: torch.Tensor, new: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Each unit keeps its previous value with probability p (Krueger et al. 2017, "Zoneout").

    training:  s_t = d * s_{t-1} + (1 - d) * s_new,   d ~ Bernoulli(p) per unit and step
    eval:      s_t = p * s_{t-1} + (1 - p) * s_new    (the expectation)
    Unlike dropout the gradient flows through whichever value was kept, as an identity.
    """
    if training:
        keep = torch.empty_like(new).bernoulli_(p).bool()
        return torch.where(keep, prev, new)
    return p * prev + (1.0 - p) * new


def drop_weight(weight: torch.Tensor, p: float) -> torch.Tensor:
    """DropConnect on a weight matrix, one mask per forward call (Wan et al. 2013; used on
    weight_hh by Merity et al. 2018's AWD-LSTM). Scaled by 1/(1 - p) like dropout."""
    return F.dropout(weight, p, training=True)
