"""lstmlab.inspect.Stream: a model reading one step at a time gives what it gives on the whole
sequence (Subject.record), in both engines, and refuses what it cannot read in one line.

Models are small and untrained, built in-process in float64.
"""

import numpy as np
import pytest
import torch

from lstmlab import inspect
from lstmlab.config import ModelConfig
from lstmlab.inspect.stream import Stream
from lstmlab.models import network_class
from lstmlab.tasks import get_task
from lstmlab.train.engines import predictor_for
from tests.conftest import assert_close, raises_one_line

TEXT = "In the beginning (God) created the heaven and the earth.\nAnd the earth was void.\n" * 12
TOL = 1e-9


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return {"sine": get_task("sine", test_size=1),
            "charlm": get_task("charlm", text=str(path), seq_len=10),
            "forecast": get_task("forecast", context=12, horizon=3)}


def _subject(task, engine="numpy", variant="lstm", **settings):
    mc = task.model_config(hidden_size=5, variant=variant, dtype="float64", **settings)
    nm = network_class(mc, "numpy")(mc, seed=0)
    if engine == "numpy":
        return inspect.Subject(predictor_for(nm), "numpy", task)
    tm = network_class(mc, "torch")(mc, seed=1)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in nm.params.items()})
    return inspect.Subject(predictor_for(tm), "torch", task)


def _same_as_record(subject, inputs, steps, first=0):
    """The steps' gates and states equal record's on `inputs`; the steps count from `first`."""
    out, groups, _ = subject.record(inputs)
    assert len(steps) == inputs.x.shape[0]
    for t, s in enumerate(steps):
        assert s.t == first + t
        assert set(s.groups) == set(groups)
        for g, d in groups.items():
            assert set(s.groups[g]) == set(d)
            for name, v in d.items():
                assert_close(s.groups[g][name], v[t, 0], TOL, f"{g}.{name} at step {t}")
    return out


@pytest.mark.parametrize("engine,variant", [("numpy", "lstm"), ("numpy", "gru"), ("torch", "peephole")])
def test_sine_stream_equals_the_whole_sequence(tasks, engine, variant):
    task = tasks["sine"]
    subject = _subject(task, engine, variant, num_layers=2)
    inputs = task.examples("test").take(0)
    inputs.x = inputs.x[:30]
    values = inputs.x[:, 0, 0].tolist()
    stream = Stream(subject)
    steps = stream.step_many(values)
    out = _same_as_record(subject, inputs, steps)
    # the prediction is the next value: the model's output at that step
    assert_close([s.prediction[0] for s in steps], out[:, 0, 0], TOL, "predictions")
    assert steps[3].input == values[3]
    # reset: the same first step again; units: the first units of each group
    stream.reset()
    again = stream.step(values[0]).to_json()
    assert again == steps[0].to_json()
    first = Stream(subject, units=2).step(values[0])
    assert_close(first.groups["l1"]["h"], steps[0].groups["l1"]["h"][:2], TOL, "units")


def test_charlm_stream_equals_the_whole_text(tasks):
    task = tasks["charlm"]
    subject = _subject(task)
    text = "And God said"
    steps = Stream(subject).step_many(text)
    out = _same_as_record(subject, task.encode_input(text), steps)
    # prediction: the 5 most probable next characters, from the model's logits at that step
    for t in (0, len(text) - 1):
        logits = out[t, 0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        assert [d["char"] for d in steps[t].prediction] == [task.decode([k]) for k in top]
        assert_close([d["p"] for d in steps[t].prediction], p[top], TOL, "probabilities")
    assert steps[0].to_json()["input"] == "A"


def test_forecast_stream_reads_a_season_first_then_forecasts_as_the_task(tasks):
    task = tasks["forecast"]
    subject = _subject(task)
    m, L = task.season, task.context
    values = task.series.values[:m + L]
    steps = Stream(subject).step_many(values.tolist())
    # the first m values only feed the seasonal difference: the model reads the last L
    assert all(s.prediction is None and s.groups == {} for s in steps[:m])
    assert all(s.prediction is not None for s in steps[m:])
    inputs = task.encode_input(",".join(map(str, values)))
    _same_as_record(subject, inputs, steps[m:], first=m)
    # after the window, the forecast is the task's own from that origin, in the series' units
    expected = task._forecast(subject.predictor, np.array([len(values) - 1]), values)[0]
    assert_close(steps[-1].prediction, expected, TOL, "forecast")
    assert len(steps[-1].prediction) == task.horizon


def test_a_bare_model_reads_its_own_input(tasks):
    mc = ModelConfig(input_size=2, output_size=3, hidden_size=4, dtype="float64")
    model = network_class(mc, "numpy")(mc, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 1, 2))
    steps = Stream(model).step_many(x[:, 0].tolist())
    out = _same_as_record(inspect.Subject(predictor_for(model), "numpy"),
                          inspect.inputs_of(inspect.open_subject(model), x), steps)
    assert_close([s.prediction for s in steps], out[:, 0], TOL, "raw outputs")
    assert "reads 2 a step" in raises_one_line(Stream(model).step, 1.0)


def test_what_a_stream_refuses(tasks):
    sine = Stream(_subject(tasks["sine"]))
    assert raises_one_line(sine.step, [0.1, 0.2]) == "the value has 2 numbers, the model reads 1 a step"
    assert "finite number" in raises_one_line(sine.step, float("nan"))
    assert "finite number" in raises_one_line(sine.step, "0.5")
    chars = Stream(_subject(tasks["charlm"]))
    assert "never saw" in raises_one_line(chars.step, "é")
    assert "is 2 tokens" in raises_one_line(chars.step, "ab")
    assert "positive integer" in raises_one_line(Stream, _subject(tasks["sine"]), 0)
    both = _subject(tasks["sine"], bidirectional=True)
    assert "bidirectional" in raises_one_line(Stream, both)
    mc = ModelConfig(input_size=4, output_size=6, vocab_size=6, hidden_size=4, architecture="seq2seq")
    assert "seq2seq" in raises_one_line(Stream, network_class(mc, "numpy")(mc, seed=0))


@pytest.mark.parametrize("name, values", [("sine", [0.1, 0.5, -0.3, 0.9]), ("charlm", list("the earth"))])
def test_numpy_stream_takes_the_step_path(tasks, name, values):
    """A plain float32 LSTM reads on LSTM.step's shortest path (the compiled kernel when numba
    is there): the same predictions and gates as through the predictor."""
    mc = tasks[name].model_config(hidden_size=6, num_layers=2, dtype="float32")
    subject = inspect.Subject(predictor_for(network_class(mc, "numpy")(mc, seed=3)), "numpy", tasks[name])
    fast, slow = Stream(subject), Stream(subject)
    slow.model = None
    assert fast.model is not None
    for v in values:
        a, b = fast.step(v), slow.step(v)
        if name == "charlm":                                    # the top 5 characters, each with p
            assert [p["char"] for p in a.prediction] == [p["char"] for p in b.prediction]
            assert [p["p"] for p in a.prediction] == pytest.approx([p["p"] for p in b.prediction], abs=1e-5)
        else:
            assert a.prediction == pytest.approx(b.prediction, abs=1e-5)
        assert list(a.groups) == list(b.groups) == ["l0", "l1"]
        for g, d in b.groups.items():
            assert list(a.groups[g]) == list(d)                  # the page lays rows out in this order
            for n, v_ in d.items():
                assert_close(a.groups[g][n], v_, 1e-5, f"{g}.{n}")
