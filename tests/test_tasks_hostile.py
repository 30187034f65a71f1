"""Hostile task options and generation settings: every one answered with one clear line."""

import os
import subprocess
import sys

import numpy as np
import pytest

from lstmlab.tasks import TASKS, get_task
from lstmlab.tasks.sampling import autoregress, check_sampling, sample


def _wrong_value(default):
    """A value of the wrong type for an option with this default."""
    return "lots" if isinstance(default, (int, float)) and not isinstance(default, bool) else [1]


@pytest.mark.parametrize("task, option", [(t, o) for t, cls in TASKS.items() for o in cls.options])
def test_every_option_of_every_task_refuses_the_wrong_type_by_name(task, option):
    default = TASKS[task].options[option][0]
    with pytest.raises(ValueError, match=f"^task option {option} must be "):
        get_task(task, **{option: _wrong_value(default)})


def test_an_integer_option_refuses_a_fraction_and_takes_a_whole_float():
    with pytest.raises(ValueError, match=r"^task option test_size must be an integer, got 2\.7$"):
        get_task("sine", test_size=2.7)
    with pytest.raises(ValueError, match=r"^task option test_size must be an integer, got \[1\]$"):
        get_task("adding", test_size=[1])
    with pytest.raises(ValueError, match="^task option jitter must be a number, got 'lots'$"):
        get_task("sine", jitter="lots")
    with pytest.raises(ValueError, match="^task option noise must be a finite number, got nan$"):
        get_task("sine", noise=float("nan"))
    assert get_task("sine", test_size=3.0).split["test"][0].shape == (150, 3)
    assert get_task("sine", jitter=0).jitter == 0.0
    # `-o column=2019` reaches the task as the number 2019 (the CLI reads values as JSON)
    assert get_task("forecast", data="sunspots", column=2019).opts["column"] == "2019"


@pytest.mark.parametrize("task, options", [
    ("sine", {"test_size": 10 ** 12}),
    ("adding", {"seq_len": 10 ** 12}),
    ("copy", {"delay": 10 ** 11}),
    ("temporal-order", {"seq_len": 10 ** 12}),
    ("reber", {"test_size": 10 ** 13}),
    ("continual-reber", {"test_symbols": 10 ** 13}),
])
def test_sizes_beyond_memory_are_refused_before_allocating(task, options):
    with pytest.raises(ValueError, match="more than this machine's .* of memory"):
        get_task(task, **options)


def test_a_generation_length_beyond_memory_is_refused():
    with pytest.raises(ValueError, match="^--length 1000000000000 would take about"):
        check_sampling(10 ** 12, 1.0, 0)


class _Fixed:
    """A predictor whose next-symbol logits are always the same: the banned id 0 first."""
    logits = np.array([[[9.0, 1.0, 3.0, 2.0]]])

    def run(self, x, state=None):
        return np.repeat(self.logits, len(x), axis=0), None


@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-30, 1.0, 1e30])
def test_a_banned_symbol_is_never_drawn_at_any_temperature(temperature):
    rng = np.random.default_rng(0)
    out = autoregress(_Fixed(), np.array([1]), 200, temperature, 0, rng, banned=0)
    assert 0 not in out.tolist()
    if temperature < 1e-20:                                      # the most likely allowed one
        assert set(out.tolist()) == {2}
    z = np.array([[-np.inf, 1.0, 3.0, 2.0]] * 50)
    assert 0 not in sample(z, temperature, 0, rng).tolist()


@pytest.mark.parametrize("task, source", [("forecast", "csv"), ("sentiment", "csv"),
                                          ("classify", "csv")])
def test_two_data_sources_are_refused(tmp_path, task, source):
    data = {"forecast": "sunspots", "sentiment": "rt", "classify": "mnist"}[task]
    with pytest.raises(ValueError, match=f"^--data {data} and --{source} .* name two data "
                                         "sources; give one$"):
        get_task(task, data=data, **{source: str(tmp_path / "mine.csv")})
    assert [t for t, cls in TASKS.items() if "data" in cls.options and cls.sources] == \
        ["forecast", "sentiment", "classify"]


def test_two_data_sources_on_the_command_line_exit_2_with_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lstmlab", "train", "forecast", "--data",
                          "sunspots", "--csv", "mine.csv", "--column", "x", "--out", "run"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("error: --data sunspots and --csv mine.csv name two data sources; "
                          "give one\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task", ["forecast", "classify", "sine", "translate", "music"])
def test_predict_text_on_a_task_that_reads_files_is_one_line(task):
    cls = TASKS[task]
    t = cls.__new__(cls)                                         # no data needed to refuse
    with pytest.raises(ValueError, match=f"^task {task!r} (reads a file, not one text: give "
                                         "--input FILE instead of --text|does not take --text)"):
        cls.predict(t, None, text="a text")


CHILD = """
import sys
import lstmlab.tasks.charlm as C

def kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))

with open("/proc/self/clear_refs", "w") as f:      # the peak (VmHWM) starts again from here
    f.write("5")
before = kb("VmRSS:")
task = C.CharLM(text=sys.argv[1], seq_len=100)
for step in range(1, 4):
    task.train_batch(step, 64)
task.baselines()
print(before * 1024, kb("VmHWM:") * 1024)
"""


def test_charlm_reads_a_large_text_within_a_few_times_its_size(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array(["the", "lord", "said", "unto", "moses", "café", "and", "—", "\n", "Ünter"])
    text = " ".join(words[rng.integers(0, len(words), size=5_000_000)])
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    size = path.stat().st_size                                   # about 25 MB
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert after - before < 4 * size, (after - before) / size
