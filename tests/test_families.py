"""The family descriptions (lstmlab.families) against both engines and ONNX.

Every VARIANTS entry: the described parameter shapes and state sizes are the models' own in
both engines, both engines start from the same weights for the same seed, and the ONNX gate
orders round-trip. The initial weights are pinned to what lstmlab drew before the
descriptions existed (fingerprints taken from commit 17282aa), so one seed keeps giving the
same model.
"""

import hashlib

import numpy as np
import pytest

import lstmlab
import lstmlab.torch as lt
from lstmlab import numpy as lnp
from lstmlab.config import ModelConfig
from lstmlab.families import FAMILIES, family_of, layer_shapes, stack_shapes, state_names, state_sizes
from lstmlab.io.onnx.common import is_native, native_weights, params_from_native
from lstmlab.numpy.model import SequenceModel
from lstmlab.numpy.recurrent import stack_class as numpy_class
from lstmlab.numpy.seq2seq import Seq2Seq
from lstmlab.torch.recurrent import stack_class as torch_class
from lstmlab.torch.seq2seq import Seq2Seq as TorchSeq2Seq

VARIANTS = list(lstmlab.VARIANTS)


def _sizes(name):
    """Constructor arguments that exercise every shape rule: layers, directions, projection."""
    kw = dict(num_layers=2, bidirectional=True)
    if family_of(lstmlab.variant(name)).projection:
        kw["proj_size"] = 3
    return kw


def _both(name, seed=0, **kw):
    spec = lstmlab.variant(name)
    cls = family_of(spec).class_name
    return (getattr(lnp, cls)(4, 5, variant=name, seed=seed, **kw),
            getattr(lt, cls)(4, 5, variant=name, seed=seed, **kw))


def _fingerprint(params: dict) -> str:
    h = hashlib.sha256()
    for k, v in params.items():
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", VARIANTS)
def test_description_is_both_engines_layout(name):
    spec = lstmlab.variant(name)
    kw = _sizes(name)
    nm, tm = _both(name, seed=1, **kw)
    want = stack_shapes(spec, 4, 5, **kw)
    assert {k: v.shape for k, v in nm.params.items()} == want
    assert list(nm.params) == list(want)                         # storage order too
    sd = tm.state_dict()
    assert list(sd) == list(want)
    assert {k: tuple(v.shape) for k, v in sd.items()} == want
    sizes = state_sizes(spec, 5, kw.get("proj_size", 0))
    for model, to_np in ((nm, np.asarray), (tm, lambda t: t.numpy())):
        state = model.initial_state(2)
        comps = state if isinstance(state, tuple) else (state,)
        assert tuple(to_np(c).shape for c in comps) == tuple((4, 2, n) for n in sizes)
        assert len(comps) == len(state_names(spec))
        assert type(model).__name__ == family_of(spec).class_name


@pytest.mark.parametrize("name", VARIANTS)
def test_engines_start_from_the_same_weights(name):
    nm, tm = _both(name, seed=7, **_sizes(name))
    sd = tm.state_dict()
    for k, v in nm.params.items():
        np.testing.assert_array_equal(sd[k].numpy(), v, err_msg=k)


@pytest.mark.parametrize("name", VARIANTS)
def test_gate_order_and_trace_follow_the_description(name):
    spec = lstmlab.variant(name)
    fam = family_of(spec)
    assert spec.gates == tuple(g for g in fam.gates if g in spec.gates)   # the family's order
    nm, tm = _both(name)
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    shown = [k for k in fam.traced if k in spec.gates or k == "c" or (k == "f" and spec.coupled_gates)]
    assert list(nm.trace(x)["l0"]) == list(tm.trace(x)["l0"]) == shown + ["h"]


@pytest.mark.parametrize("name", [n for n in VARIANTS if is_native(lstmlab.variant(n))])
def test_onnx_gate_orders_round_trip(name):
    spec = lstmlab.variant(name)
    fam = family_of(spec)
    assert sorted(fam.onnx_gates) == sorted(fam.gates)           # a permutation of ours
    assert set(fam.onnx_peepholes) <= set(fam.gates)
    m = getattr(lnp, fam.class_name)(4, 5, num_layers=2, bidirectional=True, variant=name, seed=2)
    back = {}
    for k in range(2):
        w = native_weights(m, k)
        back.update(params_from_native(spec, k, w["W"], w["R"], w["B"], w.get("P")))
    assert list(back) == list(m.params)
    for k, v in m.params.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_is_native_reads_the_onnx_flags():
    native = {n for n in VARIANTS if is_native(lstmlab.variant(n))}
    assert native == {"lstm", "peephole", "cifg", "gru", "gru_cho", "rnn_tanh", "rnn_relu"}
    assert is_native(lstmlab.variant("cifg", peepholes=True))
    assert not is_native(lstmlab.variant("lstm"), proj_size=2)
    assert not is_native(lstmlab.variant("peephole", layer_norm=True))


def test_a_family_flag_is_refused_elsewhere_and_shapes_follow_flags():
    with pytest.raises(ValueError, match="peepholes do.es. not apply to 'gru'"):
        lstmlab.variant("gru", peepholes=True)
    fgr = layer_shapes(lstmlab.variant("cifg", gate_recurrence=True, peepholes=True), 4, 5, 2)
    assert fgr["weight_ih"] == (15, 4) and fgr["weight_hh"] == (15, 2)
    assert fgr["weight_peephole"] == (2, 5) and fgr["weight_gg"] == (10, 10)
    assert fgr["weight_hr"] == (2, 5)
    assert state_sizes(lstmlab.variant("fgr"), 5, 2) == (2, 5, 15)


def test_every_family_has_a_class_in_each_engine():
    for fam in FAMILIES.values():
        spec = lstmlab.variant(fam.default_variant)
        assert spec.family == fam.name
        assert numpy_class(spec) is getattr(lnp, fam.class_name)
        assert torch_class(spec) is getattr(lt, fam.class_name)
        assert getattr(lnp, fam.class_name).default_variant == fam.default_variant

    class Mine(lnp.LSTM):                                        # a user's subclass stays theirs
        pass

    assert numpy_class(lstmlab.variant("lstm")) is lnp.LSTM


def test_torch_builds_no_numpy_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the torch engine built a NumPy model")

    monkeypatch.setattr(lnp.Recurrent, "__init__", refuse)
    monkeypatch.setattr(lnp.Linear, "__init__", refuse)
    monkeypatch.setattr(lnp.Embedding, "__init__", refuse)
    lt.LSTM(3, 4, variant="peephole", num_layers=2)
    lt.SequenceModel(ModelConfig(input_size=4, output_size=3, hidden_size=5, vocab_size=7))


@pytest.mark.parametrize("native", [True, False])
def test_onnx_export_reads_no_numpy_cell(tmp_path, native):
    from lstmlab.io.onnx import export_onnx

    for name in ("peephole", "gru", "fgr"):
        m = lnp.LSTM(3, 4, variant=name) if name != "gru" else lnp.GRU(3, 4)
        m.cells = None                                           # the description is enough
        export_onnx(m, tmp_path / f"{name}.onnx", native=native)


# fingerprints of the initial weights at commit 17282aa: (variant, arguments, seed) -> sha256[:16]
_STACK = dict(num_layers=2, bidirectional=True)
_PROJ = dict(proj_size=3, dtype=np.float64)
OLD_WEIGHTS = [
    ("lstm", _STACK, 3, "29c5be5f05440c7f"), ("lstm", _PROJ, 11, "d91d466124c01014"),
    ("peephole", _STACK, 3, "219e940463905751"), ("peephole", _PROJ, 11, "8505c497813a6540"),
    ("nig", _STACK, 3, "59c691f888bcd08f"), ("nog", _PROJ, 11, "438d729856150a0c"),
    ("niaf", _PROJ, 11, "d91d466124c01014"), ("cifg", _STACK, 3, "59c691f888bcd08f"),
    ("fgr", _STACK, 3, "a5de617f4ce3ea65"), ("fgr", _PROJ, 11, "924cbffd83c62513"),
    ("lstm1997", _PROJ, 11, "438d729856150a0c"),
    ("layernorm", _STACK, 3, "f613376363e3dfe3"), ("layernorm", _PROJ, 11, "969e6372fbeb818b"),
    ("gru", _STACK, 3, "59c691f888bcd08f"), ("gru_cho", _STACK, 3, "59c691f888bcd08f"),
    ("rnn_tanh", _STACK, 3, "a9132a93fd79659f"), ("rnn_relu", _STACK, 3, "a9132a93fd79659f"),
    ("lstm", dict(forget_bias=1.0), 5, "877bf7c5e9a4eae1"),
    ("cifg", dict(forget_bias=2.0, num_layers=2), 6, "15fef4af196fb46a"),
    ("rnn_relu", dict(recurrent_init="identity"), 7, "7cee1cb02ac6f2b3"),
]


@pytest.mark.parametrize("name,kw,seed,old", OLD_WEIGHTS)
def test_initial_weights_unchanged(name, kw, seed, old):
    nm, tm = _both(name, seed=seed, **kw)
    assert _fingerprint(nm.params) == old
    assert _fingerprint({k: v.numpy() for k, v in tm.state_dict().items()}) == old


def test_orthogonal_init_unchanged():
    # QR runs in LAPACK, whose last bits may differ between builds: sums, not fingerprints
    old = {"lstm": {"weight_hh_l0": (-0.7138403162275673, 22.959224827125922),
                    "weight_hr_l0": (1.399767125015877, 2.6343704326096318)},
           "gru": {"weight_hh_l0": (1.269181731223953, 28.760934475242752),
                   "bias_hh_l0": (0.8416236272781713, 2.9189461002526365)}}
    for name, kw, seed in (("lstm", dict(proj_size=3), 8), ("gru", {}, 9)):
        nm, tm = _both(name, seed=seed, dtype=np.float64, recurrent_init="orthogonal", **kw)
        sd = tm.state_dict()
        for k, sums in old[name].items():
            v = nm.params[k]
            np.testing.assert_allclose((v.sum(), np.abs(v).sum()), sums, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(sd[k].numpy(), v)


def test_task_networks_unchanged():
    seq = ModelConfig(input_size=4, output_size=3, variant="peephole", hidden_size=5, vocab_size=7)
    s2s = ModelConfig(input_size=4, output_size=6, variant="gru", hidden_size=5, vocab_size=7,
                      bidirectional=True, architecture="seq2seq")
    for cfg, np_cls, t_cls, old in ((seq, SequenceModel, lt.SequenceModel, "d77fac29a5f3e9a5"),
                                    (s2s, Seq2Seq, TorchSeq2Seq, "4135028b88a7ff28")):
        assert _fingerprint(np_cls(cfg, seed=13).params) == old
        assert _fingerprint({k: v.numpy() for k, v in t_cls(cfg, seed=13).state_dict().items()}) == old
