"""The `lstmlab` command: thin wrappers that call the package and print (or --json).

Exit codes: 0 success, 2 a user's mistake (bad argument, bad file), 1 anything else.
With --json a command prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from . import __version__
from .spec import VARIANTS, variant

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def command(fn):
    """Run a command body: user mistakes (ValueError) exit 2 with one line, JSON when asked."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = kwargs.get("as_json", False)
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            _fail(str(e), 2, as_json)
        except (KeyboardInterrupt, click.exceptions.Exit):
            raise
        except Exception as e:  # noqa: BLE001 - the last line of defence, one line not a traceback
            if os.environ.get("LSTMLAB_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (set LSTMLAB_DEBUG=1 for a traceback)",
                  1, as_json)
    return wrapper


def _fail(msg, code, as_json):
    if as_json:
        click.echo(json.dumps({"error": msg}))
    else:
        err.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    sys.exit(code)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


def progress(disable: bool) -> Progress:
    """A progress bar on stderr with count, rate-based ETA and elapsed time."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=err, disable=disable,
                    transient=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstmlab")
def main():
    """lstmlab: a laboratory for Long Short-Term Memory networks."""


@main.command("variants")
@json_option
@command
def variants_cmd(as_json):
    """List the cell variants: name, family, gates, what it is."""
    rows = [{"variant": name, "family": s.family, "gates": list(s.gates),
             "summary": s.doc.splitlines()[0], "doc": s.doc} for name, s in VARIANTS.items()]
    if as_json:
        click.echo(json.dumps({"variants": rows}))
        return
    table = Table("variant", "family", "gates", "what it is")
    for r in rows:
        table.add_row(r["variant"], r["family"], ",".join(r["gates"]), r["summary"])
    out.print(table)


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
    with progress(disable=as_json) as bar:
        task = bar.add_task("gradcheck", total=len(names), status="")
        for n in names:
            bar.update(task, status=n)
            results.append(gradcheck(n))
            bar.advance(task)
    rows = [{"variant": r.variant, "worst_relative_error": r.worst, "worst_tensor": r.worst_tensor,
             "passed": r.passed} for r in results]
    ok = all(r.passed for r in results)
    if as_json:
        click.echo(json.dumps({"tolerance": TOLERANCE, "passed": ok, "variants": rows}))
    else:
        table = Table("variant", "worst relative error", "in tensor", "pass",
                      title=f"finite differences vs backward (float64, tolerance {TOLERANCE:g})")
        for r in rows:
            table.add_row(r["variant"], f"{r['worst_relative_error']:.2e}", r["worst_tensor"],
                          "[green]yes[/]" if r["passed"] else "[bold red]NO[/]")
        out.print(table)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
