"""The inspection figures (lstmlab.viz.inspect) on real results of small untrained models:
every function writes a PNG that decodes, for LSTM, GRU and RNN and for several models at
once; the HTML page escapes the text and carries each value; odd inputs draw quietly."""

from __future__ import annotations

import html
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from lstmlab import inspect as li
from lstmlab.models import network_class
from lstmlab.tasks import get_task
from lstmlab.train.engines import predictor_for
from lstmlab.viz import figures
from lstmlab.viz import inspect as vi

WIDTH_PX = round(figures.WIDTH * figures.DPI)
VARIANTS = ("lstm", "gru", "rnn_tanh")


def subject(task, variant="lstm", hidden=8):
    mc = task.model_config(hidden_size=hidden, variant=variant)
    return li.Subject(predictor_for(network_class(mc, "numpy")(mc, seed=0)), "numpy", task)


@pytest.fixture(scope="module")
def sine():
    task = get_task("sine")
    return {v: subject(task, v) for v in VARIANTS}


@pytest.fixture(scope="module")
def charlm():
    return subject(get_task("charlm"), hidden=16)


def png(path, min_height=150):
    """The image at path: a PNG of the house width and a sensible height."""
    assert path.exists() and path.stat().st_size > 5000
    img = mpimg.imread(path)
    assert img.shape[1] == WIDTH_PX and min_height <= img.shape[0] <= 4000, img.shape
    assert img[..., :3].std() > 0.05                       # something is drawn
    return img


@pytest.mark.parametrize("variant", VARIANTS)
def test_gates_figure_per_family(tmp_path, sine, variant):
    acts = li.activations(sine[variant], 0)
    img = png(vi.gates_figure(tmp_path / "g.png", acts, title="sine"))
    rows = {"lstm": 6, "gru": 4, "rnn_tanh": 1}[variant]     # one heatmap per gate and state
    assert img.shape[0] > 150 * rows


def test_gates_figure_units_text_and_checks(tmp_path, charlm):
    acts = li.activations(charlm, "And God said")
    png(vi.gates_figure(tmp_path / "g.png", acts, units=[3, 0, 15]))
    with pytest.raises(ValueError, match="unit 16 does not exist: l0 has units 0 to 15"):
        vi.gates_figure(tmp_path / "x.png", acts, units=[16])
    with pytest.raises(ValueError, match="group 'l1' does not exist"):
        vi.gates_figure(tmp_path / "x.png", acts, group="l1")
    with pytest.raises(ValueError, match="sequence 1 does not exist"):
        vi.gates_figure(tmp_path / "x.png", acts, sequence=1)
    assert not (tmp_path / "x.png").exists()


def test_gates_figure_one_step(tmp_path, charlm):
    png(vi.gates_figure(tmp_path / "g.png", li.activations(charlm, "A")))


def test_text_figure(tmp_path, charlm):
    text = "In the beginning\nGod created (the) heaven and the earth."
    acts = li.activations(charlm, text)
    values = acts.groups["l0"]["c"][:, 0, 3]
    png(vi.text_figure(tmp_path / "t.png", acts.inputs.steps[0], values, label="l0 unit 3, c"))
    words = ["a", "good", "film", "<br>", "sadly"]        # word steps, and all-zero values
    png(vi.text_figure(tmp_path / "w.png", words, np.zeros(5)))
    png(vi.text_figure(tmp_path / "one.png", ["x"], [np.inf]))           # one step, not finite
    with pytest.raises(ValueError, match="values has 4 values, text_steps has 5"):
        vi.text_figure(tmp_path / "x.png", words, np.zeros(4))


def test_layout_text_wraps_and_keeps_line_breaks():
    lay = vi.layout_text("ab cd\nef gh ij", 6)
    assert lay.rows.tolist() == [0] * 6 + [1] * 6 + [2] * 2       # "ab cd\n" "ef gh " "ij"
    words = vi.layout_text(["hello", "world", "x"], 11)
    assert words.rows.tolist() == [0, 0, 1] and words.cols.tolist() == [0, 6, 0]


def test_text_html_escapes_and_carries_values(tmp_path):
    steps = list("a<&>\nb")
    values = np.array([0.5, -1.0, 0.25, 1.0, 0.0, -0.125])
    units = [{"label": "unit <1>", "values": values}, {"label": "unit 2", "values": list(-values)}]
    page = vi.text_html(tmp_path / "t.html", steps, units).read_text(encoding="utf-8")
    spans = re.findall(r'<span style="background:#[0-9a-f]{6};[^"]*" title="([^"]*)">(.*?)</span>',
                       page, flags=re.S)
    assert len(spans) == 2 * len(steps)                    # one per step per unit
    assert [float(t) for t, _ in spans] == values.tolist() + (-values).tolist()
    assert [html.unescape(c) for c, _ in [(c, t) for t, c in spans[:6]]] == \
        ["a", "<", "&", ">", "\u21b5", "b"]
    assert "&lt;&amp;&gt;" not in page and "&lt;" in page and "<&>" not in page
    assert "unit &lt;1&gt;" in page and "<script" not in page and "http" not in page
    assert "\u21b5</span>\n" in page                        # the line break is kept
    words = vi.text_html(tmp_path / "w.html", ["good", "film"], [{"label": "u", "values": [1, 2]}])
    assert '">good</span> <span' in words.read_text(encoding="utf-8")   # words: a space between
    with pytest.raises(ValueError, match=r"units\[0\]\['values'\] has 1 values, text_steps has 2"):
        vi.text_html(tmp_path / "x.html", ["a", "b"], [{"label": "u", "values": [1.0]}])


def test_saturation_figure_one_and_several(tmp_path, sine):
    sats = {v: li.saturation(sine[v], max_steps=500) for v in ("lstm", "gru")}
    png(vi.saturation_figure(tmp_path / "one.png", sats["lstm"]))
    png(vi.saturation_figure(tmp_path / "all.png", sats))
    nfg = li.saturation(subject(get_task("sine"), "nfg"), max_steps=500)
    assert "f" not in nfg.shut["l0"]                       # a gate the model lacks: no points
    png(vi.saturation_figure(tmp_path / "nfg.png", {"lstm": sats["lstm"], "nfg": nfg}))


def test_saturation_figure_hand_made_groups(tmp_path):
    # two models, one with a second layer the other lacks (that panel says so)
    one = li.Saturation(0.1, 0.9, 10, {"l0": {"i": np.array([0.2, 0.5])}},
                        {"l0": {"i": np.array([0.7, 0.1])}})
    two = li.Saturation(0.1, 0.9, 10, {"l0": {"z": np.array([0.0])}, "l1": {"z": np.array([1.0])}},
                        {"l0": {"z": np.array([1.0])}, "l1": {"z": np.array([0.0])}})
    png(vi.saturation_figure(tmp_path / "s.png", {"a": one, "b": two}))


def test_timescales_figure(tmp_path, sine):
    ts = {v: li.timescales(sine[v], max_steps=500) for v in ("lstm", "gru")}
    png(vi.timescales_figure(tmp_path / "one.png", ts["gru"]))
    png(vi.timescales_figure(tmp_path / "all.png", ts, title="lstm against gru"))


def test_timescales_figure_infinite_and_one_step(tmp_path):
    # f = 1 at every step: infinite horizons, survival 1; and a single lag k
    forever = li.Timescales("f", 5, {"l0": np.array([np.inf, 1e7, 3.0])},
                            {"l0": np.ones((1, 3))})
    png(vi.timescales_figure(tmp_path / "t.png", {"forever": forever}))
    vanished = li.Timescales("f", 5, {"l0": np.array([0.01, 0.02])}, {"l0": np.zeros((4, 2))})
    png(vi.timescales_figure(tmp_path / "v.png", vanished))


def test_gradient_flow_figure(tmp_path, sine):
    with np.errstate(under="ignore"):      # 149 steps back: the gradient underflows float32
        flows = {v: li.gradient_flow(sine[v], 0) for v in VARIANTS}
    png(vi.gradient_flow_figure(tmp_path / "all.png", flows, title="lstm against rnn_tanh"))
    png(vi.gradient_flow_figure(tmp_path / "one.png", flows["lstm"]))


def test_gradient_flow_figure_zeros(tmp_path):
    zero = li.GradientFlow(["a", "b", "c"], {"l0": np.zeros(3)}, {"l0": np.zeros(3)},
                           {"l0": np.zeros((3, 2))}, "lstm")
    some = li.GradientFlow(["a", "b", "c"], {"l0": np.array([0.0, 1e-300, 1.0])}, {},
                           {"l0": np.zeros((3, 2))}, "rnn_tanh")
    png(vi.gradient_flow_figure(tmp_path / "z.png", {"zero": zero}))
    png(vi.gradient_flow_figure(tmp_path / "s.png", {"zero": zero, "some": some}))
    single = li.GradientFlow(["x"], {"l0": np.array([2.0])}, {}, {"l0": np.ones((1, 2))}, "gru")
    png(vi.gradient_flow_figure(tmp_path / "one.png", single))


@pytest.mark.parametrize("variant", VARIANTS)
def test_connectivity_figure_matrix(tmp_path, sine, variant):
    with np.errstate(under="ignore"):      # 149 steps back: the gradient underflows float32
        conn = li.connectivity(sine[variant], 0)
    png(vi.connectivity_figure(tmp_path / "c.png", conn))


def test_connectivity_figure_text_row_and_degenerate(tmp_path, charlm):
    png(vi.connectivity_figure(tmp_path / "c.png", li.connectivity(charlm, "And God said")))
    row = li.Connectivity(list("And God said"), np.linspace(0.0, 1.0, 12)[None])   # one output
    png(vi.connectivity_figure(tmp_path / "row.png", row))
    png(vi.connectivity_figure(tmp_path / "zero.png", li.Connectivity(["1.5"], np.zeros((1, 1)))))
    png(vi.connectivity_figure(tmp_path / "one.png", li.Connectivity(["a"], np.ones((1, 1)))))


def test_ablation_figure(tmp_path, sine):
    table = li.ablation_table(sine["gru"], 0, "h", 0.0)
    png(vi.ablation_figure(tmp_path / "a.png", table))
    png(vi.ablation_figure(tmp_path / "top.png", table, top=3), min_height=100)
    with pytest.raises(ValueError, match="top must be a positive int, got 0"):
        vi.ablation_figure(tmp_path / "x.png", table, top=0)
    empty = li.AblationTable("mse", 1.0, True, "h", 0.0, [])
    with pytest.raises(ValueError, match="the ablation table has no rows"):
        vi.ablation_figure(tmp_path / "x.png", empty)


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_figure(tmp_path, variant):
    s = subject(get_task("translate"), variant, hidden=16)
    acts = li.activations(s, 0)
    png(vi.attention_figure(tmp_path / "a.png", acts, title=variant))
    png(vi.gates_figure(tmp_path / "dec.png", acts, group="decoder.l0"))


def test_attention_figure_needs_seq2seq(tmp_path, sine):
    with pytest.raises(ValueError, match="these activations have no attention"):
        vi.attention_figure(tmp_path / "x.png", li.activations(sine["lstm"], 0))
