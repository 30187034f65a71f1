"""`lstmlab export RUN`: a run's model as ONNX or as a standalone safetensors file.

Both formats are written only from a model file that `lstmlab.load` reads back whole (names,
shapes and finite weights), so an export never hands on a file that cannot load.

An ONNX file carries what its user needs without lstmlab's code, in its metadata_props
(onnxruntime: `InferenceSession(path).get_modelmeta().custom_metadata_map`):

    lstmlab.inputs         what "x" is: token ids or features, how many, the time-major shape
    lstmlab.outputs        what "y", "h_n" (and "c_n") are
    lstmlab.model_config   the model file's description of the network, JSON
    lstmlab.task           the task's name (from RUN/config.json, when the run has one)
    lstmlab.task_options   the task's options, JSON
    lstmlab.preprocessing  RUN/preprocessing.json as JSON, when the run keeps one: what turns
                           the user's data into x and y back into data (vocabularies,
                           scalers, label names)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .atomic import atomic_path
from .files import load, read_config

RUN_CONFIG = "config.json"
# the task's stored preprocessing (lstmlab.tasks.rundata writes it); read as plain JSON here,
# since io sits above the tasks
PREPROCESSING = "preprocessing.json"


def export_run(run_dir, fmt: str, out_path=None) -> Path:
    """Write the run's best model in `fmt` ("onnx" or "safetensors"); returns the path."""
    run_dir = Path(run_dir)
    model_file = run_dir / "model.safetensors"
    if not model_file.is_file():
        raise ValueError(f"{run_dir} has no model.safetensors; give a run folder written by "
                         "`lstmlab train` that reached its first evaluation")
    if fmt not in ("onnx", "safetensors"):
        raise ValueError(f"format must be 'onnx' or 'safetensors', got {fmt!r}")
    out = Path(out_path) if out_path else run_dir / "export" / f"model.{fmt}"
    description = read_config(model_file)
    if fmt == "safetensors":
        # zoneout changes inference, so only the torch engine builds such a model
        described = description.get("model") or description.get("args") or {}
        load(model_file, engine="torch" if described.get("zoneout") else "numpy")
        with atomic_path(out) as tmp:
            shutil.copyfile(model_file, tmp)
        return out
    from .onnx import export_onnx

    if description.get("kind") == "Seq2Seq":
        raise ValueError(f"{run_dir} holds a seq2seq (encoder-decoder) model; ONNX export covers "
                         "sequence models only: use --format safetensors")
    model = load(model_file, engine="numpy")
    metadata = _run_metadata(run_dir, model, description)
    if hasattr(model, "rnn"):                                    # a task's SequenceModel
        return export_onnx(model.rnn, out, head=model.head, embedding=model.embedding,
                           readout=model.config.readout, metadata=metadata)
    return export_onnx(model, out, metadata=metadata)


def _run_metadata(run_dir, model, description: dict) -> dict[str, str]:
    """The ONNX metadata of a run's model (see the module's docstring): what goes in, what
    comes out, the task and its preprocessing."""
    run_dir = Path(run_dir)
    meta = {"lstmlab.model_config": json.dumps(description)}
    config = _read_json(run_dir / RUN_CONFIG)
    task = None
    if config is not None:
        task = config.get("task")
        if not isinstance(task, str):
            raise ValueError(f"{run_dir / RUN_CONFIG} names no task; the run folder is damaged")
        meta["lstmlab.task"] = task
        meta["lstmlab.task_options"] = json.dumps(config.get("task_options", {}))
    # the run's stored preprocessing (vocabularies, scalers, label names) goes in whole
    preprocessing = _read_json(run_dir / PREPROCESSING)
    if preprocessing is not None:
        meta["lstmlab.preprocessing"] = json.dumps(preprocessing)
    meta["lstmlab.inputs"] = _inputs_text(model, preprocessing is not None)
    meta["lstmlab.outputs"] = _outputs_text(model, task, preprocessing is not None)
    return meta


def _read_json(path: Path):
    """A run's JSON file, None when the run has none."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:              # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not valid JSON ({str(e).splitlines()[0]}); "
                         "the run folder is damaged") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a JSON object; the run folder is damaged")
    return value


def _inputs_text(model, preprocessed: bool) -> str:
    see = ("; the task's preprocessing (vocabulary, scaling) is in lstmlab.preprocessing"
           if preprocessed else "")
    if hasattr(model, "rnn"):                                    # a SequenceModel: time-major
        c = model.config
        if c.vocab_size:
            return (f"x: int64 token ids (T, B), time-major: T steps of B sequences, each id in "
                    f"0..{c.vocab_size - 1}{see}")
        return (f"x: {c.dtype} features (T, B, {c.input_size}), time-major: T steps of B "
                f"sequences, {c.input_size} feature(s) per step{see}")
    shape = "(B, T, {0}), batch-major" if model.batch_first else "(T, B, {0}), time-major"
    return (f"x: {model.dtype.name} features {shape.format(model.input_size)}: T steps of B "
            f"sequences, {model.input_size} feature(s) per step{see}")


def _outputs_text(model, task: str | None, preprocessed: bool) -> str:
    rnn = model.rnn if hasattr(model, "rnn") else model
    L, D, H, R = rnn.num_layers, rnn.num_directions, rnn.hidden_size, rnn.out_size
    if hasattr(model, "rnn"):
        O, readout = model.config.output_size, model.config.readout
        y = {"sequence": f"y: (T, B, {O}), the head's {O} output(s) at every step",
             "last": f"y: (B, {O}), the head's {O} output(s) on each sequence's final state "
                     "(top layer, directions side by side)",
             "mean": f"y: (B, {O}), the head's {O} output(s) on the top layer's outputs averaged "
                     "over all T steps (the graph takes no lengths: give unpadded sequences)",
             }[readout]
        if task:
            y += f", the predictions of task {task!r}"
        if preprocessed:
            y += " (lstmlab.preprocessing says how they map back to the data)"
    else:
        y = f"y: (T, B, {D * R}), the top layer's h at every step, directions side by side"
    states = f"h_n: (L*D, B, {R}), the final h of each of the L={L} layer(s) and D={D} direction(s)"
    if rnn.spec.family == "lstm":
        states += f"; c_n: (L*D, B, {H}), their final cell states"
    return f"{y}; {states}"
