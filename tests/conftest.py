"""Shared test settings: NumPy raises on every floating-point event (house rule 11); and
the helpers several test files use."""

import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def own_cache(tmp_path_factory):
    """What lstmlab caches (statistical baselines) goes to a folder of this session, for this
    process and the commands it starts: never the user's ~/.cache, never a stale entry."""
    import os

    os.environ["LSTMLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    os.environ.pop("LSTMLAB_CACHE", None)


@pytest.fixture(autouse=True)
def strict_numpy():
    with np.errstate(all="raise"):
        yield


def assert_close(actual, expected, tol, what=""):
    """max |a - e| <= tol * max(1, max |e|): absolute near zero, relative for large values."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max()) if expected.size else 1.0)
    err = float(np.abs(actual - expected).max()) if expected.size else 0.0
    assert err <= tol * scale, f"{what}: max difference {err:.3e} > {tol:g} x {scale:.3g}"


class Crash(Exception):
    """Raised by CrashAt: a training process dying at a chosen step."""


def crash_at(step):
    """A training callback that kills the run (raises Crash) when it reaches `step`."""
    from lstmlab.train import Callback

    class CrashAt(Callback):
        def on_step(self, s, loss, lr):
            if s == step:
                raise Crash

    return CrashAt()


def lstmlab(*args):
    """Run the lstmlab command in a fresh process (the CompletedProcess, text output)."""
    return subprocess.run([sys.executable, "-m", "lstmlab", *map(str, args)],
                          capture_output=True, text=True)


def one_line_error(r, code=2):
    """The stderr of a command that failed with `code` and one line, no traceback."""
    assert r.returncode == code, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    return r.stderr


def raises_one_line(fn, *args, **kw) -> str:
    """The message of the ValueError fn(*args, **kw) raises: one line, not empty."""
    with pytest.raises(ValueError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg
