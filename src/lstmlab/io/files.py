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
from pathlib import Path

import numpy as np

from .. import __version__
from .atomic import atomic_path

FORMAT = "lstmlab"
FORMAT_VERSION = 1
# format_version -> function upgrading that version's config to the next one
_UPGRADES: dict[int, object] = {}


def save_tensors(path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write arrays and string metadata to a safetensors file, atomically."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)
    return Path(path)


def read_tensors(path, what: str = "model file") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) from a safetensors file; ValueError with one line if it is not one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty; it was not written completely, or not by lstmlab")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{what} {path} is not a readable safetensors file ({first}); "
                         "it may be truncated, corrupted or another format") from None
    return arrays, meta


def save(model, path) -> Path:
    """Save a NumPy or torch model (LSTM/GRU/RNN, SequenceModel or Seq2Seq) to one .safetensors
    file."""
    tensors = {k: _to_numpy(v) for k, v in _state(model).items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "lstmlab_version": __version__,
            "config": json.dumps(_describe(model))}
    return save_tensors(path, tensors, meta)


def load(path, engine: str = "numpy", device=None):
    """Build the model a file describes, in `engine` ("numpy" or "torch"), with its weights."""
    if engine not in ("numpy", "torch"):
        raise ValueError(f"engine must be 'numpy' or 'torch', got {engine!r}")
    arrays, meta = read_tensors(path)
    config = _read_config(path, meta)
    model = build(config, engine, device=device)
    try:
        if engine == "numpy":
            model.load_state_dict(arrays)
        else:
            import torch

            state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
            _check_torch_names(model, state, path)
            model.load_state_dict(state)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path} does not match the model it describes: "
                         f"{str(e).splitlines()[0]}") from None
    return model


def read_config(path) -> dict:
    """The `config` a model file carries (upgraded to the current format), without weights."""
    _, meta = read_tensors(path)
    return _read_config(path, meta)


def build(config: dict, engine: str, device=None):
    """A fresh model of `engine` from a file's config dict."""
    from ..config import ModelConfig

    kind = config.get("kind")
    if kind in ("Seq2Seq", "SequenceModel"):                     # which one: its architecture
        mc = ModelConfig.from_dict(config["model"])
        cls = network_class(mc, engine)
        return cls(_inference_only(mc)) if engine == "numpy" else cls(mc, device=device)
    if kind in ("LSTM", "GRU", "RNN"):
        args = dict(config["args"])
        if engine == "numpy":
            from .. import numpy as engine_mod

            args = _numpy_args(args)
        else:
            from .. import torch as engine_mod

            if device is not None:
                args["device"] = device
        return getattr(engine_mod, kind)(**args)
    raise ValueError(f"unknown model kind {kind!r} in the file's config")


def network_class(config, engine: str):
    """The class that builds ModelConfig `config` in `engine` ("numpy" or "torch"): Seq2Seq
    for architecture "seq2seq", else SequenceModel."""
    seq2seq = config.architecture == "seq2seq"
    if engine == "numpy":
        if seq2seq:
            from ..numpy.seq2seq import Seq2Seq

            return Seq2Seq
        from ..numpy.model import SequenceModel

        return SequenceModel
    if seq2seq:
        from ..torch.seq2seq import Seq2Seq

        return Seq2Seq
    from ..torch import SequenceModel

    return SequenceModel


# --- internals ---------------------------------------------------------------------------
_REGULARISERS = ("dropout", "recurrent_dropout", "zoneout", "weight_drop")


def _inference_only(mc):
    """The config without training-only regularisers, for the NumPy engine.

    Dropout of every kind is the identity at inference, so those models run unchanged;
    zoneout is not (it mixes the previous state in), so those need the torch engine.
    """
    import dataclasses

    if mc.zoneout:
        raise ValueError("this model was trained with zoneout, which changes inference; "
                         "load it with engine='torch'")
    return dataclasses.replace(mc, dropout=0.0, recurrent_dropout=0.0, weight_drop=0.0)


def _numpy_args(args):
    if args.get("zoneout"):
        raise ValueError("this model was trained with zoneout, which changes inference; "
                         "load it with engine='torch'")
    return {k: v for k, v in args.items() if k not in _REGULARISERS + ("fast",)}


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


def _describe(model) -> dict:
    """What to build: the config of a SequenceModel or Seq2Seq, or a bare recurrent model's
    arguments."""
    if hasattr(model, "config") and hasattr(model.config, "to_dict"):
        kind = "Seq2Seq" if model.config.architecture == "seq2seq" else "SequenceModel"
        return {"kind": kind, "model": model.config.to_dict()}
    kind = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}.get(getattr(getattr(model, "spec", None),
                                                                   "family", None))
    if kind is None:
        raise ValueError(f"cannot save a {type(model).__name__}: expected an lstmlab model")
    dtype = next(iter(_state(model).values())).dtype
    args = {"input_size": model.input_size, "hidden_size": model.hidden_size,
            "num_layers": model.num_layers, "bidirectional": model.bidirectional,
            "variant": model.spec.name, "batch_first": model.batch_first,
            "dtype": str(dtype).replace("torch.", "")}
    if kind == "LSTM":
        args["proj_size"] = model.proj_size
    for name in _REGULARISERS:
        if getattr(model, name, 0):
            args[name] = getattr(model, name)
    return {"kind": kind, "args": args}


def _read_config(path, meta) -> dict:
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an lstmlab model "
                         "(no 'format: lstmlab' in its metadata)")
    try:
        version = int(meta.get("format_version", ""))
        config = json.loads(meta["config"])
    except (ValueError, KeyError):
        raise ValueError(f"{path} has damaged lstmlab metadata (format_version or config)") from None
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
    return config


def _check_torch_names(model, state, path):
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unknown = sorted(set(state) - set(own))
    if missing or unknown:
        raise ValueError(f"missing {missing}, unknown {unknown}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
