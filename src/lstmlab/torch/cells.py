"""The cells in PyTorch: one time step of every variant, the equations of lstmlab.numpy.

A cell holds no weights and no time loop: the layer (`recurrent.py`) owns the loop, the
reverse direction, masks for variable lengths, the projection and the regularisers, and
calls, per layer and direction,

    xp = cell.project(w, x)                            # input part of every step: (T, B, G)
    for t: state = cell.step(w, xp[t], state, rmask)   # state (h, ...), h before projection

`w` is the layer's weights by base name (`weight_ih`, `weight_hh`, ...). `rmask` (B, R),
when given, multiplies h where it enters a recurrent product (variational dropout); h
itself, as carried to the next step, is left alone. `probe`, when given, is a function
(name, value) -> value that sees each gate and state as the step makes it (LSTM i, f, g, c,
o, h; GRU r, z, n, h; RNN h; h before a projection), as lstmlab.numpy.reference's `edit`:
the layer records the trace and lstmlab.inspect clamps units through it. Autograd does the
backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..families import state_sizes
from ..numpy.ops import LN_EPS
from ..spec import CellSpec

# g = act_in(a_g), h = o * act_out(c); "sigmoid4"/"sigmoid2" are the 1997 squashing functions
ACTIVATIONS = {
    "tanh": torch.tanh,
    "identity": lambda a: a,
    "sigmoid4": lambda a: 4.0 * torch.sigmoid(a) - 2.0,   # range -2..2
    "sigmoid2": lambda a: 2.0 * torch.sigmoid(a) - 1.0,   # range -1..1
    "relu": torch.relu,
}


def _unchanged(name, value):
    return value


class Cell:
    """What the three families share: the gate layout and the input projection."""

    zoned = 1  # how many leading state components zoneout applies to (h; LSTM: h and c)

    def __init__(self, spec: CellSpec, hidden_size: int, proj_size: int = 0):
        self.spec = spec
        self.hidden_size, self.proj_size = hidden_size, proj_size
        self.out_size = proj_size or hidden_size        # width of h, the recurrent input
        self.G = spec.num_gates * hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        return state_sizes(self.spec, self.hidden_size, self.proj_size)

    def project(self, w, x):
        """W x + b_ih + b_hh for every step in one product: x (T, B, I) -> (T, B, G)."""
        T, B, I = x.shape
        xp = torch.addmm(w["bias_ih"] + w["bias_hh"], x.reshape(T * B, I), w["weight_ih"].t())
        return xp.reshape(T, B, self.G)


class LSTMCell(Cell):
    """Every LSTM variant, one set of equations with the spec's flags (see lstmlab.spec)::

        a = W x + R h_prev + b               (LN(W x) g_ih + LN(R h_prev) g_hh + b with
                                              layer norm; + W_gg gates_prev with FGR)
        i = sigma(a_i + p_i * c_prev)        (1 without an input gate)
        f = sigma(a_f + p_f * c_prev)        (1 - i with coupled gates; 1 without f)
        g = act_in(a_g)                      (tanh; identity for NIAF; 4 sigma - 2 in 1997)
        c = f * c_prev + i * g
        o = sigma(a_o + p_o * c)             (1 without an output gate)
        h = o * act_out(c)                   (act_out(LN(c) g_c + b_c) with layer norm)

    Peephole terms p * c appear only with peepholes. The state is (h, c), plus the
    previous step's gates [i, f, o] with FGR.
    """

    zoned = 2

    def __init__(self, spec, hidden_size, proj_size=0):
        super().__init__(spec, hidden_size, proj_size)
        self.sig = spec.sigmoid_gates                     # gates with their own weights

    def project(self, w, x):
        if not self.spec.layer_norm:
            return super().project(w, x)
        T, B, I = x.shape
        wx = x.reshape(T * B, I) @ w["weight_ih"].t()      # (T*B, G)
        xp = F.layer_norm(wx, (self.G,), w["ln_ih_weight"], None, LN_EPS) + (w["bias_ih"] + w["bias_hh"])
        return xp.reshape(T, B, self.G)

    def step(self, w, xp_t, state, rmask=None, probe=None):
        spec, H = self.spec, self.hidden_size
        at = probe or _unchanged
        h, c = state[0], state[1]
        hr = h if rmask is None else h * rmask
        rh = hr @ w["weight_hh"].t()                       # (B, G)
        if spec.layer_norm:
            rh = F.layer_norm(rh, (self.G,), w["ln_hh_weight"], None, LN_EPS)
        a = dict(zip(spec.gates, (xp_t + rh).split(H, dim=1)))   # pre-activations by gate
        if spec.gate_recurrence:                           # gates see the last gates
            for name, gg in zip(self.sig, (state[2] @ w["weight_gg"].t()).split(H, dim=1)):
                a[name] = a[name] + gg
        peep = dict(zip(self.sig, w["weight_peephole"])) if spec.peepholes else {}

        def gate(name, cell):                              # sigma(a + p * c), 1 if absent
            if name not in a:
                return 1.0
            return at(name, torch.sigmoid(a[name] + peep[name] * cell if name in peep else a[name]))

        i = gate("i", c)
        f = at("f", 1.0 - i) if spec.coupled_gates else gate("f", c)
        g = at("g", ACTIVATIONS[spec.input_activation](a["g"]))
        c_new = at("c", f * c + i * g)
        o = gate("o", c_new)                               # o looks at the new c
        if spec.layer_norm:
            c_out = F.layer_norm(c_new, (H,), w["ln_cell_weight"], w["ln_cell_bias"], LN_EPS)
        else:
            c_out = c_new
        h_new = at("h", o * ACTIVATIONS[spec.output_activation](c_out))
        if not spec.gate_recurrence:
            return h_new, c_new
        gates = {"i": i, "f": f, "o": o}
        return h_new, c_new, torch.cat([gates[name] for name in self.sig], dim=1)


class GRUCell(Cell):
    """Gated recurrent unit::

        r = sigma(W_r x + b_ir + R_r h_prev + b_hr)
        z = sigma(W_z x + b_iz + R_z h_prev + b_hz)
        n = tanh(W_n x + b_in + r * (R_n h_prev + b_hn))      linear_before_reset (PyTorch)
        n = tanh(W_n x + b_in + R_n (r * h_prev) + b_hn)      Cho et al. 2014
        h = (1 - z) * n + z * h_prev
    """

    def project(self, w, x):
        T, B, I = x.shape                                  # b_hh stays in the step: r scales b_hn
        xp = torch.addmm(w["bias_ih"], x.reshape(T * B, I), w["weight_ih"].t())
        return xp.reshape(T, B, self.G)

    def step(self, w, xp_t, state, rmask=None, probe=None):
        H, h = self.hidden_size, state[0]
        at = probe or _unchanged
        hr = h if rmask is None else h * rmask
        x_r, x_z, x_n = xp_t.split(H, dim=1)
        R, b = w["weight_hh"], w["bias_hh"]
        if self.spec.linear_before_reset:
            h_r, h_z, h_n = torch.addmm(b, hr, R.t()).split(H, dim=1)   # R h + b_hh: (B, 3H)
            r = at("r", torch.sigmoid(x_r + h_r))
            z = at("z", torch.sigmoid(x_z + h_z))
            n = at("n", torch.tanh(x_n + r * h_n))
        else:
            h_r, h_z = torch.addmm(b[:2 * H], hr, R[:2 * H].t()).split(H, dim=1)
            r = at("r", torch.sigmoid(x_r + h_r))
            z = at("z", torch.sigmoid(x_z + h_z))
            n = at("n", torch.tanh(x_n + torch.addmm(b[2 * H:], r * hr, R[2 * H:].t())))
        return (at("h", (1.0 - z) * n + z * h),)


class RNNCell(Cell):
    """Plain recurrent cell:  h = act(W x + b_ih + R h_prev + b_hh),  act tanh or ReLU."""

    def step(self, w, xp_t, state, rmask=None, probe=None):
        h = state[0]
        hr = h if rmask is None else h * rmask
        h_new = ACTIVATIONS[self.spec.nonlinearity](xp_t + hr @ w["weight_hh"].t())
        return (h_new if probe is None else probe("h", h_new),)


StepCell = LSTMCell | GRUCell | RNNCell                         # a cell that has `step`
CELLS: dict[str, type[StepCell]] = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}  # each family's


def make_cell(spec: CellSpec, hidden_size: int, proj_size: int = 0) -> StepCell:
    return CELLS[spec.family](spec, hidden_size, proj_size)
