"""`lstmlab export RUN`: a run's model as ONNX or as a standalone safetensors file."""

from __future__ import annotations

import shutil
from pathlib import Path

from .atomic import atomic_path
from .files import load, read_config


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
    if fmt == "safetensors":
        read_config(model_file)                                  # refuses a damaged file
        with atomic_path(out) as tmp:
            shutil.copyfile(model_file, tmp)
        return out
    from .onnx import export_onnx

    if read_config(model_file).get("kind") == "Seq2Seq":
        raise ValueError(f"{run_dir} holds a seq2seq (encoder-decoder) model; ONNX export covers "
                         "sequence models only: use --format safetensors")
    model = load(model_file, engine="numpy")
    if hasattr(model, "rnn"):                                    # a task's SequenceModel
        return export_onnx(model.rnn, out, head=model.head, embedding=model.embedding,
                           readout=model.config.readout)
    return export_onnx(model, out)
