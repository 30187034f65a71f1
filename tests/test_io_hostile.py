"""Hostile model files and arguments: every one is answered with ValueError and one short line,
and a small file never makes lstmlab allocate the model its metadata claims."""

import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import lstmlab
from lstmlab.config import ModelConfig
from lstmlab.numpy.model import SequenceModel

MAX_LINE = 400                                                   # what "one short line" means here


def _refused(call, *args, **kwargs) -> str:
    """call(...) must raise ValueError (nothing else) with one line of bounded length."""
    with pytest.raises(ValueError) as e:
        call(*args, **kwargs)
    assert type(e.value) is ValueError
    msg = str(e.value)
    assert msg and "\n" not in msg and len(msg) < MAX_LINE, msg[:1000]
    return msg


def _bare(tmp_path, name="m.safetensors", **kw):
    m = lstmlab.numpy.LSTM(3, 4, num_layers=2, seed=1, **kw)
    return lstmlab.save(m, tmp_path / name)


def _network(tmp_path, name="s.safetensors"):
    cfg = ModelConfig(input_size=2, output_size=3, hidden_size=4, vocab_size=5)
    return lstmlab.save(SequenceModel(cfg, seed=1), tmp_path / name)


def _split(path):
    """(header dict, tensor bytes) of a safetensors file."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path, header, data):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _with_config(path, edit):
    """Rewrite the config in a file's metadata: edit(config) returns the new one (any JSON)."""
    header, data = _split(path)
    meta = header["__metadata__"]
    meta["config"] = json.dumps(edit(json.loads(meta["config"])))
    return _write(path, header, data)


def _set_args(**changes):
    return lambda c: {**c, "args": {**c["args"], **changes}}


def _set_model(**changes):
    return lambda c: {**c, "model": {**c["model"], **changes}}


def _without(key, where="args"):
    return lambda c: {**c, where: {k: v for k, v in c[where].items() if k != key}}


# --- crafted metadata ------------------------------------------------------------------
CONFIG_EDITS = {
    "config a list": lambda c: [c],
    "config a string": lambda c: "LSTM",
    "kind unknown": lambda c: {**c, "kind": "Transformer"},
    "kind a list": lambda c: {**c, "kind": ["LSTM"]},
    "kind missing": lambda c: {"args": c["args"]},
    "args a list": lambda c: {**c, "args": [1, 2]},
    "args missing": lambda c: {"kind": "LSTM"},
    "extra top-level key": lambda c: {**c, "code": "import os"},
    "hidden_size a string": _set_args(hidden_size="4"),
    "hidden_size negative": _set_args(hidden_size=-4),
    "hidden_size zero": _set_args(hidden_size=0),
    "hidden_size a float": _set_args(hidden_size=4.0),
    "hidden_size a bool": _set_args(hidden_size=True),
    "hidden_size null": _set_args(hidden_size=None),
    "hidden_size a list": _set_args(hidden_size=[4]),
    "hidden_size huge": _set_args(hidden_size=10**12),
    "hidden_size beyond float": _set_args(hidden_size=10**400),
    "6000 units x 2 layers": _set_args(hidden_size=6000),
    "a million layers": _set_args(num_layers=10**6),
    "input_size huge": _set_args(input_size=10**9),
    "proj_size not below hidden": _set_args(proj_size=4),
    "proj_size negative": _set_args(proj_size=-1),
    "bidirectional a string": _set_args(bidirectional="yes"),
    "batch_first a number": _set_args(batch_first=1),
    "dtype unknown": _set_args(dtype="float16"),
    "variant unknown": _set_args(variant="transformer"),
    "variant of another family": _set_args(variant="gru"),
    "variant a number": _set_args(variant=7),
    "variant flag of the wrong type": _set_args(variant="lstm+peepholes=yes"),
    "variant huge": _set_args(variant="x" * 50_000),
    "dropout nan": _set_args(dropout=float("nan")),
    "zoneout above 1": _set_args(zoneout=2.0),
    "unknown arg": _set_args(activation="relu"),
    "unknown arg with a huge name": _set_args(**{"y" * 50_000: 1}),
    "missing input_size": _without("input_size"),
    "missing variant": _without("variant"),
}


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_bad_config_in_a_bare_model_file(tmp_path, case, engine):
    path = _with_config(_bare(tmp_path), CONFIG_EDITS[case])
    assert str(path) in _refused(lstmlab.load, path, engine=engine)
    _refused(lstmlab.io.files.read_config, path)


NETWORK_EDITS = {
    "model a list": lambda c: {**c, "model": [1]},
    "model missing": lambda c: {"kind": "SequenceModel"},
    "output_size missing": _without("output_size", "model"),
    "hidden_size a string": _set_model(hidden_size="12"),
    "vocab_size negative": _set_model(vocab_size=-1),
    "vocab_size huge": _set_model(vocab_size=10**8),
    "readout unknown": _set_model(readout="first"),
    "readout a list": _set_model(readout=["last"]),
    "forget_bias nan": _set_model(forget_bias=float("nan")),
    "forget_bias a string": _set_model(forget_bias="1"),
    "recurrent_init unknown": _set_model(recurrent_init="zeros"),
    "unknown setting": _set_model(attention=True),
    "kind Seq2Seq on a sequence model": lambda c: {**c, "kind": "Seq2Seq",
                                                   "model": {**c["model"], "architecture": "seq2seq"}},
}


@pytest.mark.parametrize("case", list(NETWORK_EDITS))
def test_bad_config_in_a_network_file(tmp_path, case):
    path = _with_config(_network(tmp_path), NETWORK_EDITS[case])
    assert str(path) in _refused(lstmlab.load, path)


def test_config_not_json_nested_or_huge(tmp_path):
    path = _bare(tmp_path)
    header, data = _split(path)
    for text in ("{not json", "[" * 100_000 + "]" * 100_000, json.dumps({"kind": "x" * 200_000})):
        header["__metadata__"]["config"] = text
        _refused(lstmlab.load, _write(path, header, data))
    for version in ("one", "-1", "1_0", "9" * 50):
        header["__metadata__"].update(config=json.dumps({}), format_version=version)
        _refused(lstmlab.load, _write(path, header, data))


# --- the tensors against the config ------------------------------------------------------
def _retensored(path, edit):
    """The file rewritten with its own metadata and edit(arrays) as its tensors."""
    from safetensors.numpy import save_file

    arrays, meta = lstmlab.io.files.read_tensors(path)
    edit(arrays)
    save_file(arrays, str(path), metadata=meta)
    return path


def _reshape(a):
    a["weight_ih_l0"] = a["weight_ih_l0"].reshape(3, 16)


def _drop(a):
    del a["bias_hh_l1"]


def _extra(a):
    a["weight_ih_l9"] = np.zeros(2, np.float32)


def _ints(a):
    a["bias_hh_l1"] = a["bias_hh_l1"].astype(np.int32)


@pytest.mark.parametrize("edit, match", [(_reshape, "weight_ih_l0 has shape (3, 16)"),
                                         (_drop, "missing 'bias_hh_l1'"),
                                         (_extra, "unknown 'weight_ih_l9'"),
                                         (_ints, "bias_hh_l1 has dtype 'I32'")])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_tensors_that_do_not_match_the_config(tmp_path, edit, match, engine):
    path = _retensored(_bare(tmp_path), edit)
    assert match in _refused(lstmlab.load, path, engine=engine)
    assert match in _refused(lstmlab.io.files.read_config, path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_nan_or_inf_weights_are_refused_naming_the_tensor(tmp_path, value, engine):
    m = lstmlab.numpy.LSTM(3, 4, seed=1, dtype=np.float64)
    path = lstmlab.save(m, tmp_path / "m.safetensors")
    header, data = _split(path)
    start = header["bias_hh_l0"]["data_offsets"][0]
    data = data[:start] + struct.pack("<d", value) + data[start + 8:]
    msg = _refused(lstmlab.load, _write(path, header, data), engine=engine)
    assert "weight bias_hh_l0" in msg and "NaN or inf" in msg


def test_float64_weights_beyond_float32_are_refused(tmp_path):
    m = lstmlab.numpy.LSTM(3, 4, seed=1, dtype=np.float64)
    path = lstmlab.save(m, tmp_path / "m.safetensors")
    path = _with_config(path, _set_args(dtype="float32"))        # float64 tensors, float32 model
    header, data = _split(path)
    start = header["weight_hh_l0"]["data_offsets"][0]
    data = data[:start] + struct.pack("<d", 1e300) + data[start + 8:]
    assert "weight_hh_l0" in _refused(lstmlab.load, _write(path, header, data))


def test_saving_nan_weights_is_refused(tmp_path):
    m = lstmlab.numpy.LSTM(3, 4)
    m.params["weight_hh_l0"][0, 0] = np.nan
    assert "weight_hh_l0" in _refused(lstmlab.save, m, tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


# --- memory: a small file cannot claim a big model -----------------------------------------
# VmHWM, the peak resident size of this process's own memory: getrusage's ru_maxrss would
# carry over the (large) pytest parent's peak across fork and exec
_PEAK = """
import re, sys
import lstmlab
try:
    lstmlab.load(sys.argv[1], engine=sys.argv[2])
except ValueError as e:
    status = open("/proc/self/status").read()
    print(len(str(e)), re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
"""


@pytest.mark.parametrize("edit", [_set_args(hidden_size=6000), _set_args(num_layers=10**6),
                                  _set_args(hidden_size=40_000, num_layers=1)])
def test_a_small_file_claiming_a_huge_model_stays_small(tmp_path, edit):
    """The 2.4 KB file that claimed 6,000 units x 2 layers took 3.9 GB; 10^6 layers took 7.5 GB
    and printed an 88 MB error line."""
    path = _with_config(_bare(tmp_path), edit)
    assert path.stat().st_size < 3000
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path), "numpy"], capture_output=True,
                         text=True, check=True).stdout.split()
    msg_len, peak_kb = int(out[0]), int(out[1])
    assert msg_len < MAX_LINE
    assert peak_kb < 300_000, f"peak {peak_kb} KB"              # the interpreter and numpy: ~60 MB


# --- files that are not ours ------------------------------------------------------------
def _not_ours(tmp_path):
    good = _bare(tmp_path, "good.safetensors").read_bytes()
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign), metadata={"format": "lstmlab"})
    return {"empty": b"", "truncated": good[: len(good) // 2], "header only": good[:8],
            "pickle": pickle.dumps({"weight": [1.0]}), "text": b"hello\n" * 100,
            "huge header length": struct.pack("<Q", 2**62) + b"{}",
            "foreign with our format": foreign.read_bytes()}


@pytest.mark.parametrize("kind", ["empty", "truncated", "header only", "pickle", "text",
                                  "huge header length", "foreign with our format"])
def test_files_that_are_not_ours(tmp_path, kind):
    path = tmp_path / "x.safetensors"
    path.write_bytes(_not_ours(tmp_path)[kind])
    for call in (lstmlab.load, lstmlab.io.files.read_config):
        assert str(path) in _refused(call, path)
    if kind != "foreign with our format":                        # that one is a readable safetensors file
        assert str(path) in _refused(lstmlab.io.files.read_tensors, path)


def test_a_directory_is_not_a_model_file(tmp_path):
    assert "not a file" in _refused(lstmlab.load, tmp_path)


# --- bad arguments to the API --------------------------------------------------------------
@pytest.mark.parametrize("path", [None, 3, ["m.safetensors"], b"m.safetensors", ""])
def test_bad_paths(tmp_path, path):
    _refused(lstmlab.load, path)
    _refused(lstmlab.io.files.read_config, path)
    _refused(lstmlab.save, lstmlab.numpy.LSTM(3, 4), path)


@pytest.mark.parametrize("engine", ["jax", None, 3, ["numpy"], "NUMPY"])
def test_bad_engine(tmp_path, engine):
    _refused(lstmlab.load, _bare(tmp_path), engine=engine)


@pytest.mark.parametrize("engine, device", [("torch", "tpu"), ("torch", 3), ("torch", ["cpu"]),
                                            ("numpy", "cuda"), ("numpy", 0)])
def test_bad_device(tmp_path, engine, device):
    """The numpy engine ignored device= silently."""
    _refused(lstmlab.load, _bare(tmp_path), engine=engine, device=device)


def test_save_refuses_what_is_not_a_model_and_unwritable_places(tmp_path):
    for thing in (object(), None, {"w": np.zeros(3)}, np.zeros(3)):
        _refused(lstmlab.save, thing, tmp_path / "m.safetensors")
    (tmp_path / "a file").write_text("")
    _refused(lstmlab.save, lstmlab.numpy.LSTM(3, 4), tmp_path / "a file" / "m.safetensors")
    _refused(lstmlab.save, lstmlab.numpy.LSTM(3, 4), tmp_path)   # a directory


BAD_STACK_ARGS = [
    dict(input_size="3"), dict(input_size=0), dict(hidden_size=4.5), dict(hidden_size=True),
    dict(hidden_size=10**7), dict(hidden_size=10**400), dict(num_layers=10**12), dict(num_layers=-1),
    dict(proj_size=4), dict(proj_size="1"), dict(variant="lstn"), dict(variant=3),
    dict(variant="x" * 100_000), dict(variant="gru"), dict(variant=["lstm"]),
    dict(variant="lstm+peepholes=yes"), dict(dtype="float16"), dict(dtype=3),
    dict(forget_bias=float("nan")), dict(forget_bias=float("inf")), dict(forget_bias="1"),
    dict(recurrent_init="zeros"), dict(recurrent_init=["orthogonal"]),
]


@pytest.mark.parametrize("kw", BAD_STACK_ARGS, ids=lambda kw: str(kw)[:40])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_bad_stack_arguments(kw, engine):
    cls = lstmlab.numpy.LSTM if engine == "numpy" else lstmlab.torch.LSTM
    args = {"input_size": 3, "hidden_size": 4, **kw}
    _refused(cls, args.pop("input_size"), args.pop("hidden_size"), **args)


@pytest.mark.parametrize("spec, flags", [
    ("lstm", dict(peepholes="yes")), ("lstm", dict(peepholes=1)), ("lstm", dict(input_activation=3)),
    ("lstm", dict(output_activation=None)), ("gru", dict(linear_before_reset="no")),
    ("rnn_tanh", dict(nonlinearity=["relu"])), ("lstm+peepholes=yes", {}), ("x" * 100_000, {}),
    (None, {}), (["lstm"], {}), ("lstm", {"z" * 10_000: True}), ("lstm+", {}),
])
def test_bad_variants(spec, flags):
    _refused(lstmlab.variant, spec, **flags)


def test_a_composed_name_with_the_same_flag_given_again_composes():
    assert lstmlab.variant("lstm+peepholes", peepholes=True).peepholes is True
    assert lstmlab.variant("cifg+peepholes", peepholes=False) == lstmlab.VARIANTS["cifg"]


@pytest.mark.parametrize("big", [1e39, -1e300])
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_float64_input_beyond_float32_is_refused(big, engine):
    """It became inf inside the model, and NaN came out."""
    m = (lstmlab.numpy.LSTM if engine == "numpy" else lstmlab.torch.LSTM)(4, 5)
    x = np.ones((3, 2, 4))
    x[1, 1, 2] = big
    msg = _refused(m, x)
    assert "(1, 1, 2)" in msg and "float32" in msg
    if engine == "numpy":
        _refused(m.step, x[1])
    x64 = (lstmlab.numpy.LSTM if engine == "numpy" else lstmlab.torch.LSTM)(4, 5, dtype=np.float64)
    y = x64(x)[0]
    assert np.isfinite(np.asarray(y.detach() if hasattr(y, "detach") else y)).all()


def test_load_state_dict_refuses_nan_weights_naming_them():
    m = lstmlab.numpy.LSTM(3, 4)
    sd = {k: v.copy() for k, v in m.params.items()}
    sd["weight_hh_l0"][1, 2] = np.inf
    assert "weight_hh_l0" in _refused(m.load_state_dict, sd)
    sd = {k: v.astype(np.float64) for k, v in m.params.items()}
    sd["weight_hh_l0"][1, 2] = 1e39                              # float64 weights, a float32 model
    assert "weight_hh_l0" in _refused(m.load_state_dict, sd)


def test_the_package_and_io_files_import_without_a_cycle():
    """io.files used to import __version__ from the package that imports io.files."""
    code = "import lstmlab.io.files as f, lstmlab; assert f.load is lstmlab.load"
    subprocess.run([sys.executable, "-c", code], check=True)
    from pathlib import Path

    import lstmlab.io.files as files

    assert "from .. import" not in Path(files.__file__).read_text()


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_evaluate_refuses_a_run_whose_model_has_nan_weights(tmp_path, engine):
    """The torch engine loaded them and printed NaN metrics, with exit 0."""
    from safetensors.numpy import save_file

    run = tmp_path / "run"
    train = ["train", "sine", "--steps", "4", "--eval-every", "2", "--hidden-size", "4",
             "--batch-size", "4", "-o", "test_size=8", "--out", run]
    assert _cli(*train).returncode == 0
    arrays, meta = lstmlab.io.files.read_tensors(run / "model.safetensors")
    name = sorted(arrays)[0]
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    save_file(arrays, str(run / "model.safetensors"), metadata=meta)
    r = _cli("evaluate", run, "--engine", engine)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and f"weight {name}" in r.stderr, r.stderr


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lstmlab", *map(str, args)], capture_output=True,
                          text=True)
