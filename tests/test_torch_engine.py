"""lstmlab.torch equals lstmlab.numpy: weights, outputs, final states, every gradient, traces.

Every variant of the registry goes through the same tests. The generic path (fast=False) is
compared with the NumPy engine; the fused kernels with the generic path.
"""

import json

import numpy as np
import pytest
import torch

import lstmlab
import lstmlab.torch as lt
from lstmlab.families import FAMILIES
from tests.conftest import assert_close

NAMES = list(lstmlab.VARIANTS)
LSTM_NAMES = [n for n, s in lstmlab.VARIANTS.items() if s.family == "lstm"]
FAST_NAMES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
TORCH = {name: getattr(lt, f.class_name) for name, f in FAMILIES.items()}             # by family
NUMPY = {name: getattr(lstmlab.numpy, f.class_name) for name, f in FAMILIES.items()}
TOL = {np.float32: 1e-5, np.float64: 1e-10}
GRAD_TOL = {np.float32: 1e-4, np.float64: 1e-10}
TDTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _pair(spec, I, H, **kw):
    """The same model in both engines, from the same seed."""
    spec = lstmlab.variant(spec)
    torch_kw = {k: kw.pop(k) for k in ("dropout", "recurrent_dropout", "zoneout", "weight_drop",
                                       "fast", "device") if k in kw}
    return (TORCH[spec.family](I, H, variant=spec, **kw, **torch_kw),
            NUMPY[spec.family](I, H, variant=spec, **kw))


def _tuple(state):
    return state if isinstance(state, tuple) else (state,)


def _np(t):
    return t.detach().cpu().numpy()


# --- weights -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES + ["cifg+peepholes"])
def test_same_seed_same_weights_and_round_trip(name):
    spec = lstmlab.variant("cifg", peepholes=True) if name == "cifg+peepholes" else name
    proj = {"proj_size": 2} if lstmlab.variant(spec).family == "lstm" else {}
    tm, nm = _pair(spec, 3, 4, num_layers=2, bidirectional=True, seed=7, **proj)
    sd = tm.state_dict()
    assert list(sd) == list(nm.params)                        # the same names, in the same order
    for k, v in nm.params.items():
        assert sd[k].dtype == torch.float32 and tuple(sd[k].shape) == v.shape
        assert np.array_equal(_np(sd[k]), v), k               # bit-identical initial weights

    # numpy -> torch -> numpy changes no weight
    _, other = _pair(spec, 3, 4, num_layers=2, bidirectional=True, seed=8, **proj)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in other.params.items()})
    _, back = _pair(spec, 3, 4, num_layers=2, bidirectional=True, seed=9, **proj)
    back.load_state_dict({k: _np(v) for k, v in tm.state_dict().items()})
    for k, v in other.params.items():
        assert np.array_equal(back.params[k], v), k


def test_init_options_and_dtypes_match_numpy():
    for kw in ({"forget_bias": 1.0}, {"recurrent_init": "orthogonal"}, {"seed": 3}):
        tm, nm = _pair("peephole", 3, 5, dtype=np.float64, **kw)
        assert all(np.array_equal(_np(tm.state_dict()[k]), v) for k, v in nm.params.items())
    irnn, nrnn = _pair("rnn_relu", 3, 5, recurrent_init="identity")
    assert np.array_equal(_np(irnn.weight_hh_l0), nrnn.params["weight_hh_l0"])
    for dtype in (torch.float64, np.float64, "float64"):
        m = lt.GRU(2, 3, dtype=dtype)
        assert m.dtype == torch.float64 and m.weight_hh_l0.dtype == torch.float64
    assert lt.LSTM(2, 3).dtype == torch.float32


# --- outputs, states and gradients equal the NumPy engine --------------------------------
def _compare_with_numpy(spec, dtype, fast, proj=0, batch_first=False):
    spec = lstmlab.variant(spec)
    T, B, I, H, L = 6, 3, 3, 4, 2
    kw = {"proj_size": proj} if proj else {}
    tm, nm = _pair(spec, I, H, num_layers=L, bidirectional=True, batch_first=batch_first,
                   dtype=dtype, seed=5, fast=fast, **kw)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    sizes = tm.cell.state_sizes()
    state = tuple(rng.standard_normal((L * 2, B, n)).astype(dtype) for n in sizes)
    lengths = np.array([T, 2, 4])

    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state)
    y_t, fin_t = tm(xt, st if spec.family == "lstm" else st[0], lengths)
    y, fin, cache = nm.forward(x, state if spec.family == "lstm" else state[0], lengths)
    assert_close(_np(y_t), y, TOL[dtype], "y")
    for a, b in zip(_tuple(fin_t), _tuple(fin), strict=True):
        assert_close(_np(a), b, TOL[dtype], "final state")

    # a random linear loss of the outputs and the final states
    wy = rng.standard_normal(y.shape).astype(dtype)
    ws = [rng.standard_normal(s.shape).astype(dtype) for s in _tuple(fin)]
    loss = (torch.from_numpy(wy) * y_t).sum() + sum(
        (torch.from_numpy(w) * s).sum() for w, s in zip(ws, _tuple(fin_t)))
    loss.backward()
    grads, dx, dstate0 = nm.backward(cache, wy, tuple(ws) if spec.family == "lstm" else ws[0])
    names = [k for k, _ in tm.named_parameters()]
    assert names == list(grads)
    err = 0.0
    for k, p in tm.named_parameters():
        assert_close(_np(p.grad), grads[k], GRAD_TOL[dtype], k)
        err = max(err, float(np.abs(_np(p.grad) - grads[k]).max()))
    assert_close(_np(xt.grad), dx, GRAD_TOL[dtype], "dx")
    for s, d in zip(st, _tuple(dstate0), strict=True):
        assert_close(_np(s.grad), d, GRAD_TOL[dtype], "d initial state")
    return err


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_generic_path_equals_numpy(name, dtype):
    """2 layers, both directions, mixed lengths, a random initial state."""
    _compare_with_numpy(name, dtype, fast=False, batch_first=name.startswith("n"))


@pytest.mark.parametrize("name", LSTM_NAMES)
def test_generic_path_with_projection_equals_numpy(name):
    _compare_with_numpy(name, np.float64, fast=False, proj=2)


@pytest.mark.parametrize("spec", [lstmlab.variant("cifg", peepholes=True),
                                  lstmlab.variant("nog", peepholes=True),
                                  lstmlab.variant("fgr", layer_norm=True, coupled_gates=True)],
                         ids=lambda s: s.name)
def test_composed_variants_equal_numpy(spec):
    _compare_with_numpy(spec, np.float64, fast=False)


@pytest.mark.parametrize("name", FAST_NAMES)
def test_fast_path_equals_numpy(name):
    _compare_with_numpy(name, np.float64, fast=True, proj=2 if name == "lstm" else 0)


# --- the fused kernels equal the generic path --------------------------------------------
FAST_CASES = [  # variant, layers, bidirectional, proj_size, batch_first, with lengths, unbatched
    ("lstm", 1, False, 0, False, False, False),
    ("lstm", 2, True, 0, True, True, False),
    ("lstm", 2, True, 2, False, True, False),
    ("lstm", 1, False, 3, True, False, False),
    ("lstm", 2, True, 0, False, False, True),
    ("gru", 2, True, 0, False, True, False),
    ("gru", 1, False, 0, True, False, True),
    ("rnn_tanh", 2, True, 0, True, True, False),
    ("rnn_relu", 2, False, 0, False, True, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,L,bi,proj,bf,use_lengths,unbatched", FAST_CASES,
                         ids=[f"{c[0]}-L{c[1]}-{'bi' if c[2] else 'uni'}-P{c[3]}-"
                              f"{'bf' if c[4] else 'tf'}-{'len' if c[5] else 'full'}"
                              f"{'-unbatched' if c[6] else ''}" for c in FAST_CASES])
def test_fast_path_equals_generic_path(name, L, bi, proj, bf, use_lengths, unbatched, dtype,
                                       monkeypatch):
    spec = lstmlab.VARIANTS[name]
    T, B, I, H = 7, 4, 3, 5
    kw = dict(num_layers=L, bidirectional=bi, batch_first=bf, variant=name, dtype=dtype, seed=2)
    if proj:
        kw["proj_size"] = proj
    fast, slow = TORCH[spec.family](3, H, **kw), TORCH[spec.family](3, H, fast=False, **kw)
    assert fast.fast_path and not slow.fast_path
    g = torch.Generator().manual_seed(L + proj)
    td = TDTYPE[dtype]
    shape = (T, I) if unbatched else ((B, T, I) if bf else (T, B, I))
    x = torch.randn(shape, generator=g, dtype=td)
    Bs = () if unbatched else (B,)
    state = tuple(torch.randn(L * (1 + bi), *Bs, n, generator=g, dtype=td)
                  for n in fast.cell.state_sizes())
    lengths = torch.tensor([T, 3, 6, 1]) if use_lengths else None

    results = []
    for m in (fast, slow):
        if m is fast:   # the fused kernel must not fall back on the time loop
            monkeypatch.setattr(lt.recurrent, "run_layer", _no_loop)
        else:
            monkeypatch.undo()
        xx = x.clone().requires_grad_()
        ss = tuple(s.clone().requires_grad_() for s in state)
        y, fin = m(xx, ss if spec.family == "lstm" else ss[0], lengths)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=td)
        loss = (gy * y).sum() + sum((s * (k + 1)).sum() for k, s in enumerate(_tuple(fin)))
        loss.backward()
        results.append((y, _tuple(fin), xx.grad, [s.grad for s in ss],
                        {k: p.grad for k, p in m.named_parameters()}))
    (y1, f1, dx1, ds1, g1), (y2, f2, dx2, ds2, g2) = results
    tol = TOL[dtype]
    assert_close(_np(y1), _np(y2), tol, "y")
    for a, b in zip(f1, f2, strict=True):
        assert_close(_np(a), _np(b), tol, "final state")
    assert_close(_np(dx1), _np(dx2), 10 * tol, "dx")
    for a, b in zip(ds1, ds2, strict=True):
        assert_close(_np(a), _np(b), 10 * tol, "d initial state")
    for k in g1:
        assert_close(_np(g1[k]), _np(g2[k]), 10 * tol, k)


def _no_loop(*args, **kwargs):
    raise AssertionError("the fast path ran the generic time loop")


# --- streaming and traces ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_step_loop_equals_forward(name, batch_first):
    spec = lstmlab.VARIANTS[name]
    m = TORCH[spec.family](3, 4, num_layers=2, variant=name, batch_first=batch_first,
                           dtype=np.float64, seed=1)
    x = torch.randn((2, 6, 3) if batch_first else (6, 2, 3), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    y, final = m(x)
    s = m.initial_state(2)
    ys = []
    for t in range(6):
        y_t, s = m.step(x[:, t] if batch_first else x[t], s)
        ys.append(y_t)
    assert_close(_np(torch.stack(ys, dim=1 if batch_first else 0)), _np(y), 1e-12, "y")
    for a, b in zip(_tuple(s), _tuple(final), strict=True):
        assert_close(_np(a), _np(b), 1e-12, "state")


def test_step_unbatched_stream():
    m = lt.LSTM(3, 4, seed=2, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((5, 3))
    y, _ = m(x)
    s = m.initial_state()
    assert s[0].shape == (1, 4)
    for t in range(5):
        y_t, s = m.step(x[t], s)
        assert y_t.shape == (4,)
        assert_close(_np(y_t), _np(y[t]), 1e-12, f"step {t}")


@pytest.mark.parametrize("name", NAMES)
def test_trace_equals_numpy(name):
    tm, nm = _pair(name, 3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=3)
    x = np.random.default_rng(2).standard_normal((5, 3, 3))
    lengths = [5, 2, 4]
    tr, ref = tm.trace(x, lengths=lengths), nm.trace(x, lengths=lengths)
    assert list(tr) == list(ref) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    for layer in ref:
        assert list(tr[layer]) == list(ref[layer])
        for k, v in ref[layer].items():
            assert not tr[layer][k].requires_grad
            assert_close(_np(tr[layer][k]), v, 1e-12, f"{layer} {k}")
    one = tm.trace(x[:, 0])                                     # unbatched: (T, H)
    assert one["l1_reverse"]["h"].shape == (5, 4)
    assert_close(_np(one["l0"]["h"]), nm.trace(x[:, 0])["l0"]["h"], 1e-12, "unbatched")


# --- a user's mistake: ValueError with one line naming what was expected -----------------
def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_input_errors():
    m = lt.LSTM(8, 4, num_layers=2, dtype=np.float64)
    with pytest.raises(ValueError, match="x has 7 features, the model expects 8") as e:
        m(torch.zeros(5, 2, 7))
    _one_line(e)
    with pytest.raises(ValueError, match="got 4-D with shape"):
        m(torch.zeros(5, 2, 3, 8))
    with pytest.raises(ValueError, match=r"x contains 1 NaN or inf value\(s\), first at index \(3, 1, 6\)"):
        x = np.zeros((5, 2, 8))
        x[3, 1, 6] = np.nan
        m(x)
    with pytest.raises(ValueError, match="must lie in 1..5"):
        m(torch.zeros(5, 2, 8), lengths=[6, 2])
    with pytest.raises(ValueError, match=r"one entry per sequence \(2\)"):
        m(torch.zeros(5, 2, 8), lengths=torch.tensor([5]))


def test_state_errors():
    m = lt.LSTM(8, 4, num_layers=2, dtype=np.float64)
    h0, c0 = torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)
    with pytest.raises(ValueError, match=r"state h0 has shape \(1, 2, 4\), expected \(2, 2, 4\)") as e:
        m(torch.zeros(5, 2, 8), (h0, c0))
    _one_line(e)
    with pytest.raises(ValueError, match=r"must be a tuple \(h0, c0\)"):
        m(torch.zeros(5, 2, 8), c0)
    with pytest.raises(ValueError, match="one array h0 for a GRU"):
        lt.GRU(8, 4)(torch.zeros(5, 2, 8), (c0, c0))
    with pytest.raises(ValueError, match=r"must be a tuple \(h0, c0, gates0\)"):
        lt.LSTM(8, 4, variant="fgr")(torch.zeros(5, 2, 8), (c0,))


def test_constructor_errors():
    cases = [
        (lambda: lt.LSTM(3, 4, variant="lstn"), r"unknown variant 'lstn' \(did you mean 'lstm'\?\)"),
        (lambda: lt.LSTM(3, 4, variant="gru"), "'gru' is a GRU variant; use lstmlab.torch.GRU"),
        (lambda: lt.GRU(3, 4, variant="peephole"), "is a LSTM variant; use lstmlab.torch.LSTM"),
        (lambda: lt.RNN(3, 4, variant="gru_cho"), "use lstmlab.torch.GRU"),
        (lambda: lt.LSTM(3, 4, proj_size=4), "proj_size must be 0 or below hidden_size"),
        (lambda: lt.LSTM(3, 0), "hidden_size must be an integer >= 1"),
        (lambda: lt.LSTM(3, 4, variant="nfg", forget_bias=1.0), "has no forget gate"),
        (lambda: lt.LSTM(3, 4, dtype=torch.float16), "dtype must be float32 or float64"),
        (lambda: lt.LSTM(3, 4, dtype="int8"), "dtype must be float32 or float64"),
        (lambda: lt.LSTM(3, 4, zoneout=1.0), r"zoneout must be a probability in \[0, 1\)"),
        (lambda: lt.GRU(3, 4, dropout=-0.1), r"dropout must be a probability in \[0, 1\)"),
        (lambda: lt.LSTM(3, 4, device="tpu"), "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match) as e:
            make()
        _one_line(e)


def test_resolve_device():
    assert lt.resolve_device("cpu") == torch.device("cpu")
    assert lt.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    m = lt.GRU(3, 4, device="cpu")
    assert m.device == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        lt.resolve_device("gpu0")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for make in (lambda: lt.resolve_device("cuda"), lambda: lt.LSTM(3, 4, device="cuda:0")):
        with pytest.raises(ValueError, match="was asked for but CUDA is not available") as e:
            make()
        _one_line(e)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["lstm", "peephole", "gru"])
def test_device_equals_the_default_cpu_model(name, device):
    """On every device this machine has (a GPU too, when there is one)."""
    spec = lstmlab.VARIANTS[name]
    ref = TORCH[spec.family](3, 4, num_layers=2, bidirectional=True, variant=name, dtype=np.float64)
    dev = TORCH[spec.family](3, 4, num_layers=2, bidirectional=True, variant=name, dtype=np.float64,
                             device=device)
    assert dev.device.type == device
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    y, _ = ref(x, lengths=[6, 2, 4])
    y_dev, _ = dev(x.to(device), lengths=[6, 2, 4])
    assert_close(_np(y_dev), _np(y), 1e-10, "y")


def test_bf16_trains_like_fp32_or_says_why_it_cannot(tmp_path):
    """--precision bf16: the forward under autocast. Where the CPU has bfloat16 instructions,
    the loss after 60 steps is within 10% of float32's (bfloat16 keeps 8 bits of mantissa);
    where it has none (oneDNN's LSTM refuses bfloat16 there), one line says so."""
    from tests.conftest import lstmlab, one_line_error

    args = ["train", "sine", "--engine", "torch", "--steps", "60", "--eval-every", "30"]
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        err = one_line_error(lstmlab(*args, "--precision", "bf16", "--out", tmp_path / "b"))
        assert "needs bfloat16 instructions" in err and "fp32" in err
        assert not (tmp_path / "b").exists()
        return
    losses = {}
    for p in ("fp32", "bf16"):
        r = lstmlab(*args, "--precision", p, "--out", tmp_path / p)
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in (tmp_path / p / "metrics.jsonl").read_text().splitlines()]
        losses[p] = [r_["loss"] for r_ in rows if r_["split"] == "train"]
    assert losses["bf16"][-1] == pytest.approx(losses["fp32"][-1], rel=0.10)
    assert losses["bf16"][-1] < 0.5 * losses["bf16"][0]                # it learns


def test_precision_is_refused_by_the_numpy_engine():
    from lstmlab.config import TrainConfig
    from lstmlab.train.engines import make_engine
    from tests.conftest import raises_one_line

    cfg = TrainConfig(precision="bf16")
    assert "needs --engine torch" in raises_one_line(make_engine, "numpy", None, cfg, "mse")
    assert "precision" in raises_one_line(TrainConfig, precision="fp8")


def test_fp16_needs_a_gpu(tmp_path):
    from tests.conftest import lstmlab, one_line_error

    err = one_line_error(lstmlab("train", "sine", "--engine", "torch", "--steps", "5", "--precision",
                                 "fp16", "--out", tmp_path / "h"))
    assert "--precision fp16 needs a GPU (--device cuda)" in err and not (tmp_path / "h").exists()


def test_fp16_scales_the_loss_skips_overflowing_steps_and_resumes_its_scale(monkeypatch):
    """The gradient scaler's machinery, run on the CPU (where lstmlab refuses fp16 for users:
    no speed to gain) with a variant whose cell is torch operations, which autocast runs in
    float16: the loss falls as in float32; a scale so large that the float16 gradients
    overflow skips the step (the weights unchanged, the loss reported) and halves the scale;
    the checkpoint carries the scale."""
    from lstmlab.config import ModelConfig, TrainConfig
    from lstmlab.tasks.base import Batch
    from lstmlab.train import engines

    monkeypatch.setattr(engines, "FP16_DEVICES", ("cuda", "cpu"))
    rng = np.random.default_rng(0)
    t = np.arange(40)[:, None] + rng.integers(0, 50, 16)[None, :]
    x = np.sin(0.3 * t)[..., None].astype(np.float32)
    batch = Batch(x=x[:-1], y=x[1:])                               # the next value of a sine
    model = ModelConfig(input_size=1, output_size=1, hidden_size=16, variant="gru_cho",
                        dtype="float32")
    losses = {}
    for p in ("fp32", "fp16"):
        eng = engines.make_engine("torch", model, TrainConfig(lr=1e-2, precision=p), "mse")
        losses[p] = [eng.train_step(batch, 1e-2, None, k)[0] for k in range(1, 81)]
    assert losses["fp16"][-1] < 0.2 * losses["fp16"][0]               # it learns
    assert losses["fp16"][-1] == pytest.approx(losses["fp32"][-1], rel=0.15, abs=2e-3)
    eng.scaler.update(2.0 ** 100)                                    # too large: float16 overflows
    before = [p.detach().clone() for p in eng.model.parameters()]
    loss, norm, _ = eng.train_step(batch, 1e-2, None, 81)
    assert np.isfinite(loss) and not np.isfinite(norm)
    assert all(torch.equal(a, b) for a, b in zip(before, eng.model.parameters()))
    assert eng.scaler.get_scale() == 2.0 ** 99
    tensors, scalars = eng.checkpoint()
    again = engines.make_engine("torch", model, TrainConfig(lr=1e-2, precision="fp16"), "mse")
    again.restore(tensors, scalars)
    assert again.scaler.get_scale() == 2.0 ** 99
