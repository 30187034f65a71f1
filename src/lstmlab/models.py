"""Building models in either engine from a description as data.

A model is described by a dict that JSON carries (a model file's `config`):

    {"kind": "SequenceModel" | "Seq2Seq", "model": ModelConfig.to_dict()}   a task's network
    {"kind": "LSTM" | "GRU" | "RNN", "args": {input_size, hidden_size, ...}}  a bare stack

`describe(model)` writes it, `check_description` validates one that came from a file (types,
ranges, known keys, sizes that fit in memory), `param_shapes` gives the parameter shapes it
implies without allocating anything, and `build` makes a fresh model of it in an engine.
`network_class(config, engine)` is the class that builds a ModelConfig.
"""

from __future__ import annotations

import dataclasses
import importlib

from .checks import check_bool, check_choice, check_int, check_memory, check_real, count_text, listed, shown
from .config import DTYPES, ModelConfig, stack_params
from .families import FAMILIES, stack_shapes
from .spec import CellSpec
from .spec import variant as make_spec

ENGINES = ("numpy", "torch")
NETWORKS = ("SequenceModel", "Seq2Seq")
STACKS = {f.class_name: name for name, f in FAMILIES.items()}  # a bare stack's kind -> its family
REGULARISERS = ("dropout", "recurrent_dropout", "zoneout", "weight_drop")
# a bare stack's arguments as `describe` writes them: those always written, then optional ones
_STACK_ARGS = ("input_size", "hidden_size", "num_layers", "bidirectional", "variant",
               "batch_first", "dtype")
_OPTIONAL_ARGS = ("proj_size",) + REGULARISERS


def network_class(config: ModelConfig, engine: str):
    """The class that builds ModelConfig `config` in `engine` ("numpy" or "torch"): Seq2Seq
    for architecture "seq2seq", else SequenceModel."""
    if engine == "numpy":
        from .numpy import model as numpy_model
        from .numpy import seq2seq as numpy_seq2seq

        return numpy_seq2seq.Seq2Seq if config.architecture == "seq2seq" else numpy_model.SequenceModel
    from .torch import model as torch_model
    from .torch import seq2seq as torch_seq2seq

    return torch_seq2seq.Seq2Seq if config.architecture == "seq2seq" else torch_model.SequenceModel


def build(description: dict, engine: str, device=None):
    """A fresh model of `engine` ("numpy" or "torch") from a description (see the module)."""
    d = check_description(description)
    check_choice(engine, "engine", ENGINES)
    if d["kind"] in NETWORKS:
        mc = ModelConfig.from_dict(d["model"])
        cls = network_class(mc, engine)
        return cls(_inference_only(mc)) if engine == "numpy" else cls(mc, device=device)
    args = dict(d["args"])
    if engine == "numpy":
        args = _numpy_args(args)
    elif device is not None:
        args["device"] = device
    return getattr(importlib.import_module(f"lstmlab.{engine}"), d["kind"])(**args)


def describe(model) -> dict:
    """The description of a NumPy or torch model: a SequenceModel's or Seq2Seq's config, or
    a bare recurrent stack's arguments."""
    if hasattr(model, "config") and hasattr(model.config, "to_dict"):
        kind = "Seq2Seq" if model.config.architecture == "seq2seq" else "SequenceModel"
        return {"kind": kind, "model": model.config.to_dict()}
    family = getattr(getattr(model, "spec", None), "family", None)
    params = getattr(model, "params", None)
    if params is None and hasattr(model, "state_dict"):
        params = model.state_dict()
    if not isinstance(family, str) or family not in FAMILIES or not params:
        raise ValueError(f"cannot save a {type(model).__name__}: expected an lstmlab model")
    dtype = next(iter(params.values())).dtype
    args = {"input_size": model.input_size, "hidden_size": model.hidden_size,
            "num_layers": model.num_layers, "bidirectional": model.bidirectional,
            "variant": model.spec.name, "batch_first": model.batch_first,
            "dtype": str(dtype).replace("torch.", "")}
    if FAMILIES[family].projection:
        args["proj_size"] = model.proj_size
    for name in REGULARISERS:
        if getattr(model, name, 0):
            args[name] = getattr(model, name)
    return {"kind": FAMILIES[family].class_name, "args": args}


def check_description(d) -> dict:
    """`d` if it describes a model this lstmlab can build, else ValueError with one line:
    the kind, the keys, every value's type and range, and sizes that fit in memory."""
    if not isinstance(d, dict):
        raise ValueError(f"a model description must be a mapping, got a {type(d).__name__}")
    kind = d.get("kind")
    if kind in NETWORKS:
        _check_keys(d, ("kind", "model"), (), "model description")
        ModelConfig.from_dict(d["model"])                         # checks every field and the size
        return d
    if not isinstance(kind, str) or kind not in STACKS:
        raise ValueError(f"unknown model kind {shown(kind)}; known: {', '.join(NETWORKS + tuple(STACKS))}")
    _check_keys(d, ("kind", "args"), (), "model description")
    a = d["args"]
    if not isinstance(a, dict):
        raise ValueError(f"the {kind}'s arguments must be a mapping, got a {type(a).__name__}")
    optional = _OPTIONAL_ARGS if FAMILIES[STACKS[kind]].projection else REGULARISERS
    _check_keys(a, _STACK_ARGS, optional, f"{kind} argument")
    for name in ("input_size", "hidden_size", "num_layers"):
        check_int(a[name], name)
    proj = check_int(a.get("proj_size", 0), "proj_size", 0)
    if proj >= a["hidden_size"]:
        raise ValueError(f"proj_size must be 0 or below hidden_size ({a['hidden_size']}), got {proj}")
    check_bool(a["bidirectional"], "bidirectional")
    check_bool(a["batch_first"], "batch_first")
    check_choice(a["dtype"], "dtype", DTYPES)
    for name in REGULARISERS:
        check_real(a.get(name, 0.0), name, 0, 1)
    spec = _stack_spec(kind, a["variant"])
    D = 2 if a["bidirectional"] else 1
    n = stack_params(spec.num_gates, a["input_size"], a["hidden_size"], proj, a["num_layers"], D)
    check_memory(f"the {kind}'s {count_text(n)} (or more) parameters",
                 n * (4 if a["dtype"] == "float32" else 8), "choose smaller sizes")
    return d


def min_params(d: dict) -> int:
    """At least how many numbers the parameters of checked description `d` hold (cheap)."""
    if d["kind"] in NETWORKS:
        return ModelConfig.from_dict(d["model"]).min_params
    a = d["args"]
    return stack_params(make_spec(a["variant"]).num_gates, a["input_size"], a["hidden_size"],
                        a.get("proj_size", 0), a["num_layers"], 2 if a["bidirectional"] else 1)


def param_shapes(d: dict) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every parameter the model of checked description `d` has, in both
    engines, without building it. Call it only on sizes known to be sane (see min_params):
    it costs a little per layer and per unit."""
    if d["kind"] in STACKS:
        a = d["args"]
        return stack_shapes(make_spec(a["variant"]), a["input_size"], a["hidden_size"],
                            a["num_layers"], a["bidirectional"], a.get("proj_size", 0))
    c = ModelConfig.from_dict(d["model"])
    D = 2 if c.bidirectional else 1
    R = c.proj_size or c.hidden_size
    stack = {k: v for k, v in c.rnn_kwargs().items() if k in ("num_layers", "bidirectional", "proj_size")}
    if c.architecture != "seq2seq":
        out = {"embedding.weight": (c.vocab_size, c.input_size)} if c.vocab_size else {}
        out.update(_prefixed("rnn.", stack_shapes(c.spec, c.input_size, c.hidden_size, **stack)))
        return {**out, "head.weight": (c.output_size, D * R), "head.bias": (c.output_size,)}
    from .numpy.seq2seq import decoder_kwargs

    dec = {k: v for k, v in decoder_kwargs(c).items() if k in ("num_layers", "bidirectional",
                                                               "proj_size", "hidden_size")}
    W = D * R                                                    # the encoder's and decoder's width
    return {"encoder.embedding.weight": (c.vocab_size, c.input_size),
            **_prefixed("encoder.rnn.", stack_shapes(c.spec, c.input_size, c.hidden_size, **stack)),
            "decoder.embedding.weight": (c.output_size, c.input_size),
            **_prefixed("decoder.rnn.", stack_shapes(c.spec, c.input_size, **dec)),
            "attention.weight": (W, W), "combine.weight": (W, 2 * W), "combine.bias": (W,),
            "head.weight": (c.output_size, W), "head.bias": (c.output_size,)}


# --- internals ---------------------------------------------------------------------------
def _check_keys(d: dict, required, optional, what: str) -> None:
    unknown = [k for k in d if k not in required and k not in optional]
    if unknown:
        raise ValueError(f"unknown {what}(s) {listed(unknown)}; known: {', '.join(required + optional)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{what}(s) {', '.join(missing)} missing")


def _stack_spec(kind: str, name) -> CellSpec:
    if not isinstance(name, str):
        raise ValueError(f"variant must be a variant's name (a string), got {shown(name)}")
    spec = make_spec(name)
    if spec.family != STACKS[kind]:
        raise ValueError(f"variant {shown(name)} is a {spec.family.upper()} variant, not an {kind}'s")
    return spec


def _prefixed(prefix: str, shapes: dict) -> dict:
    return {prefix + k: v for k, v in shapes.items()}


def _inference_only(mc: ModelConfig) -> ModelConfig:
    """The config without training-only regularisers, for the NumPy engine.

    Dropout of every kind is the identity at inference, so those models run unchanged;
    zoneout is not (it mixes the previous state in), so those need the torch engine.
    """
    if mc.zoneout:
        raise ValueError("this model was trained with zoneout, which changes inference; "
                         "load it with engine='torch'")
    return dataclasses.replace(mc, dropout=0.0, recurrent_dropout=0.0, weight_drop=0.0)


def _numpy_args(args: dict) -> dict:
    if args.get("zoneout"):
        raise ValueError("this model was trained with zoneout, which changes inference; "
                         "load it with engine='torch'")
    return {k: v for k, v in args.items() if k not in REGULARISERS}
