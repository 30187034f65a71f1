"""ModelConfig, TrainConfig and the initialisation options: every field checked for type,
finiteness and range, unknown and missing settings named, and sizes that cannot fit in
memory refused before anything is allocated; each with one line naming the field."""

import subprocess
import sys

import numpy as np
import pytest

import lstmlab
from lstmlab.config import ModelConfig, TrainConfig


def _refused(call, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as e:
        call(*args, **kwargs)
    assert type(e.value) is ValueError
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg[:1000]
    return msg


BAD_MODEL = [
    ("input_size", "3"), ("input_size", 0), ("output_size", 2.0), ("hidden_size", True),
    ("hidden_size", -1), ("num_layers", None), ("proj_size", -1), ("proj_size", 64),
    ("vocab_size", "10"), ("bidirectional", "yes"), ("bidirectional", 1), ("readout", ["last"]),
    ("readout", "first"), ("dtype", "float16"), ("dtype", np.float32), ("architecture", 3),
    ("recurrent_init", "zeros"), ("forget_bias", float("nan")), ("forget_bias", float("inf")),
    ("forget_bias", "1.0"), ("dropout", float("nan")), ("dropout", 1.0), ("dropout", -0.1),
    ("zoneout", True), ("weight_drop", "0.1"), ("variant", 3), ("variant", "lstm+peepholes=yes"),
    ("variant", "x" * 100_000),
]


@pytest.mark.parametrize("field, value", BAD_MODEL, ids=lambda v: str(v)[:20])
def test_bad_model_settings_name_the_field(field, value):
    msg = _refused(ModelConfig, **{"input_size": 3, "output_size": 2, field: value})
    assert field in msg or "variant" in msg or "peepholes" in msg


BAD_TRAIN = [
    ("lr", float("inf")), ("lr", float("nan")), ("lr", 0), ("lr", -1e-3), ("lr", "0.01"),
    ("lr", True), ("clip", float("nan")), ("clip", float("inf")), ("clip", -1.0), ("steps", 10.5),
    ("steps", 0), ("batch_size", "32"), ("eval_every", None), ("patience", -1),
    ("plateau_patience", 0), ("seed", -1), ("seed", 1.5), ("optimizer", "lbfgs"),
    ("schedule", ["cosine"]),
]


@pytest.mark.parametrize("field, value", BAD_TRAIN, ids=lambda v: str(v)[:20])
def test_bad_training_settings_name_the_field(field, value):
    assert field in _refused(TrainConfig, **{field: value})


def test_good_settings_are_normalised_to_plain_numbers():
    c = ModelConfig(input_size=np.int64(3), output_size=2, dropout=0, forget_bias=1)
    assert type(c.input_size) is int and type(c.dropout) is float and type(c.forget_bias) is float
    assert ModelConfig.from_dict(c.to_dict()) == c
    t = TrainConfig(lr=1, clip=0)
    assert type(t.lr) is float and t.clip == 0.0


def test_from_dict_refuses_what_is_not_a_complete_mapping():
    assert "mapping" in _refused(ModelConfig.from_dict, [3, 2])
    assert "mapping" in _refused(TrainConfig.from_dict, "steps=3")
    assert "output_size missing" in _refused(ModelConfig.from_dict, {"input_size": 3})
    msg = _refused(ModelConfig.from_dict, {"input_size": 3, "output_size": 2, "w" * 10_000: 1, 7: 1})
    assert "unknown model setting" in msg
    assert "unknown training setting(s) 'learning_rate'" in _refused(TrainConfig.from_dict,
                                                                     {"learning_rate": 0.1})


@pytest.mark.parametrize("kw", [dict(hidden_size=1_000_000), dict(num_layers=10**7, hidden_size=64),
                                dict(vocab_size=10**9, input_size=1000), dict(hidden_size=10**400)],
                         ids=["hidden", "layers", "vocab", "absurd"])
def test_sizes_that_cannot_fit_in_memory_are_refused_saying_how_much(kw):
    msg = _refused(ModelConfig, **{"input_size": 3, "output_size": 2, **kw})
    assert "parameters would take about" in msg and "of memory" in msg


def test_seq2seq_sizes_count_both_stacks():
    c = ModelConfig(input_size=4, output_size=7, vocab_size=9, hidden_size=5, num_layers=2,
                    bidirectional=True, architecture="seq2seq")
    from lstmlab.numpy.seq2seq import Seq2Seq

    assert c.min_params <= Seq2Seq(c).num_params < 2 * c.min_params


@pytest.mark.parametrize("variant", list(lstmlab.VARIANTS))
def test_min_params_is_a_lower_bound_close_to_the_truth(variant):
    proj = 2 if lstmlab.VARIANTS[variant].family == "lstm" else 0
    c = ModelConfig(input_size=3, output_size=2, variant=variant, hidden_size=5, num_layers=3,
                    bidirectional=True, vocab_size=11, proj_size=proj)
    from lstmlab.numpy.model import SequenceModel

    assert c.min_params <= SequenceModel(c).num_params < 3 * c.min_params   # fgr: W_gg is (3H, 3H)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("kw", [dict(hidden_size=10**6), dict(num_layers=10**10),
                                dict(forget_bias=float("nan")), dict(forget_bias=float("-inf"))],
                         ids=["hidden", "layers", "nan_bias", "inf_bias"])
def test_bare_stacks_refuse_the_same(engine, kw):
    cls = lstmlab.numpy.LSTM if engine == "numpy" else lstmlab.torch.LSTM
    args = {"hidden_size": 4, **kw}
    _refused(cls, 3, args.pop("hidden_size"), **args)


def test_init_options_refuse_nan_forget_bias():
    from lstmlab.numpy.init import check_init_options

    spec = lstmlab.VARIANTS["lstm"]
    assert "forget_bias" in _refused(check_init_options, spec, float("nan"), "uniform", 4, 4)
    assert "recurrent_init" in _refused(check_init_options, spec, None, ["uniform"], 4, 4)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lstmlab", *map(str, args)], capture_output=True,
                          text=True)


@pytest.mark.parametrize("args, expect", [
    (["--lr", "inf"], "lr must be a finite number > 0"),
    (["--lr", "nan"], "lr must be a finite number > 0"),
    (["--clip", "nan"], "clip must be a finite number >= 0"),
    (["--hidden-size", "1000000"], "more than this machine's"),
])
def test_cli_refuses_non_finite_and_huge_settings(tmp_path, args, expect):
    r = _cli("train", "sine", "--steps", "2", "--out", tmp_path / "run", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and expect in r.stderr, r.stderr
