"""The NumPy engine equals torch.nn.LSTM / GRU / RNN: outputs, final states, every gradient.

A random torch module's state dict loads unchanged into the NumPy model; variable lengths go
through pack_padded_sequence on the torch side and `lengths=` on ours.
"""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmlab
from tests.conftest import assert_close

TOL = {np.float32: 1e-5, np.float64: 1e-10}
CASES = [  # variant, layers, bidirectional, proj_size, batch_first, with lengths
    ("lstm", 1, False, 0, False, False),
    ("lstm", 2, True, 0, True, True),
    ("lstm", 3, True, 3, False, True),
    ("lstm", 2, False, 2, True, False),
    ("lstm", 1, True, 4, True, True),
    ("gru", 1, False, 0, True, False),
    ("gru", 2, True, 0, False, True),
    ("gru", 3, True, 0, True, True),
    ("rnn_tanh", 2, True, 0, False, True),
    ("rnn_tanh", 3, False, 0, True, True),
    ("rnn_relu", 1, True, 0, True, True),
    ("rnn_relu", 2, False, 0, False, False),
]


def _torch_module(name, I, H, L, bi, proj, bf):
    if name == "lstm":
        return torch.nn.LSTM(I, H, L, bidirectional=bi, proj_size=proj, batch_first=bf)
    if name == "gru":
        return torch.nn.GRU(I, H, L, bidirectional=bi, batch_first=bf)
    return torch.nn.RNN(I, H, L, nonlinearity=name[4:], bidirectional=bi, batch_first=bf)


def _ours(name, I, H, L, bi, proj, bf, dtype):
    kw = dict(num_layers=L, bidirectional=bi, batch_first=bf, variant=name, dtype=dtype)
    if name == "lstm":
        return lstmlab.numpy.LSTM(I, H, proj_size=proj, **kw)
    return (lstmlab.numpy.GRU if name == "gru" else lstmlab.numpy.RNN)(I, H, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,L,bi,proj,bf,use_lengths", CASES,
                         ids=[f"{c[0]}-L{c[1]}-{'bi' if c[2] else 'uni'}-P{c[3]}-"
                              f"{'bf' if c[4] else 'tf'}-{'len' if c[5] else 'full'}" for c in CASES])
def test_equals_torch(name, L, bi, proj, bf, use_lengths, dtype):
    torch.manual_seed(L * 7 + proj)
    T, B, I, H = 7, 4, 3, 5
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tm = _torch_module(name, I, H, L, bi, proj, bf).to(tdtype)
    ours = _ours(name, I, H, L, bi, proj, bf, dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})

    D, R = (2 if bi else 1), (proj or H)
    x = torch.randn((B, T, I) if bf else (T, B, I), dtype=tdtype, requires_grad=True)
    h0 = torch.randn(L * D, B, R, dtype=tdtype, requires_grad=True)
    c0 = torch.randn(L * D, B, H, dtype=tdtype, requires_grad=True)
    lengths = torch.tensor([T, 3, 6, 1]) if use_lengths else None
    state = (h0, c0) if name == "lstm" else h0

    inp = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False) if use_lengths else x
    y_t, st_t = tm(inp, state)
    if use_lengths:
        y_t, _ = pad_packed_sequence(y_t, batch_first=bf, total_length=T)
    st_t = st_t if name == "lstm" else (st_t,)

    np_state = tuple(s.detach().numpy() for s in state) if name == "lstm" else h0.detach().numpy()
    y, st, cache = ours.forward(x.detach().numpy(), np_state,
                                None if lengths is None else lengths.numpy())
    st = st if name == "lstm" else (st,)
    tol = TOL[dtype]
    assert_close(y, y_t.detach().numpy(), tol, "y")
    for ours_s, theirs_s in zip(st, st_t):
        assert_close(ours_s, theirs_s.detach().numpy(), tol, "final state")

    # a random linear loss of the outputs and the final states
    g = torch.Generator().manual_seed(1)
    wy = torch.randn(y_t.shape, generator=g, dtype=tdtype)
    ws = [torch.randn(s.shape, generator=g, dtype=tdtype) for s in st_t]
    loss = (wy * y_t).sum() + sum((w * s).sum() for w, s in zip(ws, st_t))
    loss.backward()
    dstate = tuple(w.numpy() for w in ws) if name == "lstm" else ws[0].numpy()
    grads, dx, dstate0 = ours.backward(cache, wy.numpy(), dstate)
    assert set(grads) == set(ours.params)
    for k, p in tm.named_parameters():
        assert_close(grads[k], p.grad.numpy(), tol, k)
    assert_close(dx, x.grad.numpy(), tol, "dx")
    dstate0 = dstate0 if name == "lstm" else (dstate0,)
    for ours_d, theirs in zip(dstate0, (h0, c0)):
        assert_close(ours_d, theirs.grad.numpy(), tol, "d initial state")


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_unbatched_input_equals_torch(name):
    """A 2-D (T, I) input is one sequence, as in torch."""
    torch.manual_seed(3)
    tm = _torch_module(name, 3, 4, 2, True, 0, False).double()
    ours = _ours(name, 3, 4, 2, True, 0, False, np.float64)
    ours.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = torch.randn(6, 3, dtype=torch.float64)
    y_t, st_t = tm(x)
    y, st = ours(x.numpy())
    assert_close(y, y_t.detach().numpy(), 1e-12, "y")
    st, st_t = (st, st_t) if name == "lstm" else ((st,), (st_t,))
    for a, b in zip(st, st_t):
        assert_close(a, b.detach().numpy(), 1e-12, "state")
