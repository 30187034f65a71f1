"""What the tasks offer lstmlab.inspect (Task.examples, Task.encode_input): a held-out split's
sequences exactly as evaluate feeds them to the model, each step labelled in the task's own
terms, and the user's input encoded as predict or generate encodes it."""

import dataclasses

import numpy as np
import pytest

from lstmlab.models import network_class
from lstmlab.numpy.losses import log_softmax
from lstmlab.tasks import get_task
from lstmlab.tasks import music as M
from lstmlab.tasks import reber as R
from lstmlab.tasks.base import Inputs
from lstmlab.tasks.rundata import save_task_data, task_of_run
from lstmlab.tasks.sentiment import UNK, tokenize
from lstmlab.train.engines import predictor_for

from .conftest import assert_close
from .test_tasks_classify import _ramps
from .test_tasks_music import _small_folder
from .test_tasks_sentiment import _csv as _reviews_csv

NAMES = ["sentiment", "classify", "music", "reber", "continual-reber", "adding", "copy",
         "temporal-order"]
NO_INPUT = ["reber", "continual-reber", "adding", "copy", "temporal-order"]
SMALL = {"reber": {"test_size": 20},
         "continual-reber": {"window": 20, "reset_every": 4, "test_symbols": 3000,
                             "valid_symbols": 500},
         "adding": {"seq_len": 10, "test_size": 16},
         "copy": {"delay": 5, "test_size": 16},
         "temporal-order": {"seq_len": 20, "test_size": 16}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The user's files of the tasks that read them: reviews, labelled sequences, chorales."""
    tmp = tmp_path_factory.mktemp("inspect-inputs")
    reviews = _reviews_csv(tmp, n=200)
    seqs = tmp / "seqs.csv"
    seqs.write_text(_ramps(n=60), encoding="utf-8")
    # a vocabulary of 12 words: every review has words it lacks (UNK)
    return {"sentiment": {"csv": str(reviews), "text_column": "review", "label_column": "opinion",
                          "vocab": 12},
            "classify": {"csv": str(seqs)},
            "music": {"folder": str(_small_folder(tmp / "chorales")), "window": 24, "transpose": 0}}


@pytest.fixture(scope="module")
def tasks(data):
    return {name: get_task(name, seed=0, **{**SMALL, **data}.get(name, {})) for name in NAMES}


def _predictor(task):
    mc = task.model_config(hidden_size=8, dtype="float64")
    return predictor_for(network_class(mc, "numpy")(mc, seed=0))


def _columns(x, lengths):
    """Each sequence of x (T, B, ...) cut to its length."""
    T, B = x.shape[:2]
    return [x[:T if lengths is None else int(lengths[b]), b] for b in range(B)]


def _key(seq):
    return (seq.dtype.str, seq.shape, seq.tobytes())


@pytest.mark.parametrize("name", NAMES)
def test_examples_are_what_evaluate_feeds_the_model(tasks, name):
    task = tasks[name]
    predictor = _predictor(task)
    mc = predictor.config
    ex = task.examples("test")
    T, B = ex.x.shape[:2]
    assert B >= 1 and len(ex.steps) == B
    if mc.vocab_size:                                            # token ids, as the embedding reads
        assert ex.x.ndim == 2 and ex.x.dtype == np.int64
        assert 0 <= ex.x.min() and ex.x.max() < mc.vocab_size
    else:
        assert ex.x.ndim == 3 and ex.x.shape[-1] == mc.input_size and ex.x.dtype.kind == "f"
    lengths = np.full(B, T) if ex.lengths is None else ex.lengths
    assert lengths.shape == (B,) and lengths.max() == T
    assert [len(s) for s in ex.steps] == lengths.tolist()
    assert all(isinstance(s, str) and s for steps in ex.steps for s in steps)
    one = ex.take(0)
    assert one.size == 1 and one.x.shape[0] == lengths[0] and one.lengths is None
    assert one.steps == [ex.steps[0]]

    # every sequence evaluate feeds, with the model's output for it (run with its lengths)
    fed = {}

    def spy(x, state=None, lengths=None, final=True):
        out, last = predictor.run(x, state, lengths, final)
        per_step = out.ndim == 3                                 # (T, B, O), else (B, O)
        for b, seq in enumerate(_columns(np.asarray(x), lengths)):
            fed[_key(seq)] = out[:len(seq), b] if per_step else out[b]
        return out, last

    metrics = task.evaluate(dataclasses.replace(predictor, run=spy), "test")
    assert task.metric in metrics                                # what ablation and compare read
    x = ex.x if ex.x.dtype.kind == "i" else ex.x.astype(mc.dtype)   # as the model reads it
    seqs = _columns(x, ex.lengths)
    assert sorted(fed) == sorted({_key(s) for s in seqs})       # the same sequences, no other
    out, _ = predictor.run(x, None, ex.lengths)                  # all examples in one call
    for b, seq in enumerate(seqs):
        mine = out[:len(seq), b] if out.ndim == 3 else out[b]
        assert_close(mine, fed[_key(seq)], 1e-10, f"{name} example {b}")


def test_steps_name_what_each_step_reads(tasks):
    s = tasks["sentiment"]
    ex = s.examples("test")
    i = s.split["test"][0]
    assert ex.steps[0] == tokenize(s.texts[i])[-s.max_tokens:]   # the words, unknown ones too
    assert UNK in ex.x[:len(ex.steps[0]), 0] and "<unk>" not in ex.steps[0]
    r = tasks["reber"].examples("test")
    assert all(R.accepts("".join(st) + "E") for st in r.steps)   # every symbol but the final E
    c = tasks["continual-reber"]
    assert "".join(c.examples("test").steps[0]) == R.decode(c.stream("test")[0][:-1])
    a = tasks["adding"].examples("test")
    assert all(sum(st.endswith("*") for st in steps) == 2 for steps in a.steps)
    assert a.steps[0][0] == f"{a.x[0, 0, 0]:.2f}" + ("*" if a.x[0, 0, 1] else "")
    np.testing.assert_array_equal(a.values, a.x[:, :, 0])
    cp = tasks["copy"].examples("test").steps[0]
    assert all(st in "12345678" for st in cp[:10]) and cp[10:14] == ["_"] * 4
    assert cp[14] == ":" and cp[15:] == ["_"] * 10            # delay 5: the cue at step 5 + 10 - 1
    o = tasks["temporal-order"].examples("test").steps
    assert all(st[0] == "E" and st[-1] == "B" and sum(v in "XY" for v in st) == 2 for st in o)
    m = tasks["music"]
    mx = m.examples("test")
    melody = m.corpus.melodies[m.index["test"][0]]
    assert mx.steps[0] == ["<bos>"] + M.format_events(melody[:-1]).split()
    assert tasks["classify"].examples("test").steps[0][:3] == ["t=0", "t=1", "t=2"]


def test_the_continual_stream_is_one_sequence_as_evaluate_reads_it_in_chunks(tasks, monkeypatch):
    task = tasks["continual-reber"]
    predictor = _predictor(task)
    monkeypatch.setattr(R, "STREAM_CHUNK", 700)                  # 5 calls, the state carried on
    chunked = task._logp(predictor, "test")
    ex = task.examples("test")
    assert ex.x.shape == (2999, 1) and ex.lengths is None
    out, _ = predictor.run(ex.x)
    assert_close(log_softmax(out[:, 0]), chunked, 1e-10, "stream")


@pytest.mark.parametrize("name", ["sentiment", "classify", "music"])
def test_a_task_rebuilt_from_its_run_folder_offers_the_same_examples(tasks, name, tmp_path):
    save_task_data(tasks[name], tmp_path)
    rebuilt = task_of_run({"task": name, "seed": 0}, tmp_path)
    assert rebuilt.stored is not None                            # from the run, not the files
    a, b = tasks[name].examples("test"), rebuilt.examples("test")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert a.steps == b.steps


# --- the user's input --------------------------------------------------------------------------
def test_sentiment_encodes_a_text_as_predict_does(tasks):
    task = tasks["sentiment"]
    predictor = _predictor(task)
    text = "The plot was SUPERB, a zorblax of a film!"
    inp = task.encode_input(text)
    assert isinstance(inp, Inputs) and inp.size == 1 and inp.lengths is None
    assert inp.x.dtype == np.int64
    np.testing.assert_array_equal(inp.x[:, 0], task.encode(text))   # predict_text's ids
    assert inp.steps == [["the", "plot", "was", "superb", ",", "a", "zorblax", "of", "a", "film",
                          "!"]]
    assert inp.x[6, 0] == UNK                                    # unknown: UNK, as predict does
    out, _ = predictor.run(inp.x)
    p = np.exp(log_softmax(out))[0]
    row = task.predict_text(predictor, text)["predictions"][0]
    assert round(float(p.max()), 4) == row["probability"]
    assert task.classes[int(p.argmax())] == row["label"]
    with pytest.raises(ValueError, match="^the text has no words; give a text such as"):
        task.encode_input("   ")


def test_classify_encodes_the_users_csv_as_predict_file_does(tasks, tmp_path):
    task = tasks["classify"]
    predictor = _predictor(task)
    path = tmp_path / "two.csv"
    path.write_text("sequence,level,noise\na,0.1,0.5\na,0.4,-0.2\na,0.9,0.0\nb,2.0,1.0\n"
                    "b,1.5,0.3\n", encoding="utf-8")
    inp = task.encode_input(str(path))
    assert inp.size == 2 and inp.lengths.tolist() == [3, 2]
    assert inp.steps == [["t=0", "t=1", "t=2"], ["t=0", "t=1"]]
    raw = np.array([[0.1, 0.5], [0.4, -0.2], [0.9, 0.0]])
    np.testing.assert_allclose(inp.x[:, 0], task.scale(raw))     # standardised as in training
    out, _ = predictor.run(inp.x, None, inp.lengths)
    p = np.exp(log_softmax(out))
    got = task.predict_file(predictor, path)["predictions"]
    for b, sid in enumerate("ab"):
        assert task.classes[int(p[b].argmax())] == got[sid]["label"]
        assert abs(p[b].max() - got[sid]["probability"]) < 1e-12
    path.write_text("sequence,level\na,0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has 1 feature columns .level.; this model reads 2"):
        task.encode_input(str(path))


def test_music_encodes_notes_as_generate_reads_a_prompt(tasks):
    task = tasks["music"]
    V = task.vocab
    known = [e for e in task.corpus.melodies[task.index["train"][0]] if V.encode([e])[0] != V.unknown]
    text = M.format_events(known[:3])
    inp = task.encode_input(text)
    assert inp.x.dtype == np.int64 and inp.x.shape == (4, 1)
    np.testing.assert_array_equal(inp.x[:, 0], np.r_[V.bos, V.encode(known[:3])])
    assert inp.steps == [["<bos>", *text.split()]]
    with pytest.raises(ValueError, match=r"^--input: C1:1 is outside the model's vocabulary"):
        task.encode_input(f"{text} C1:1")
    with pytest.raises(ValueError, match=r"^--input: 'H4:1' is not a note"):
        task.encode_input("H4:1")
    with pytest.raises(ValueError, match="^give notes such as"):
        task.encode_input(" ")


@pytest.mark.parametrize("name", NO_INPUT)
def test_tasks_without_a_users_input_point_to_example(tasks, name):
    n = tasks[name].examples("test").size
    with pytest.raises(ValueError, match=rf"reads no --input; pick a test example with --example N "
                                         rf"\(0 to {n - 1}\)"):
        tasks[name].encode_input("0.5, 0.7")
