"""`lstmlab inspect` end to end on small trained runs: the figures and numbers it writes, the
comparison of several runs, both engines, and one-line errors (exit 2) for a user's mistakes."""

import json
import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import lstmlab, one_line_error

SMALL = ["--hidden-size", "8", "--steps", "30", "--batch-size", "8", "--eval-every", "10"]




def train(path, *args):
    r = lstmlab("train", *args, *SMALL, "--out", path, "--json")
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    text = root / "small.txt"
    text.write_text("In the beginning (so it is written) was the word.\n" * 60, encoding="utf-8")
    return {"sine": train(root / "sine", "sine", "-o", "test_size=16"),
            "lstm": train(root / "adding-lstm", "adding", "-o", "seq_len=20", "-o", "test_size=32"),
            "rnn": train(root / "adding-rnn", "adding", "--variant", "rnn_tanh", "-o", "seq_len=20",
                         "-o", "test_size=32"),
            "charlm": train(root / "charlm", "charlm", "-o", f"text={text}", "-o", "seq_len=20",
                            "-o", "valid_chars=200")}


def inspect_json(*args):
    r = lstmlab("inspect", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_one_run_writes_every_figure_and_its_numbers(runs, tmp_path):
    res = inspect_json(runs["sine"], "--out", tmp_path / "out")
    assert {"gates_l0", "saturation", "timescales", "gradient_flow", "connectivity",
            "ablation"} <= set(res["figures"])
    for path in res["figures"].values():
        img = mpimg.imread(path)
        assert img.shape[0] > 100 and img.shape[1] > 100
    rows = res["numbers"]["ablation"]["rows"]
    assert len(rows) == 8 and [r["unit"] for r in rows] != []
    changes = [r["change"] for r in rows]
    assert changes == sorted(changes, reverse=True)             # mse: the worst clamp first
    saved = json.loads((tmp_path / "out" / "inspect.json").read_text())
    assert saved["numbers"]["saturation"] == res["numbers"]["saturation"]
    acts = load_file(tmp_path / "out" / "activations.safetensors")
    assert acts["l0/f"].shape == (149, 8) and np.all((acts["l0/f"] > 0) & (acts["l0/f"] < 1))


def test_both_engines_give_the_same_numbers(runs, tmp_path):
    a = inspect_json(runs["sine"], "--out", tmp_path / "a", "--no-ablate")["numbers"]
    b = inspect_json(runs["sine"], "--out", tmp_path / "b", "--no-ablate", "--engine", "torch")["numbers"]
    for g, gates in a["saturation"]["groups"].items():
        for k, v in gates.items():
            np.testing.assert_allclose(v["shut"], b["saturation"]["groups"][g][k]["shut"], atol=1e-3)
    np.testing.assert_allclose(a["timescales"]["mean"]["l0"], b["timescales"]["mean"]["l0"], rtol=1e-4)
    np.testing.assert_allclose(a["gradient_flow"]["groups"]["l0"]["dh"],
                               b["gradient_flow"]["groups"]["l0"]["dh"], rtol=1e-3, atol=1e-30)


def test_several_runs_are_compared_side_by_side(runs, tmp_path):
    res = inspect_json(runs["lstm"], runs["rnn"], "--out", tmp_path / "cmp")
    assert {"saturation", "gradient_flow", "gates_lstm", "gates_rnn_tanh"} <= set(res["figures"])
    assert set(res["numbers"]["gradient_flow"]) == {"lstm", "rnn_tanh"}
    assert any("rnn_tanh" in n and "saturation" in n for n in res["notes"])   # an RNN has no gates


def test_text_is_coloured_by_the_units_that_follow_a_signal(runs, tmp_path):
    res = inspect_json(runs["charlm"], "--input", "In the beginning (so it is written)",
                       "--signal", "position_in_word", "--out", tmp_path / "t")
    rows = res["numbers"]["top_units"]["position_in_word"]
    assert rows and all(-1 <= r["r"] <= 1 for r in rows)
    html = (tmp_path / "t" / "text.html").read_text(encoding="utf-8")
    assert html.count("<span") >= len("In the beginning (so it is written)")
    assert "http" not in html.lower().replace("http-equiv", "")   # a standalone page


def test_units_are_ranked_by_spearman_on_request(runs, tmp_path):
    res = inspect_json(runs["charlm"], "--input", "In the beginning (so it is written)",
                       "--signal", "position_in_word", "--correlation", "spearman", "--no-ablate",
                       "--out", tmp_path / "s")
    assert res["numbers"]["top_units_correlation"] == "spearman"
    assert all(-1 <= r["r"] <= 1 for r in res["numbers"]["top_units"]["position_in_word"])
    assert "\u03c1 = " in (tmp_path / "s" / "text.html").read_text(encoding="utf-8")


def test_the_units_are_measured_on_as_many_test_steps_as_asked(runs, tmp_path):
    """The test text is one passage of 150 characters, whose first 100 are a cold start."""
    counted = [inspect_json(runs["charlm"], "--signal", "position_in_word", "--no-ablate",
                            "--signal-steps", steps, "--out", tmp_path / steps)["numbers"]["top_units_steps"]
               for steps in ("120", "all")]
    assert counted == [120 - 100, 150 - 100]


@pytest.mark.parametrize("args, words", [
    (["--input", "zebra"], "never saw"),                        # characters the text lacks
    (["--example", "100000"], "past the test split"),
    (["--units", "3,99"], "unit 99 does not exist"),
    (["--units", "a,b"], "integers separated by commas"),
    (["--signal-steps", "many"], "a number of steps"),
    (["--layer", "1"], "layer 1 does not exist"),
    (["--signal", "moon_phase"], "unknown signal"),
    (["--input", "in", "--example", "1"], "not both"),
])
def test_mistakes_get_one_line_and_exit_2(runs, tmp_path, args, words):
    r = lstmlab("inspect", runs["charlm"], *args, "--out", tmp_path / "x")
    assert words in one_line_error(r)


def test_a_run_folder_without_a_model_is_refused(runs, tmp_path):
    assert "not an lstmlab run folder" in one_line_error(lstmlab("inspect", tmp_path / "nothing"))
    started = tmp_path / "started"                              # trained until no evaluation yet
    started.mkdir()
    shutil.copy(runs["sine"] / "config.json", started)
    assert "no model.safetensors" in one_line_error(lstmlab("inspect", started))


def test_runs_of_different_tasks_are_not_compared(runs, tmp_path):
    assert "different tasks" in one_line_error(lstmlab("inspect", runs["sine"], runs["lstm"]))


def test_help_names_every_signal():
    from lstmlab.inspect import SIGNALS

    r = lstmlab("inspect", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert all(name in text for name in SIGNALS)
