"""`lstmlab export RUN`: only files that load are exported, and an ONNX export of a task's
run says in its metadata what goes in and what comes out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import lstmlab
from lstmlab.config import ModelConfig
from lstmlab.io.export import export_run
from lstmlab.numpy.model import SequenceModel

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run_with_model(tmp_path, **config) -> tuple:
    model = SequenceModel(ModelConfig(**{"input_size": 2, "output_size": 1, "hidden_size": 4,
                                         **config}), seed=1)
    run = tmp_path / "run"
    lstmlab.save(model, run / "model.safetensors")
    return run, model


def _damage(model_file, change):
    """Rewrite the model file's tensors with `change`, keeping its lstmlab metadata."""
    from safetensors import safe_open

    with safe_open(str(model_file), framework="numpy") as f:
        meta = f.metadata()
    save_file(change(load_file(str(model_file))), str(model_file), metadata=meta)


@pytest.mark.parametrize("damage", ["nan", "inf", "extra", "missing"])
def test_safetensors_export_refuses_a_file_that_cannot_load(tmp_path, damage):
    """It used to copy the run's file unread: a damaged or diverged model was exported with
    exit 0 into a file lstmlab.load refuses."""
    run, _ = _run_with_model(tmp_path)

    def change(t):
        k = "rnn.weight_hh_l0"
        if damage in ("nan", "inf"):
            t[k] = t[k].copy()
            t[k][1, 2] = np.nan if damage == "nan" else np.inf
        elif damage == "extra":
            t["bogus"] = np.zeros(3, np.float32)
        else:
            del t[k]
        return t

    _damage(run / "model.safetensors", change)
    with pytest.raises(ValueError) as e:
        export_run(run, "safetensors")
    assert "\n" not in str(e.value) and "model.safetensors" in str(e.value)
    assert not (run / "export").exists() or not any((run / "export").iterdir())
    if damage != "nan":
        return
    r = subprocess.run([sys.executable, "-m", "lstmlab", "export", str(run), "--format",
                        "safetensors"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr


def test_safetensors_export_loads_back(tmp_path):
    run, model = _run_with_model(tmp_path, variant="gru", vocab_size=7)
    out = export_run(run, "safetensors", tmp_path / "out.bin")
    loaded = lstmlab.load(out)
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)


def test_safetensors_export_of_a_zoneout_model(tmp_path):
    """Zoneout models load only in the torch engine; their export is checked there."""
    torch_model = lstmlab.torch.SequenceModel(ModelConfig(input_size=2, output_size=1,
                                                          hidden_size=4, zoneout=0.2))
    run = tmp_path / "run"
    lstmlab.save(torch_model, run / "model.safetensors")
    out = export_run(run, "safetensors")
    assert lstmlab.load(out, engine="torch").config.zoneout == 0.2


KEYS = {"lstmlab.variant", "lstmlab.model", "lstmlab.graph", "lstmlab.model_config",
        "lstmlab.task", "lstmlab.task_options", "lstmlab.inputs", "lstmlab.outputs",
        "lstmlab.preprocessing"}


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    from lstmlab.config import TrainConfig
    from lstmlab.tasks import get_task
    from lstmlab.train import fit

    task = get_task("sine", seed=0, test_size=16)
    path = tmp_path_factory.mktemp("runs") / "sine"
    fit(task, task.model_config(hidden_size=6), TrainConfig(steps=4, batch_size=4, eval_every=2),
        path)
    return path


def test_onnx_export_of_a_run_carries_its_meaning(sine_run, tmp_path):
    path = export_run(sine_run, "onnx", tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert set(meta) == KEYS
    config = json.loads((sine_run / "config.json").read_text())
    assert meta["lstmlab.task"] == "sine"
    assert json.loads(meta["lstmlab.task_options"]) == config["task_options"]
    assert json.loads(meta["lstmlab.model_config"])["model"] == config["model"]
    assert json.loads(meta["lstmlab.preprocessing"]) == \
        json.loads((sine_run / "preprocessing.json").read_text())
    assert meta["lstmlab.inputs"].startswith("x: float32 features (T, B, 1), time-major")
    assert meta["lstmlab.outputs"].startswith("y: (T, B, 1), the head's 1 output(s) at every step")
    assert "c_n: (L*D, B, 6)" in meta["lstmlab.outputs"]

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_modelmeta().custom_metadata_map == meta      # what a runtime's user sees
    model = lstmlab.load(sine_run / "model.safetensors")
    x = np.random.default_rng(0).standard_normal((9, 3, 1)).astype(np.float32)
    y, (h, c) = model(x)
    got = dict(zip(["y", "h_n", "c_n"], sess.run(None, {"x": x})))
    for name, want in (("y", y), ("h_n", h), ("c_n", c)):
        np.testing.assert_allclose(got[name], want, atol=1e-5, rtol=0, err_msg=name)


def test_token_ids_and_last_readout_are_described(tmp_path):
    """A run folder with only a model file: the model's own description, no task keys."""
    run, _ = _run_with_model(tmp_path, variant="gru", vocab_size=11, readout="last",
                             bidirectional=True)
    path = export_run(run, "onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "lstmlab.task" not in meta and "lstmlab.preprocessing" not in meta
    assert meta["lstmlab.inputs"].startswith("x: int64 token ids (T, B), time-major")
    assert "each id in 0..10" in meta["lstmlab.inputs"]
    assert meta["lstmlab.outputs"].startswith("y: (B, 1), the head's 1 output(s) on each "
                                              "sequence's final state")
    assert "D=2 direction(s)" in meta["lstmlab.outputs"] and "c_n" not in meta["lstmlab.outputs"]


def test_damaged_run_config_is_named(tmp_path):
    run, _ = _run_with_model(tmp_path)
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json is not a JSON object; the run folder is damaged"):
        export_run(run, "onnx")
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json is not valid JSON \(.*\); the run folder"):
        export_run(run, "onnx")


def test_export_onnx_metadata_argument(tmp_path):
    from lstmlab.io.onnx import export_onnx

    model = lstmlab.numpy.LSTM(2, 3)
    path = export_onnx(model, tmp_path / "m.onnx", metadata={"author": "me", "units": "kelvin"})
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["author"] == "me" and meta["units"] == "kelvin" and meta["lstmlab.variant"] == "lstm"
    with pytest.raises(ValueError, match="metadata key 'lstmlab.graph' is written by export_onnx"):
        export_onnx(model, tmp_path / "m.onnx", metadata={"lstmlab.graph": "x"})
    with pytest.raises(ValueError, match="metadata must map str to str; 'n' maps to a int"):
        export_onnx(model, tmp_path / "m.onnx", metadata={"n": 3})
    with pytest.raises(ValueError, match="metadata must be a dict of str to str, got list"):
        export_onnx(model, tmp_path / "m.onnx", metadata=[("a", "b")])
