"""The `lstmlab` command: thin wrappers that call the package and print (or --json).

Exit codes: 0 success, 2 a user's mistake (bad argument, bad file), 130 interrupted
(Ctrl-C), 1 anything else. With --json a command prints exactly one JSON object on stdout,
strict JSON (no NaN or Infinity), errors included: {"error": "..."}.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import sys
import time

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .spec import VARIANTS, variant
from .train import TrainingInterrupted
from .train.callbacks import progress_bar
from .train.runs import strict_json

PIPED_WIDTH = 160                       # characters a line when the output is not a terminal
out = Console(highlight=False)
if not out.is_terminal:
    out.width = PIPED_WIDTH             # a file or a pipe has no width: never cut a table's names
err = Console(stderr=True, highlight=False)


# optional module -> the extra that installs it
_EXTRAS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "sklearn": "tasks",
           "mido": "tasks", "starlette": "serve", "uvicorn": "serve", "plotly": "serve",
           "espeakng_loader": "speech", "librosa": "speech", "jiwer": "speech", "soundfile": "speech"}


def command(fn):
    """Run a command body: user mistakes (ValueError) exit 2 with one line, JSON when asked."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = kwargs.get("as_json", False)
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            _fail(str(e), 2, as_json)
        except ModuleNotFoundError as e:
            extra = _EXTRAS.get((e.name or "").split(".")[0])
            if extra is None:
                raise
            _fail(f"this needs {e.name}, which is not installed: pip install 'lstmlab[{extra}]'",
                  2, as_json)
        except TrainingInterrupted as e:
            saved = str(e.run.checkpoint) if e.checkpoint_step is not None else None
            _fail(str(e), 130, as_json, label="interrupted", step=e.step, checkpoint=saved,
                  resume=e.command)
        except KeyboardInterrupt:
            _fail("interrupted (Ctrl-C)", 130, as_json, label="interrupted")
        except click.exceptions.Exit:
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence, one line not a traceback
            if os.environ.get("LSTMLAB_DEBUG"):
                raise
            from .train.distributed import lost_contact, world
            if world() is not None and lost_contact(e):         # another rank stopped: the
                sys.exit(1)                                     # launcher says which
            if isinstance(e, OSError) and e.filename is not None:
                # a path the user gave that cannot be read or written: theirs to fix
                _fail(f"cannot use {e.filename}: {(e.strerror or str(e)).lower()}", 2, as_json)
            _fail(f"internal error: {type(e).__name__}: {e} (set LSTMLAB_DEBUG=1 for a traceback)",
                  1, as_json)
    return wrapper


def _fail(msg, code, as_json, label="error", **fields):
    """Exit with `code` after one line on stderr, or {"error": msg, **fields} on stdout."""
    msg = " ".join(str(msg).split())                             # one line, whatever it held
    from .train.distributed import FOLLOWER_GRACE_S, world

    rank = world()
    if rank is not None and not rank.lead:                       # one of several: rank 0 reports
        if code == 2:
            # a mistake, which rank 0 meets too: wait for it to report and exit, after which
            # the launcher stops this rank (exiting first would let the launcher stop rank 0
            # before it printed); a mistake of this rank alone is printed after the wait
            time.sleep(FOLLOWER_GRACE_S)
        msg = f"rank {rank.rank}: {msg}"
    if as_json:
        _print_json({"error": msg if label == "error" else f"{label}: {msg}", **fields})
    else:
        err.print(f"[bold red]{label}:[/] {escape(msg)}", soft_wrap=True)
    sys.exit(code)


def _print_json(result: dict) -> None:
    """One strict JSON object on stdout. JSON has no NaN or infinity (a diverged metric, an
    empty split): such values are written as null and a "notes" entry says which."""
    notes: list[str] = []
    clean = strict_json(result, notes)
    if notes:
        clean["notes"] = [*clean.get("notes", []), *notes]
    click.echo(json.dumps(clean, allow_nan=False))


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


class _Main(click.Group):
    """click's own usage errors (an unknown option, a missing argument, a bad choice or
    number) answered like every other user mistake: exit 2 with one line on stderr, or a
    JSON error object on stdout when --json is among the arguments."""

    def main(self, args=None, prog_name=None, **extra):
        args = sys.argv[1:] if args is None else list(args)
        try:
            rv = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:           # plain `lstmlab`: the help
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            own = args[:args.index("--")] if "--" in args else args
            ctx = getattr(e, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            _fail(e.format_message() + hint, e.exit_code, "--json" in own)
        except click.Abort:                                      # Ctrl-C outside a command
            _fail("interrupted (Ctrl-C)", 130, False, label="interrupted")
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstmlab")
def main():
    """lstmlab: a laboratory for Long Short-Term Memory networks."""


@main.command("variants")
@click.argument("name", required=False, metavar="[NAME]")
@json_option
@command
def variants_cmd(name, as_json):
    """List the cell variants: name, family, gates and the first sentence of what it is.

    With NAME (e.g. cifg, or composed: cifg+peepholes), print that variant's whole
    description: its equations and the paper it comes from.
    """
    def row(s):
        return {"variant": s.name, "family": s.family, "gates": list(s.gates),
                "summary": _first_sentence(s.doc), "doc": s.doc}

    if name is not None:
        s = variant(name)
        if as_json:
            _print_json(row(s))
            return
        out.print(f"[bold]{escape(s.name)}[/]  ({s.family} family, gates {','.join(s.gates)})\n")
        click.echo(s.doc)                                        # plain: equations keep their [ ]
        return
    rows = [row(s) for s in VARIANTS.values()]
    if as_json:
        _print_json({"variants": rows})
        return
    table = Table("variant", "family", "gates", "what it is",
                  caption="the equations of each: lstmlab variants NAME")
    for r in rows:
        table.add_row(r["variant"], r["family"], ",".join(r["gates"]), escape(r["summary"]))
    out.print(table)


def _first_sentence(doc: str) -> str:
    """The first sentence of a variant's description, whole: its prose up to the first
    sentence end, blank line or indented equation block ("et al." does not end one)."""
    prose: list[str] = []
    for line in doc.splitlines():
        if not line.strip() or (prose and line[:1].isspace()):
            break
        prose.append(line.strip())
    text = " ".join(" ".join(prose).split())
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.(?=\s|$)", text)
    text = text[:end.end()] if end else text
    return text[:-1] + "." if text.endswith(":") else text if text.endswith(".") else text + "."


@main.command("gradcheck")
@click.option("--variant", "name", default="all", show_default=True,
              help="A variant name (see `lstmlab variants`) or 'all'.")
@json_option
@command
def gradcheck_cmd(name, as_json):
    """Check the NumPy engine's backprop against finite differences, on this machine.

    For each variant: float64, 2 layers, bidirectional, sequences of different lengths,
    a random initial state; every weight, the input and the initial state are checked.
    """
    from .numpy.gradcheck import TOLERANCE, gradcheck

    names = list(VARIANTS) if name == "all" else [variant(name).name]
    results = []
    with progress_bar(disable=as_json, console=err) as bar:
        task = bar.add_task("gradcheck", total=len(names), status="")
        for n in names:
            bar.update(task, status=n)
            results.append(gradcheck(n))
            bar.advance(task)
    rows = [{"variant": r.variant, "worst_relative_error": r.worst, "worst_tensor": r.worst_tensor,
             "passed": r.passed} for r in results]
    ok = all(r.passed for r in results)
    if as_json:
        _print_json({"tolerance": TOLERANCE, "passed": ok, "variants": rows})
    else:
        table = Table("variant", "worst relative error", "in tensor", "pass",
                      title=f"finite differences vs backward (float64, tolerance {TOLERANCE:g})")
        for r in rows:
            table.add_row(r["variant"], f"{r['worst_relative_error']:.2e}", r["worst_tensor"],
                          "[green]yes[/]" if r["passed"] else "[bold red]NO[/]")
        out.print(table)
    if not ok:
        sys.exit(1)


# --- tasks, training, runs ----------------------------------------------------------------
@main.command("tasks")
@json_option
@command
def tasks_cmd(as_json):
    """List the tasks: name, loss, what it is, its options."""
    from .tasks import TASKS

    rows = [{"task": n, "loss": t.loss, "summary": t.summary,
             "options": {k: {"default": d, "help": h} for k, (d, h) in t.options.items()}}
            for n, t in TASKS.items()]
    if as_json:
        _print_json({"tasks": rows})
        return
    table = Table("task", "loss", "what it is", "options (-o NAME=VALUE)")
    for r in rows:
        table.add_row(r["task"], r["loss"], r["summary"],
                      ", ".join(f"{k}={v['default']}" for k, v in r["options"].items()))
    out.print(table)


# option name -> (ModelConfig or TrainConfig field, click type, help)
_MODEL_OPTS = {
    "variant": (str, "cell variant (see `lstmlab variants`); flags compose: cifg+peepholes"),
    "hidden_size": (int, "units per layer and direction"),
    "num_layers": (int, "stacked recurrent layers"),
    "bidirectional": (bool, "add a backward direction per layer"),
    "proj_size": (int, "LSTM projection width (0: none)"),
    "forget_bias": (float, "initial forget-gate bias (Jozefowicz et al. 2015 use 1)"),
    "recurrent_init": (click.Choice(["uniform", "orthogonal", "identity"]), "recurrent weight init"),
    "dropout": (float, "dropout between layers (torch engine)"),
    "recurrent_dropout": (float, "variational dropout on h (torch engine)"),
    "zoneout": (float, "zoneout probability for h and c (torch engine)"),
    "weight_drop": (float, "DropConnect on recurrent weights (torch engine)"),
}
_TRAIN_OPTS = {
    "lr": (float, "peak learning rate"),
    "batch_size": (int, "sequences per update"),
    "steps": (int, "optimizer updates"),
    "seed": (int, "seed for weights, data order and dropout"),
    "optimizer": (click.Choice(["adam", "sgd", "rmsprop"]), "optimizer"),
    "schedule": (click.Choice(["cosine", "step", "plateau", "constant"]), "learning-rate schedule"),
    "clip": (float, "clip the global gradient norm (0: off)"),
    "eval_every": (int, "steps between validations and checkpoints"),
    "patience": (int, "early stopping after this many evaluations without improvement (0: off)"),
    "precision": (click.Choice(["fp32", "bf16", "fp16"]), "torch engine: bf16 runs the forward pass "
                  "under autocast (bfloat16 products, float32 weights and loss); fp16 the same in "
                  "float16 with a gradient scaler (GPU only)"),
}


def _settings_options(fn=None, *, helps=None, leave_out=()):
    """The model and training settings as options; `helps` replaces some of their help
    texts, `leave_out` names settings a command has no flag for (click then refuses them)."""
    def add(fn):
        for name, (typ, help_) in reversed({**_MODEL_OPTS, **_TRAIN_OPTS}.items()):
            if name in leave_out:
                continue
            help_ = (helps or {}).get(name, help_)
            flag = "--" + name.replace("_", "-")
            if typ is bool:
                fn = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_)(fn)
            else:
                fn = click.option(flag, name, type=typ, default=None, help=help_)(fn)
        return fn
    return add(fn) if fn is not None else add


# common task options with flags of their own: --data sunspots is -o data=sunspots
_TASK_FLAGS = {
    "data": (str, "built-in data set of the task (see `lstmlab tasks`)"),
    "csv": (str, "your own CSV file"),
    "column": (str, "forecast: the CSV column to forecast"),
    "id": (str, "forecast: the CSV column naming each row's series (many series, one model)"),
    "covariates": (str, "forecast: CSV columns the network reads beside it (comma-separated)"),
    "text": (str, "charlm: your own UTF-8 text file"),
    "text_column": (str, "sentiment: the CSV column with the texts"),
    "label_column": (str, "sentiment: the CSV column with the labels"),
    "horizon": (int, "forecast: steps to forecast"),
    "seq_len": (int, "adding, temporal-order: steps per sequence"),
}


def _task_flag_options(fn):
    for name, (typ, help_) in reversed(_TASK_FLAGS.items()):
        fn = click.option("--" + name.replace("_", "-"), "flag_" + name, type=typ, default=None,
                          help=help_)(fn)
    return fn


def _task_options(pairs, settings: dict) -> dict:
    """-o NAME=VALUE pairs plus the task flags given (--data, --csv, ...), as task options.

    The flags are taken out of `settings` (click's keyword arguments), which then hold only
    model and training settings."""
    flags = {k[5:]: settings.pop(k) for k in list(settings) if k.startswith("flag_")}
    opts = {k: v for k, v in flags.items() if v is not None}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq:
            raise ValueError(f"task option {p!r} must look like NAME=VALUE, e.g. -o noise=0.1")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def _resolve(task_name, engine, options, given: dict, out_dir, resume, device):
    """(task, ModelConfig, TrainConfig, engine, device, run dir) from defaults, a saved run
    and the user's options."""
    from .config import ModelConfig, TrainConfig
    from .tasks import TASKS, get_task
    from .tasks.rundata import task_to_resume
    from .train.runs import RunFolder, default_run_dir

    if resume:
        if out_dir is None:
            raise ValueError("--resume needs --out RUN, the folder of the run to continue")
        cfg = RunFolder(out_dir).read_config()
        if cfg["task"] != task_name:
            raise ValueError(f"{out_dir} holds a {cfg['task']!r} run, not {task_name!r}")
        saved = {**cfg["model"], **cfg["train"]}
        clash = [f"--{k.replace('_', '-')} {v} (the run has {saved[k]})" for k, v in given.items()
                 if k in saved and saved[k] != v]
        if engine is not None and engine != cfg["engine"]:
            clash.append(f"--engine {engine} (the run has {cfg['engine']})")
        kept = cfg.get("task_options", {})
        clash += [f"-o {k}={v} (the run has {kept.get(k)})" for k, v in options.items()
                  if kept.get(k) != v]
        if clash:
            raise ValueError("--resume continues a run with its own settings; drop "
                             + ", ".join(clash))
        task = task_to_resume(cfg, out_dir)                      # refuses a changed data file
        return (task, ModelConfig.from_dict(cfg["model"]), TrainConfig.from_dict(cfg["train"]),
                cfg["engine"], device or cfg.get("device"), out_dir)
    if task_name not in TASKS:
        get_task(task_name)                                      # raises with a suggestion
    cls = TASKS[task_name]
    model_kw = {**cls.defaults.model, **{k: v for k, v in given.items() if k in _MODEL_OPTS}}
    train_kw = {**cls.defaults.train, **{k: v for k, v in given.items() if k in _TRAIN_OPTS}}
    if "variant" in model_kw:
        model_kw["variant"] = variant(model_kw["variant"]).name
    seed = train_kw.get("seed", 0)
    task = get_task(task_name, seed=seed, **options)
    model, train = task.model_config(**model_kw), TrainConfig(**train_kw)
    engine = engine or cls.defaults.engine
    run_dir = out_dir or default_run_dir("runs", task_name, engine, model.variant, seed)
    return task, model, train, engine, device, run_dir


def _result_table(result: dict) -> Table:
    test, base = result["metrics"]["test"], result["baselines"]
    chose = "; ".join(f"{k}: {v}" for k, v in {**result.get("chosen", {}),
                                                **result.get("baseline_models", {})}.items())
    table = Table("metric", "model", *base, title=f"{result['task']} on the test split "
                  f"({result['engine']} engine, {result['variant']})", caption=chose or None)
    for k, v in test.items():
        table.add_row(k, f"{v:.4g}", *(f"{b[k]:.4g}" if k in b else "" for b in base.values()))
    return table


@main.command("train")
@click.argument("task_name", metavar="TASK")
@click.option("--engine", type=click.Choice(["numpy", "torch"]), default=None,
              help="numpy (glass box, no torch needed) or torch (fast).  [default: the task's]")
@_settings_options
@click.option("-o", "--task-option", "task_opts", multiple=True, metavar="NAME=VALUE",
              help="a task option (see `lstmlab tasks`), e.g. -o noise=0.1")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="run folder  [default: runs/<task>-<engine>-<variant>-s<seed>]")
@_task_flag_options
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None,
              help="torch engine: where to train  [default: cpu]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads  [default: $LSTMLAB_THREADS, else the cores this process may use]")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch engine: train on this many processes of this machine "
                   "(DistributedDataParallel; --batch-size is the whole batch, shared among them)")
@click.option("--live", is_flag=True,
              help="also keep live.json (progress) and live_gates.json (the gates of a validation "
                   "example at every evaluation) in the run folder, for `lstmlab serve`")
@json_option
@command
def train_cmd(task_name, engine, task_opts, out_dir, resume, device, threads, nproc, live, as_json,
              **settings):
    """Train TASK, evaluate it against its baselines, and keep it in a run folder."""
    from .train import Live, ProgressBar, fit
    from .train.distributed import world

    if nproc > 1 and world() is None:                            # start the ranks, which run this
        _launch(task_name, engine, resume, out_dir, nproc, as_json)
        return
    options = _task_options(task_opts, settings)
    given = {k: v for k, v in settings.items() if v is not None}
    task, model, train, engine, device, run_dir = _resolve(
        task_name, engine, options, given, out_dir, resume, device)
    bar = ProgressBar(f"{task.name} ({engine})", disable=as_json)
    callbacks = [bar, Live(run_dir, task, engine)] if live else [bar]
    try:
        result = fit(task, model, train, run_dir, engine=engine, device=device, resume=resume,
                     callbacks=callbacks, threads=threads)
    finally:
        bar.close()
    if result is None:                                           # a rank but 0: rank 0 reports
        return
    if as_json:
        _print_json(result)
        return
    out.print(_result_table(result))
    names = ", ".join(os.path.basename(f) for f in result["figures"])
    out.print(f"run folder: {result['run']}  ({result['seconds']:.1f} s)", soft_wrap=True)
    out.print(f"figures: {result['run']}/figures/{{{names}}}", soft_wrap=True)


def _launch(task_name, engine, resume, out_dir, nproc, as_json):
    """`lstmlab train ... --nproc N`: the same command as N ranks (train.distributed.launch)."""
    from .tasks import TASKS, get_task
    from .train.distributed import RankFailed, launch

    if engine is None and not resume:
        if task_name not in TASKS:
            get_task(task_name)                                  # raises with a suggestion
        engine = TASKS[task_name].defaults.engine
    if engine == "numpy":
        raise ValueError("--nproc trains with the torch engine; add --engine torch")
    try:
        launch(nproc, sys.argv[1:])
    except RankFailed as e:
        if e.exit_code == 2:                                     # rank 0 said what was wrong
            sys.exit(2)
        where = f" --out {out_dir}" if out_dir else " --out RUN"
        _fail(f"{e}; the run folder keeps its last checkpoint: continue with lstmlab train "
              f"{task_name} --resume{where} (with any --nproc)", 1, as_json)


@main.command("evaluate")
@click.argument("run_dirs", metavar="RUN...", type=click.Path(), nargs=-1, required=True)
@click.option("--engine", type=click.Choice(["numpy", "torch"]), default=None,
              help="run the saved model in this engine  [default: the one that trained it]")
@json_option
@command
def evaluate_cmd(run_dirs, engine, as_json):
    """Evaluate a run's saved model on its task's test split, next to the baselines; several
    runs of one task (seeds, say) are evaluated as one ensemble, their outputs averaged."""
    from .train import evaluate_ensemble, evaluate_run

    result = (evaluate_run(run_dirs[0], engine=engine) if len(run_dirs) == 1
              else evaluate_ensemble(run_dirs, engine=engine))
    if as_json:
        _print_json(result)
        return
    out.print(_result_table(result))
    for metric, scores in result.get("members", {}).items():
        out.print(f"the members alone: {metric} " + ", ".join(f"{v:.4g}" for v in scores)
                  + f" (mean {statistics.mean(scores):.4g}, sd {statistics.stdev(scores):.2g})")


@main.command("predict")
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--input", "input_path", default=None, type=click.Path(dir_okay=False),
              help="the data to run the model on (format: see the task)")
@click.option("--text", "text", default=None,
              help="sentiment: one text to classify, instead of --input")
@json_option
@command
def predict_cmd(run_dir, input_path, text, as_json):
    """Run a trained model on your own data (--input FILE) or one text (--text TEXT)."""
    from .train import load_run

    if (input_path is None) == (text is None):
        raise ValueError("give exactly one of --input FILE and --text TEXT")
    task, predictor, _ = load_run(run_dir)
    result = (task.predict(predictor, input_path) if text is None
              else task.predict(predictor, text=text))
    if as_json:
        _print_json(result)
        return
    if "lines" in result:                                        # the task's own lines
        for line in result["lines"]:
            click.echo(line)                                     # plain: no markup in labels
        return
    for k, v in result.items():
        shown = ", ".join(f"{x:.4g}" for x in v) if isinstance(v, list) else v
        out.print(f"{k}: {shown}")


@main.command("transcribe")
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--wav", "wav", required=True, type=click.Path(dir_okay=False),
              help="a recording: WAV (or FLAC, OGG), any sample rate, mono or stereo")
@json_option
@command
def transcribe_cmd(run_dir, wav, as_json):
    """Speech to text with a trained `speech` run: the text and each word's timing."""
    from .train import load_run

    task, predictor, _ = load_run(run_dir)
    if task.name != "speech":
        raise ValueError(f"{run_dir} is a {task.name!r} run; transcribe needs a speech run "
                         "(lstmlab train speech)")
    result = task.predict(predictor, wav)
    if as_json:
        _print_json(result)
    else:
        for line in result["lines"]:
            click.echo(line)


@main.command("prepare")
@click.argument("task_name", metavar="TASK")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder to write  [default: the task's cache folder]")
@click.option("--size", type=int, default=None, help="training examples to make  [default: the task's]")
@click.option("--seed", type=int, default=None, help="seed of the data  [default: 0]")
@click.option("--text", type=click.Path(dir_okay=False), default=None,
              help="charlm: the UTF-8 text to prepare (any size: read as a stream)")
@click.option("--csv", type=click.Path(dir_okay=False), default=None,
              help="forecast: the CSV file whose column to prepare (any size: read as a stream)")
@click.option("--column", default=None, help="forecast: the CSV column to prepare")
@click.option("-o", "--task-option", "task_opts", multiple=True, metavar="NAME=VALUE",
              help="forecast: -o season=N (the season its MASE scale is measured at; "
                   "default auto: found in the data), -o missing=interpolate")
@json_option
@command
def prepare_cmd(task_name, out_dir, size, seed, text, csv, column, task_opts, as_json):
    """Make a task's data once, ahead of training (speech: the synthesized corpus; charlm: a
    text, forecast: a CSV column, larger than memory as a flat file, trained with -o
    prepared=FOLDER)."""
    import inspect

    from .tasks import TASKS, get_task

    if task_name not in TASKS:
        get_task(task_name)                                      # the unknown task's message
    cls = TASKS[task_name]
    if not hasattr(cls, "prepare_data"):
        makers = [n for n, c in TASKS.items() if hasattr(c, "prepare_data")]
        raise ValueError(f"task {task_name!r} has nothing to prepare; tasks that do: {', '.join(makers)}")
    flags = (("size", size), ("seed", seed), ("text", text), ("csv", csv), ("column", column))
    given = {**{k: v for k, v in flags if v is not None}, **_task_options(task_opts, {})}
    takes = inspect.signature(cls.prepare_data).parameters
    for k in given:
        if k not in takes or k in ("folder", "quiet"):
            how = f"--{k}" if k in dict(flags) else f"-o {k}"
            raise ValueError(f"{how} does not apply to lstmlab prepare {task_name}")
    result = cls.prepare_data(out_dir, quiet=as_json, **given)
    if as_json:
        _print_json(result)
    else:
        for k, v in result.items():
            out.print(f"{k}: {escape(str(v))}")


@main.command("generate")
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--length", type=int, default=500, show_default=True, help="symbols to generate")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="below 1: safer, above 1: wilder")
@click.option("--top-k", type=int, default=0, show_default=True,
              help="sample among the k most likely symbols only (0: all)")
@click.option("--prompt", default=None, help="text to start from (charlm)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the sampling")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder for the files it writes  [default: RUN/generated]")
@json_option
@command
def generate_cmd(run_dir, length, temperature, top_k, prompt, seed, out_dir, as_json):
    """Sample from a trained model: text (charlm) or a MIDI file and piano roll (music)."""
    from pathlib import Path

    from .tasks.sampling import check_sampling
    from .train import load_run

    check_sampling(length, temperature, top_k)
    task, predictor, _ = load_run(run_dir)
    folder = Path(out_dir) if out_dir else Path(run_dir) / "generated"
    result = task.generate(predictor, folder, length=length, temperature=temperature,
                           top_k=top_k, prompt=prompt, seed=seed)
    if as_json:
        _print_json(result)
        return
    for k, v in result.items():
        out.print(f"[bold]{k}:[/]\n{escape(str(v))}" if k == "text" else f"{k}: {escape(str(v))}",
                  soft_wrap=True)


@main.command("export")
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx", "safetensors"]), required=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="file to write  [default: RUN/export/model.<format>]")
@json_option
@command
def export_cmd(run_dir, fmt, out_path, as_json):
    """Export a run's model: ONNX (runs in onnxruntime) or a standalone safetensors file."""
    from .io.export import export_run

    path = export_run(run_dir, fmt, out_path)
    if as_json:
        _print_json({"run": str(run_dir), "format": fmt, "path": str(path)})
    else:
        out.print(f"wrote {path}")


@main.command("inspect")
@click.argument("run_dirs", metavar="RUN [RUN...]", nargs=-1, required=True, type=click.Path())
@click.option("--input", "input_value", default=None, metavar="TEXT|PATH",
              help="what to look at: a text (charlm, sentiment, translate), or a file or numbers "
                   "separated by commas (forecast, sine)  [default: test example 0]")
@click.option("--example", type=click.IntRange(min=0), default=None, metavar="N",
              help="the test split's example N instead of --input")
@click.option("--units", default=None, metavar="0,3,5", help="the units the heatmaps show "
              "[default: the 16 whose h varies most]")
@click.option("--signal", "signals", multiple=True, metavar="NAME",
              help="a per-step signal to find the units that follow it (repeat it): text: "
                   "position_in_word, inside_word, position_in_line, position_in_clause, "
                   "inside_parentheses, inside_quotes, uppercase; series: value, above_mean, rising; "
                   "any: position  [default: the text's or the series' usual ones]")
@click.option("--correlation", type=click.Choice(["pearson", "spearman"]), default="pearson",
              show_default=True, help="how a unit following a signal is measured: pearson (a "
              "straight line) or spearman (ranks: any rise or fall, such as a counter that saturates)")
@click.option("--signal-steps", default="20000", show_default=True, metavar="N|all",
              help="steps of the test split the units following a signal are measured on; "
                   "all: the whole split, a chunk at a time (slower)")
@click.option("--ablate/--no-ablate", default=None,
              help="the ablation table: each unit of --layer switched off in turn, the test metric "
                   "each time  [default: every unit of a layer of at most 64; of a wider one, the "
                   "units the other analyses single out]")
@click.option("--layer", type=int, default=0, show_default=True,
              help="the layer whose units the ablation table switches off")
@click.option("--engine", type=click.Choice(["numpy", "torch"]), default=None,
              help="run the saved model in this engine  [default: the one that trained it]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder for the figures  [default: RUN/inspect; for several runs, "
                   "inspect-TASK next to them]")
@json_option
@command
def inspect_cmd(run_dirs, input_value, example, units, signals, correlation, signal_steps, ablate,
                layer, engine, out_dir, as_json):
    """Look inside trained runs: gates, saturation, memory, gradient flow, units that follow a
    signal, ablation. Several runs of one task are compared side by side."""
    from .inspect.report import report
    from .train.callbacks import progress_bar

    chosen = _int_list(units, "--units") if units else None
    steps = _steps_or_all(signal_steps, "--signal-steps")
    console = Console(stderr=True)
    bar = progress_bar(as_json or not console.is_terminal, console)
    task = bar.add_task("inspect", total=1, status="")

    def progress(what, done, total):
        bar.update(task, description=what, completed=done, total=total, status="")

    with bar:
        result = report(list(run_dirs), input=input_value, example=example, units=chosen,
                        signals=list(signals) or None, out=out_dir, engine=engine, ablate=ablate,
                        layer=layer, progress=progress, correlation=correlation, signal_steps=steps)
    if as_json:
        _print_json(result)
        return
    out.print(f"wrote {len(result['figures'])} figures to {result['folder']}")
    for name, path in result["figures"].items():
        out.print(f"  {name}: {escape(path)}")
    for note in result["notes"]:
        out.print(f"[dim]note: {escape(note)}[/]")
    out.print(f"numbers: {escape(result['summary'])}")


def _int_list(value: str, what: str) -> list[int]:
    """"0,3,5" -> [0, 3, 5], or a one-line ValueError."""
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} takes integers separated by commas, e.g. 0,3,5; got {value!r}") from None


def _steps_or_all(value: str, what: str) -> int | None:
    """"all" -> None, "5000" -> 5000, or a one-line ValueError (the range is report's to check)."""
    if value.strip().lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{what} takes a number of steps or all; got {value!r}") from None


@main.command("serve")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), default="runs",
              show_default=True, help="the runs folder: the only place the server reads and writes")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (anything but 127.0.0.1 lets other machines in)")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--open", "open_browser", is_flag=True, help="open the page in a web browser")
@command
def serve_cmd(runs_dir, host, port, open_browser):
    """The live laboratory in a web page: train and watch the gates learn, compare and export
    runs, inspect a model, stream into it, step through one cell's equations."""
    from .serve import check_address, serve

    check_address(host, port)
    err.print(f"lstmlab serve: http://{host}:{port}/  (runs folder {os.path.abspath(runs_dir)}; "
              "Ctrl-C stops the server, not the trainings)")
    serve(runs_dir, host=host, port=port, open_browser=open_browser)


@main.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs",
              show_default=True, help="where the demo's run folders go")
@click.option("--steps", type=int, default=None, help="training steps per engine (default: the task's)")
@json_option
@command
def demo_cmd(out_dir, steps, as_json):
    """Train `sine` with both engines, evaluate both, draw the forecast and the gates."""
    from .demo import run_demo

    result = run_demo(out_dir, steps=steps, quiet=as_json)
    if as_json:
        _print_json(result)
        return
    table = Table("engine", "seconds", "next-step MSE", "free-run MSE (50 steps)",
                  "persistence next-step", "persistence free-run", title="lstmlab demo: sine")
    for r in result["runs"]:
        t, b = r["metrics"]["test"], r["baselines"]["persistence"]
        table.add_row(r["engine"], f"{r['seconds']:.1f}", f"{t['mse']:.2e}",
                      f"{t['free_run_mse']:.3g}", f"{b['mse']:.3g}", f"{b['free_run_mse']:.3g}")
    out.print(table)
    for r in result["runs"]:
        names = ", ".join(os.path.basename(f) for f in r["figures"])
        out.print(f"{r['engine']}: {r['run']}/figures/{{{names}}}", soft_wrap=True)
    for note in result.get("notes", []):
        out.print(note)


@main.command("compare")
@click.argument("task_name", metavar="TASK")
@click.option("--variants", default="lstm,peephole,cifg,nfg,noaf,rnn_tanh,gru", show_default=True,
              help="comma-separated variants (see `lstmlab variants`)")
@click.option("--seeds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="runs per variant, with seeds S..S+N-1 (S: --seed)")
@click.option("--engine", type=click.Choice(["numpy", "torch"]), default=None,
              help="engine for every run  [default: the task's]")
@_settings_options(leave_out=("variant",),                     # --variants says which
                   helps={"seed": "the first seed: --seeds N runs seeds S..S+N-1  [default: 0]"})
@click.option("-o", "--task-option", "task_opts", multiple=True, metavar="NAME=VALUE",
              help="a task option (see `lstmlab tasks`)")
@_task_flag_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder for the runs, compare.json and compare.png  [default: runs/compare-<task>]")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None)
@json_option
@command
def compare_cmd(task_name, variants, seeds, engine, task_opts, out_dir, device, as_json, **settings):
    """Train several variants on TASK with several seeds; a table and a bar chart.

    An interrupted comparison continues where it stopped when run again with the same --out.
    """
    from .tasks import get_task
    from .train import ProgressBar
    from .train.compare import compare

    options = _task_options(task_opts, settings)
    given = {k: v for k, v in settings.items() if v is not None}
    first = given.get("seed", 0)
    task, model, train, engine, device, _ = _resolve(task_name, engine, options, given, None,
                                                     False, device)
    names = [v.strip() for v in variants.split(",") if v.strip()]
    bars = []

    def callbacks_for(name, seed):
        bars.append(ProgressBar(f"{name} seed {seed}", disable=as_json))
        return [bars[-1]]

    try:
        result = compare(lambda seed: get_task(task_name, seed=seed, **options), model, train,
                         names, list(range(first, first + seeds)),
                         out_dir or f"runs/compare-{task_name}", engine=engine, device=device,
                         callbacks_for=callbacks_for)
    except TrainingInterrupted as e:
        _fail(f"at step {e.step} of {e.run}; run the same `lstmlab compare` command again to "
              "continue: finished runs are kept, this one resumes from its last checkpoint",
              130, as_json, label="interrupted")
    finally:
        for bar in bars:
            bar.close()
    if as_json:
        _print_json(result)
        return
    better = "lower" if result["lower_is_better"] else "higher"
    table = Table("variant", f"test {result['metric']} (mean ± std)", "seconds", "parameters",
                  title=f"{result['task']}: {len(result['seeds'])} seed(s) per variant, "
                        f"{result['engine']} engine ({better} is better)")
    for r in result["results"]:
        table.add_row(r["variant"], f"{r['mean']:.4g} ± {r['std']:.2g}", f"{r['seconds']:.1f}",
                      str(r["num_params"]))
    out.print(table)
    out.print(f"figure: {result['figure']}", soft_wrap=True)


@main.command("bench")
@click.option("--quick", is_flag=True, help="fewer rounds and sizes: under a minute on 2 cores")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder for bench.json and the figure bench.png")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="threads for every library  [default: the libraries' own]")
@click.option("--tiny", is_flag=True, hidden=True)               # the tests: tiny sizes, 1 round
@json_option
@command
def bench_cmd(quick, out_dir, threads, tiny, as_json):
    """Time lstmlab on this machine next to PyTorch and onnxruntime: LSTM forward and
    backward, one streaming step, the torch engine's variants, GFLOP/s against the machine's
    matrix-product peak, and the memory of training on a long stream."""
    from .bench import run_bench, summary, tables

    with progress_bar(disable=as_json, console=err) as bar:
        task = bar.add_task("bench", total=1, status="")
        result = run_bench(quick, threads, out_dir, tiny=tiny, progress=lambda what, done, total:
                           bar.update(task, completed=done, total=total, status=what))
    if as_json:
        _print_json(result)
        return
    for table in tables(result):
        out.print(table)
    out.print(summary(result), soft_wrap=True)
    if "files" in result:
        out.print(f"wrote {result['files']['json']} and {result['files']['figure']}", soft_wrap=True)
