"""One model file for both engines: safetensors (no pickle, no code) plus JSON metadata.

    lstmlab.save(model, "m.safetensors")
    m = lstmlab.load("m.safetensors", engine="numpy")      # or engine="torch"

The header's metadata holds `format` ("lstmlab"), `format_version` and `config` (what to
build: a sequence model's ModelConfig, or a bare LSTM/GRU/RNN's arguments), so a file
written by one engine loads into the other. Reading never runs code from the file, and any
file that is not ours (empty, truncated, a pickle, someone else's safetensors, a newer
format) fails with one line that says what is wrong.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .._version import __version__
from ..checks import check_choice, check_numbers, count_text, listed, shown
from ..models import ENGINES, build, check_description, describe, min_params, param_shapes
from .atomic import atomic_path, unwritable

FORMAT = "lstmlab"
FORMAT_VERSION = 1
# format_version -> function upgrading that version's config to the next one
_UPGRADES: dict[int, Callable[[dict], dict]] = {}
# an lstmlab config is a few hundred characters; more is not ours, and is not parsed
_MAX_CONFIG_CHARS = 100_000
_FLOAT_DTYPES = ("F16", "F32", "F64")


def save_tensors(path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write arrays and string metadata to a safetensors file, atomically."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)
    return Path(path)


def read_tensors(path, what: str = "model file") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) from a safetensors file; ValueError with one line if it is not one."""
    path = _existing(path, what)
    with _opened(path, what) as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def read_header(path, what: str = "model file") -> tuple[dict[str, str], dict[str, tuple[str, tuple]]]:
    """(metadata, {name: (dtype, shape)}) of a safetensors file, without reading any tensor."""
    path = _existing(path, what)
    with _opened(path, what) as f:
        tensors = {}
        for k in f.keys():
            sl = f.get_slice(k)
            tensors[k] = (sl.get_dtype(), tuple(sl.get_shape()))
        return f.metadata() or {}, tensors


def save(model, path) -> Path:
    """Save a NumPy or torch model (LSTM/GRU/RNN, SequenceModel or Seq2Seq) to one .safetensors
    file. A model with NaN or inf weights is refused: such a file could not be loaded."""
    path = _as_path(path, "path")
    config = describe(model)
    tensors = {k: _to_numpy(v) for k, v in _state(model).items()}
    for k, v in tensors.items():
        check_numbers(v, f"weight {k}", hint="the model diverged; nothing was saved")
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "lstmlab_version": __version__,
            "config": json.dumps(config)}
    try:
        return save_tensors(path, tensors, meta)
    except OSError as e:                                         # while writing: a full disk
        raise unwritable(path, e) from None


def load(path, engine: str = "numpy", device=None):
    """Build the model a file describes, in `engine` ("numpy" or "torch"), with its weights.

    Everything the file claims is checked before anything is allocated: the config (types,
    ranges, known keys), then the tensors' names and shapes as its header lists them against
    those the config implies; then the weights must be finite numbers."""
    check_choice(engine, "engine", ENGINES)
    if engine == "numpy" and device not in (None, "cpu"):
        raise ValueError(f"the numpy engine runs on the CPU; device={shown(device)} needs engine='torch'")
    config = read_config(path)
    arrays, _ = read_tensors(path)
    dtype = (config["model"] if "model" in config else config["args"])["dtype"]
    for k, v in arrays.items():
        check_numbers(v, f"{path}: weight {k}", dtype,
                      hint="the file is damaged, or its model had diverged when it was saved")
    model = build(config, engine, device=device)
    try:
        if engine == "numpy":
            model.load_state_dict(arrays)
        else:
            import torch

            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path} does not match the model it describes: "
                         f"{_first_line(e)}") from None
    return model


def read_config(path) -> dict:
    """The `config` a model file carries (upgraded to the current format, checked, and checked
    against the tensors its header lists), without reading its weights."""
    path = _as_path(path, "model file")
    meta, header = read_header(path)
    config = _read_config(path, meta)
    _check_tensors(path, config, header)
    return config


# --- internals ---------------------------------------------------------------------------
def _as_path(path, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{what} must be a path (a str or os.PathLike), got {shown(path)}")
    return Path(path)


def _existing(path, what: str) -> Path:
    path = _as_path(path, what)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist" if not path.exists()
                         else f"{what} {path} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty; it was not written completely, or not by lstmlab")
    return path


@contextmanager
def _opened(path: Path, what: str):
    """safe_open(path), with every failure of the reader, opening or reading, as one line."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            yield f
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"{what} {path} is not a readable safetensors file ({_first_line(e)}); "
                         "it may be truncated, corrupted or another format") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)


def _state(model) -> dict:
    if hasattr(model, "params"):                                 # NumPy engine
        return model.params
    if hasattr(model, "state_dict"):                             # torch engine
        return model.state_dict()
    raise ValueError(f"cannot save a {type(model).__name__}: expected an lstmlab model")


def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def _read_config(path, meta) -> dict:
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an lstmlab model "
                         "(no 'format: lstmlab' in its metadata)")
    version, text = meta.get("format_version", ""), meta.get("config", "")
    if not (version.isdigit() and len(version) < 7) or not text:
        raise ValueError(f"{path} has damaged lstmlab metadata (format_version or config)")
    if len(text) > _MAX_CONFIG_CHARS:
        raise ValueError(f"{path} has damaged lstmlab metadata (a config of {len(text):,} "
                         f"characters; lstmlab writes a few hundred)")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"{path} has damaged lstmlab metadata (config is not JSON)") from None
    version = int(version)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} uses lstmlab file format version {version}; this lstmlab "
                         f"({__version__}) reads up to version {FORMAT_VERSION}: upgrade lstmlab")
    while version < FORMAT_VERSION:
        upgrade = _UPGRADES.get(version)
        if upgrade is None:
            raise ValueError(f"{path} uses lstmlab file format version {version}, which this "
                             f"lstmlab cannot read; it needs version {FORMAT_VERSION}")
        config, version = upgrade(config), version + 1
    if not isinstance(config, dict):
        raise ValueError(f"{path} has damaged lstmlab metadata (config is not an object)")
    try:
        return check_description(config)
    except ValueError as e:
        raise ValueError(f"{path} has a bad model config: {e}") from None


def _check_tensors(path, config: dict, header: dict) -> None:
    """The tensors the header lists must be those the config implies: same names, same
    shapes, float numbers. Compared before the model is built, so a small file cannot make
    lstmlab allocate a model of the size it claims."""
    have = sum(math.prod(shape) for _, shape in header.values())
    need = min_params(config)
    # listing the expected tensors costs time and memory in proportion to the sizes claimed;
    # far beyond what the file holds they are plainly not the file's
    if need > 8 * have + 1_000_000:
        raise ValueError(f"{path} describes a model of at least {count_text(need)} parameters but "
                         f"holds only {have:,} numbers; it is damaged, or its metadata was edited")
    want = param_shapes(config)
    missing = [k for k in want if k not in header]
    unknown = [k for k in header if k not in want]
    if missing or unknown:
        parts = ([f"missing {listed(missing)}"] if missing else []) + \
                ([f"unknown {listed(unknown)}"] if unknown else [])
        raise ValueError(f"{path} does not match the model it describes: {'; '.join(parts)}")
    for k, shape in want.items():
        dtype, got = header[k]
        if got != shape:
            raise ValueError(f"{path} does not match the model it describes: {k} has shape "
                             f"{got}, the model expects {shape}")
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{path}: weight {k} has dtype {shown(dtype)}; weights are floats")
