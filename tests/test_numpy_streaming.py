"""step() T times equals forward(); trace() equals the gates recomputed from the equations."""

import numpy as np
import pytest

import lstmlab
from lstmlab.families import FAMILIES
from lstmlab.numpy.ops import layer_norm
from tests.conftest import assert_close

CLASSES = {name: getattr(lstmlab.numpy, f.class_name) for name, f in FAMILIES.items()}  # by family


def _model(name, **kw):
    spec = lstmlab.variant(name)
    return CLASSES[spec.family](3, 4, variant=spec, dtype=np.float64, **kw)


@pytest.mark.parametrize("name", list(lstmlab.VARIANTS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_step_loop_equals_forward(name, batch_first):
    m = _model(name, num_layers=2, batch_first=batch_first, seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3) if batch_first else (6, 2, 3))
    y, final = m(x)
    s = m.initial_state(2)
    ys = []
    for t in range(6):
        y_t, s = m.step(x[:, t] if batch_first else x[t], s)
        ys.append(y_t)
    y_steps = np.stack(ys, axis=1 if batch_first else 0)
    assert_close(y_steps, y, 1e-12, "y")
    for a, b in zip(s if isinstance(s, tuple) else (s,), final if isinstance(final, tuple) else (final,)):
        assert_close(a, b, 1e-12, "state")


def test_step_unbatched_stream():
    m = _model("lstm", seed=2)
    x = np.random.default_rng(1).standard_normal((5, 3))
    y, _ = m(x)
    s = m.initial_state()
    for t in range(5):
        y_t, s = m.step(x[t], s)
        assert y_t.shape == (4,)
        assert_close(y_t, y[t], 1e-12, f"step {t}")


# --- an independent reading of the equations, one step at a time, for the trace test ----
def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


ACT = {"tanh": np.tanh, "identity": lambda a: a,
       "sigmoid4": lambda a: 4 * _sig(a) - 2, "sigmoid2": lambda a: 2 * _sig(a) - 1}


def _reference_lstm(spec, p, x, H):
    """Gates, c and h of one LSTM layer (forward direction), from the docstring equations."""
    T, B, _ = x.shape
    h, c = np.zeros((B, H)), np.zeros((B, H))
    blocks = {g: k for k, g in enumerate(spec.gates)}
    sig = spec.sigmoid_gates
    prev_gates = {g: np.zeros((B, H)) for g in sig}
    out = {k: [] for k in "ifgoch"}

    def part(a, g):
        return a[:, blocks[g] * H:(blocks[g] + 1) * H]

    for t in range(T):
        wx, rh = x[t] @ p["weight_ih"].T, h @ p["weight_hh"].T
        if spec.layer_norm:
            wx = layer_norm(wx)[0] * p["ln_ih_weight"]
            rh = layer_norm(rh)[0] * p["ln_hh_weight"]
        a = wx + rh + p["bias_ih"] + p["bias_hh"]
        if spec.gate_recurrence:
            gg = np.concatenate([prev_gates[g] for g in sig], axis=1) @ p["weight_gg"].T
            for k, g in enumerate(sig):
                a[:, blocks[g] * H:(blocks[g] + 1) * H] += gg[:, k * H:(k + 1) * H]
        peep = {g: p["weight_peephole"][k] for k, g in enumerate(sig)} if spec.peepholes else {}
        i = _sig(part(a, "i") + peep.get("i", 0) * c) if "i" in blocks else 1.0
        if spec.coupled_gates:
            f = 1.0 - i
        else:
            f = _sig(part(a, "f") + peep.get("f", 0) * c) if "f" in blocks else 1.0
        g = ACT[spec.input_activation](part(a, "g"))
        c = f * c + i * g
        o = _sig(part(a, "o") + peep.get("o", 0) * c) if "o" in blocks else 1.0
        cc = layer_norm(c)[0] * p["ln_cell_weight"] + p["ln_cell_bias"] if spec.layer_norm else c
        h = o * ACT[spec.output_activation](cc)
        prev_gates = {"i": i, "f": f, "o": o}
        for k, v in (("i", i), ("f", f), ("g", g), ("o", o), ("c", c), ("h", h)):
            out[k].append(np.broadcast_to(v, (B, H)))
    return {k: np.stack(v) for k, v in out.items() if v}


def _reference_gru(spec, p, x, H):
    T, B, _ = x.shape
    h = np.zeros((B, H))
    out = {"r": [], "z": [], "n": [], "h": []}
    W, R, bi, bh = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    for t in range(T):
        wx = x[t] @ W.T + bi
        r = _sig(wx[:, :H] + h @ R[:H].T + bh[:H])
        z = _sig(wx[:, H:2 * H] + h @ R[H:2 * H].T + bh[H:2 * H])
        if spec.linear_before_reset:
            n = np.tanh(wx[:, 2 * H:] + r * (h @ R[2 * H:].T + bh[2 * H:]))
        else:
            n = np.tanh(wx[:, 2 * H:] + (r * h) @ R[2 * H:].T + bh[2 * H:])
        h = (1 - z) * n + z * h
        for k, v in (("r", r), ("z", z), ("n", n), ("h", h)):
            out[k].append(v)
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.parametrize("name", [n for n, s in lstmlab.VARIANTS.items() if s.family != "rnn"])
def test_trace_equals_the_equations(name):
    spec = lstmlab.VARIANTS[name]
    m = _model(name, seed=3)
    rng = np.random.default_rng(2)
    for v in m.params.values():
        v[...] = rng.uniform(-0.7, 0.7, v.shape)
    x = rng.standard_normal((6, 2, 3))
    tr = m.trace(x)
    assert set(tr) == {"l0"}
    p = {k[: -len("_l0")]: v for k, v in m.params.items()}
    ref = (_reference_lstm if spec.family == "lstm" else _reference_gru)(spec, p, x, 4)
    expected_keys = set(spec.gates) | {"h"} | ({"c"} if spec.family == "lstm" else set())
    if spec.coupled_gates:
        expected_keys |= {"f"}
    assert set(tr["l0"]) == expected_keys
    for k, v in tr["l0"].items():
        assert_close(v, ref[k], 1e-12, k)


def test_trace_bidirectional_with_lengths():
    """Traces come back in input time order, zero past each sequence's end."""
    m = _model("lstm", num_layers=2, bidirectional=True, seed=4)
    x = np.random.default_rng(3).standard_normal((5, 2, 3))
    tr = m.trace(x, lengths=[5, 3])
    assert set(tr) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    y, _ = m(x, lengths=[5, 3])
    assert_close(tr["l1"]["h"], y[:, :, :4], 1e-12, "forward h")
    assert_close(tr["l1_reverse"]["h"], y[:, :, 4:], 1e-12, "reverse h")
    assert np.all(tr["l0_reverse"]["c"][3:, 1] == 0)
    # the reverse direction of the short sequence starts at its own last step (t = 2):
    # its first value equals running that step alone from a zero state
    one, _ = m(x[2:3, 1:2])
    assert_close(tr["l0_reverse"]["h"][2, 1], m.trace(x[2:3, 1:2])["l0_reverse"]["h"][0, 0], 1e-12)
    assert one.shape == (1, 1, 8)
