"""Model files: exact round trips, and every kind of bad file refused with one line."""

import json
import pickle
import struct

import numpy as np
import pytest

import lstmlab
from lstmlab.config import ModelConfig
from lstmlab.io import files
from lstmlab.numpy.model import SequenceModel


def _model(v="peephole"):
    spec = lstmlab.VARIANTS[v] if "+" not in v else lstmlab.variant(v)
    cls = {"lstm": lstmlab.numpy.LSTM, "gru": lstmlab.numpy.GRU, "rnn": lstmlab.numpy.RNN}[spec.family]
    return cls(3, 5, num_layers=2, bidirectional=True, variant=v, dtype=np.float64, seed=4)


@pytest.mark.parametrize("name", list(lstmlab.VARIANTS) + ["cifg+peepholes"])
def test_round_trip_every_variant(tmp_path, name):
    m = _model(name)
    path = lstmlab.save(m, tmp_path / "m.safetensors")
    back = lstmlab.load(path)
    assert type(back) is type(m) and back.spec == m.spec and back.dtype == m.dtype
    assert set(back.params) == set(m.params)
    assert all(np.array_equal(back.params[k], m.params[k]) for k in m.params)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    np.testing.assert_array_equal(back(x)[0], m(x)[0])


def test_sequence_model_round_trip(tmp_path):
    cfg = ModelConfig(input_size=2, output_size=3, variant="cifg+peepholes", hidden_size=6,
                      num_layers=2, readout="last")
    m = SequenceModel(cfg, seed=3)
    back = lstmlab.load(lstmlab.save(m, tmp_path / "s.safetensors"))
    assert back.config == cfg
    x = np.random.default_rng(1).standard_normal((5, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(back(x)[0], m(x)[0])


def test_metadata_says_what_it_is(tmp_path):
    path = lstmlab.save(_model(), tmp_path / "m.safetensors")
    _, meta = files.read_tensors(path)
    assert meta["format"] == "lstmlab" and meta["format_version"] == str(files.FORMAT_VERSION)
    assert json.loads(meta["config"])["args"]["variant"] == "peephole"


def _bad_files(tmp_path):
    good = lstmlab.save(_model(), tmp_path / "good.safetensors").read_bytes()
    out = {"empty": b"", "truncated": good[: len(good) // 2], "random": bytes(range(256)) * 8,
           "header_only": good[:8]}
    out["pickle"] = pickle.dumps({"weight": [1.0, 2.0]})
    from safetensors.numpy import save_file
    p = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(p), metadata={"author": "someone else"})
    out["foreign"] = p.read_bytes()
    header = json.dumps({"__metadata__": {"format": "lstmlab", "format_version": "99",
                                          "config": "{}"}}).encode()
    out["newer"] = struct.pack("<Q", len(header)) + header
    return out


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "header_only", "pickle",
                                  "foreign", "newer"])
def test_bad_file_one_line_error(tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(_bad_files(tmp_path)[kind])
    with pytest.raises(ValueError) as e:
        lstmlab.load(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    if kind == "newer":
        assert "version 99" in msg and "upgrade lstmlab" in msg


def test_pickle_is_never_executed(tmp_path):
    """A pickle whose loading would create a file: loading it as a model must not run it."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        lstmlab.load(path)
    assert not marker.exists()


def test_missing_file_and_bad_engine(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        lstmlab.load(tmp_path / "nope.safetensors")
    path = lstmlab.save(_model(), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="engine must be"):
        lstmlab.load(path, engine="jax")


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path):
    path = lstmlab.save(_model(), tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(ValueError):
        lstmlab.save(object(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]   # no temporary left


def test_old_format_version_fails_naming_the_version(tmp_path, monkeypatch):
    path = lstmlab.save(_model(), tmp_path / "m.safetensors")
    monkeypatch.setattr(files, "FORMAT_VERSION", 2)
    with pytest.raises(ValueError, match="version 1.*needs version 2"):
        lstmlab.load(path)
    monkeypatch.setitem(files._UPGRADES, 1, lambda cfg: cfg)      # an upgrade path: loads
    assert lstmlab.load(path).spec.name == "peephole"


@pytest.mark.parametrize("name", ["peephole", "layernorm", "gru_cho", "rnn_relu"])
def test_a_file_from_one_engine_loads_into_the_other(tmp_path, name):
    import torch

    m = _model(name)
    t = lstmlab.load(lstmlab.save(m, tmp_path / "n.safetensors"), engine="torch")
    assert isinstance(t, torch.nn.Module)
    x = np.random.default_rng(2).standard_normal((6, 2, 3))
    y_t, _ = t(torch.from_numpy(x))
    np.testing.assert_allclose(y_t.detach().numpy(), m(x)[0], atol=1e-12, rtol=0)
    back = lstmlab.load(lstmlab.save(t, tmp_path / "t.safetensors"), engine="numpy")
    assert all(np.array_equal(back.params[k], m.params[k]) for k in m.params)


def test_sequence_model_crosses_engines(tmp_path):
    import torch

    cfg = ModelConfig(input_size=2, output_size=1, variant="cifg", hidden_size=5, num_layers=2)
    n = SequenceModel(cfg, seed=5)
    t = lstmlab.load(lstmlab.save(n, tmp_path / "s.safetensors"), engine="torch")
    x = np.random.default_rng(3).standard_normal((7, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(t(torch.from_numpy(x))[0].detach().numpy(), n(x)[0], atol=1e-5)


def test_zoneout_models_refuse_the_numpy_engine(tmp_path):
    import torch  # noqa: F401 - the torch engine builds the model

    cfg = ModelConfig(input_size=2, output_size=1, hidden_size=4, zoneout=0.1)
    path = lstmlab.save(lstmlab.torch.SequenceModel(cfg), tmp_path / "z.safetensors")
    with pytest.raises(ValueError, match="zoneout.*engine='torch'"):
        lstmlab.load(path)
    assert lstmlab.load(path, engine="torch").config == cfg
