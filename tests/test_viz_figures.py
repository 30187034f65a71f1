"""Static figures: each writes a real PNG that depends on its data, checks its arguments
and replaces an old file only when the new one is complete."""

import warnings

import matplotlib.figure
import matplotlib.image
import matplotlib.text
import numpy as np
import pytest

import lstmlab
from lstmlab.viz import figures
from lstmlab.viz.figures import cell_state_norm, forecast_figure, gate_heatmap, loss_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH_PX = round(figures.WIDTH * figures.DPI)


def _image(path):
    """The decoded pixels of a PNG, after checking that it is one."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def _changed(a, b):
    """Fraction of pixels that differ between two images of the same size."""
    assert a.shape == b.shape, f"sizes differ: {a.shape} vs {b.shape}"
    return float(np.mean(np.any(np.abs(a - b) > 1e-3, axis=-1)))


def _sine(T=60, B=1, phase=0.0):
    t = np.arange(T)[:, None, None] * 0.25 + phase
    return np.sin(t + np.arange(B)[None, :, None]).astype(np.float32)   # (T, B, 1)


def _series(k=0, n_hist=40, n_fut=20, wrong=0.1):
    t = np.arange(n_hist + n_fut) * 0.3 + k
    y = np.sin(t)
    truth = y[n_hist:]
    return {"history": y[:n_hist], "truth": truth, "free_run": np.sin(t[n_hist:] * (1 + wrong)),
            "next_step": truth + 0.02, "label": f"sine {k}"}


# --------------------------------------------------------------------------- forecast

def test_forecast_draws_and_depends_on_the_forecast(tmp_path):
    series = [_series(0), _series(1)]
    series[0]["lower"] = series[0]["free_run"] - 0.2
    series[0]["upper"] = series[0]["free_run"] + 0.2
    out = forecast_figure(tmp_path / "a.png", series=series, title="sines",
                          metrics={"next-step MSE": 1.2e-4, "free-run MSE (20 steps)": 0.003})
    assert out == tmp_path / "a.png"
    a = _image(out)
    assert a.shape[1] == WIDTH_PX and 500 < a.shape[0] < 1000
    series[1] = dict(series[1], free_run=series[1]["free_run"][::-1].copy())   # only series 1
    b = _image(forecast_figure(tmp_path / "b.png", series=series, title="sines",
                               metrics={"next-step MSE": 1.2e-4, "free-run MSE (20 steps)": 0.003}))
    assert 0.001 < _changed(a, b) < 0.2        # a part of the picture moved, not all of it


def test_forecast_minimal_series(tmp_path):
    s = {"history": [0.5], "truth": [1.0, 2.0], "free_run": [1.1, 1.9]}
    img = _image(forecast_figure(tmp_path / "sub" / "f.png", series=[s]))   # makes the folder
    assert img.shape[1] == WIDTH_PX and img.shape[0] < 600


@pytest.mark.parametrize("series, message", [
    ([], "series must hold 1 to 4 dicts, got 0"),
    ([_series()] * 5, "series must hold 1 to 4 dicts, got 5"),
    (_series(), "series must be a list of 1 to 4 dicts"),
    ([dict(_series(), free_run=np.zeros(19))],
     r"series\[0\]\['free_run'\] has 19 values, truth has 20"),
    ([_series(), dict(_series(), next_step=np.zeros(3))],
     r"series\[1\]\['next_step'\] has 3 values, truth has 20"),
    ([{"history": [1.0], "truth": [1.0]}], r"series\[0\] lacks 'free_run'"),
    ([dict(_series(), lower=np.zeros(20))], "needs both 'lower' and 'upper'"),
    ([dict(_series(), history=np.zeros((4, 2)))], r"series\[0\]\['history'\] must be 1-D"),
    ([dict(_series(), truth=[])], r"series\[0\]\['truth'\] is empty"),
    ([dict(_series(), colour="red")], r"unknown keys \['colour'\]"),
])
def test_forecast_rejects_bad_series(tmp_path, series, message):
    with pytest.raises(ValueError, match=message) as err:
        forecast_figure(tmp_path / "f.png", series=series)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------- gates

@pytest.fixture(scope="module")
def lstm_heatmap(tmp_path_factory):
    """An LSTM's trace on a sine (T=60, H=8), its input and the heatmap drawn from them."""
    m = lstmlab.numpy.LSTM(1, 8, seed=0)
    x = _sine(60)
    path = gate_heatmap(tmp_path_factory.mktemp("gates") / "lstm.png", m.trace(x)["l0"], x=x,
                        title="LSTM on a sine")
    return m, x, _image(path)


def test_gate_heatmap_lstm_depends_on_the_input(tmp_path, lstm_heatmap):
    m, x, a = lstm_heatmap
    assert list(m.trace(x)["l0"]) == ["i", "f", "g", "o", "c", "h"]
    assert a.shape[1] == WIDTH_PX and 800 < a.shape[0] < 1400
    x2 = x.copy()
    x2[40:] = -x2[40:]                         # the last third differs
    b = _image(gate_heatmap(tmp_path / "b.png", m.trace(x2)["l0"], x=x2, title="LSTM on a sine"))
    assert 0.01 < _changed(a, b) < 0.5


def test_gate_heatmap_variants_without_some_gates(tmp_path, lstm_heatmap):
    full = lstm_heatmap[2]
    x = _sine(30, B=2)
    tr = lstmlab.numpy.LSTM(1, 8, variant="nfg").trace(x)["l0"]
    assert list(tr) == ["i", "g", "o", "c", "h"]
    nfg = _image(gate_heatmap(tmp_path / "nfg.png", tr, x=x, sequence=1))   # x: (T, B, I)
    tr = lstmlab.numpy.GRU(1, 40).trace(x[:, 0])["l0"]       # unbatched: (T, H) entries
    assert tr["h"].shape == (30, 40)
    gru = _image(gate_heatmap(tmp_path / "gru.png", tr, max_units=8))
    rnn = _image(gate_heatmap(tmp_path / "rnn.png", lstmlab.numpy.RNN(1, 8).trace(x)["l0"]))
    # a panel per entry the variant has: lstm x + 6, nfg x + 5, gru 4 (r, z, n, h), rnn 1 (h)
    assert full.shape[0] > nfg.shape[0] > gru.shape[0] > rnn.shape[0]
    assert nfg.shape[1] == gru.shape[1] == rnn.shape[1] == WIDTH_PX


@pytest.mark.parametrize("kwargs, message", [
    ({"sequence": 2}, "sequence 2 is out of range for a batch of 2"),
    ({"x": np.zeros(7)}, "x has 7 time steps, the trace has 30"),
    ({"x": np.zeros((30, 2, 1, 1))}, r"x must be \(T,\), \(T, I\) or \(T, B, I\)"),
    ({"max_units": 0}, "max_units must be a positive int"),
])
def test_gate_heatmap_rejects_bad_arguments(tmp_path, kwargs, message):
    tr = lstmlab.numpy.LSTM(1, 4).trace(_sine(30, B=2))["l0"]
    with pytest.raises(ValueError, match=message) as err:
        gate_heatmap(tmp_path / "g.png", tr, **kwargs)
    assert "\n" not in str(err.value)


def test_gate_heatmap_rejects_bad_traces(tmp_path):
    with pytest.raises(ValueError, match="trace_layer must be a non-empty dict"):
        gate_heatmap(tmp_path / "g.png", {})
    with pytest.raises(ValueError, match=r"trace entry 'h' is \(5, 3\) \(T, H\) but the others"):
        gate_heatmap(tmp_path / "g.png", {"c": np.zeros((5, 1, 4)), "h": np.zeros((5, 1, 3))})


# --------------------------------------------------------------------------- losses

def _rows(bump=0.0):
    rows = []
    for step in range(0, 1001, 10):
        rows.append({"step": step, "split": "train", "loss": 1.0 / (1 + step / 100), "time": 0.1})
        if step % 100 == 0:
            rows.append({"step": step, "split": "valid",
                         "loss": 1.2 / (1 + step / 100) + (bump if step == 500 else 0.0)})
    rows.append({"step": 1000, "split": "test", "mse": 0.01})    # task metrics only: skipped
    return rows


def test_loss_curve_draws_and_depends_on_the_losses(tmp_path):
    a = _image(loss_curve(tmp_path / "a.png", _rows(), title="training"))
    assert a.shape[1] == WIDTH_PX and 400 < a.shape[0] < 800
    b = _image(loss_curve(tmp_path / "b.png", _rows(bump=0.5), title="training"))
    assert 0.0005 < _changed(a, b) < 0.2


def test_loss_curve_linear_axis_for_non_positive_losses(tmp_path):
    rows = [{"step": s, "split": "train", "loss": 1.0 - s / 5} for s in range(10)]   # goes < 0
    rows.append({"step": 3, "split": "valid", "loss": float("nan")})
    _image(loss_curve(tmp_path / "l.png", rows))


@pytest.mark.parametrize("rows, message", [
    ([], "rows hold no finite 'loss' values"),
    ([{"step": 1, "split": "test", "mse": 0.1}], "rows hold no finite 'loss' values"),
    ([{"split": "train", "loss": 0.1}], r"rows\[0\] has a loss but no 'step'"),
    ([{"step": "x", "split": "train", "loss": 0.1}], r"rows\[0\]: step and loss must be numbers"),
    ({"step": 1}, "rows must be a list of dicts"),
])
def test_loss_curve_rejects_bad_rows(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        loss_curve(tmp_path / "l.png", rows)


# --------------------------------------------------------------------------- cell norms

def _norms(T=150):
    x = np.ones((T, 1, 1), dtype=np.float64)
    return [np.linalg.norm(lstmlab.numpy.LSTM(1, 8, variant=v, dtype=np.float64, seed=1)
                           .trace(x)["l0"]["c"][:, 0], axis=-1) for v in ("lstm", "lstm1997")]


def test_cell_state_norm_draws_and_depends_on_the_norms(tmp_path):
    lstm, lstm1997 = _norms()
    assert lstm1997[-1] > 5 * lstm[-1]         # what the figure is meant to show
    labels = ["lstm", "lstm1997 (no forget gate)"]
    a = _image(cell_state_norm(tmp_path / "a.png", [lstm, lstm1997], labels=labels))
    assert a.shape[1] == WIDTH_PX and 400 < a.shape[0] < 800
    overflow = lstm1997.copy()
    overflow[90:100] = 1e300                   # huge, then overflowed: drawn under
    overflow[100:] = np.inf                    # np.errstate(all="raise"), cut, no crash
    b = _image(cell_state_norm(tmp_path / "b.png", [lstm, overflow], labels=labels))
    assert 0.0005 < _changed(a, b) < 0.3


@pytest.mark.parametrize("norms, labels, message", [
    ([], [], "norms must be a non-empty list"),
    ([np.ones(5)], ["a", "b"], "labels has 2 names, norms has 1 arrays"),
    (np.ones(5), ["a"], "wrap one as"),
    ([np.ones((5, 2))], ["a"], r"norms\[0\] must be 1-D"),
    ([-np.ones(5)], ["a"], r"norms\[0\] has negative values"),
    ([np.zeros(5)], ["a"], "no positive finite values"),
])
def test_cell_state_norm_rejects_bad_arguments(tmp_path, norms, labels, message):
    with pytest.raises(ValueError, match=message):
        cell_state_norm(tmp_path / "n.png", norms, labels=labels)


# --------------------------------------------------------------------------- atomic writes

def test_old_file_survives_a_failed_draw(tmp_path, monkeypatch):
    path = tmp_path / "figure.png"
    path.write_bytes(b"old figure")
    with pytest.raises(ValueError):            # a user's mistake: nothing is touched
        forecast_figure(path, series=[])
    assert path.read_bytes() == b"old figure"

    def broken_savefig(self, fname, **kwargs):  # dies halfway through writing
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE + b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        forecast_figure(path, series=[_series()])
    assert path.read_bytes() == b"old figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]   # no temporary left

    monkeypatch.undo()
    assert forecast_figure(path, series=[_series()]) == path
    _image(path)                               # replaced on success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]


def test_compare_bars_draws_and_checks(tmp_path):
    from lstmlab.viz.figures import compare_bars

    rows = [{"variant": "lstm", "values": [0.1, 0.12]}, {"variant": "rnn_tanh", "values": [0.3, 0.5]}]
    a = matplotlib.image.imread(compare_bars(tmp_path / "a.png", rows, metric="mse"))
    rows[1]["values"] = [0.05, 0.06]
    b = matplotlib.image.imread(compare_bars(tmp_path / "b.png", rows, metric="mse"))
    assert a.shape == b.shape and np.abs(a - b).sum() > 0
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_bars(tmp_path / "c.png", [], metric="mse")


def _drawn(monkeypatch):
    """Capture the figures the figure functions save: a list filled as they draw."""
    saved = []
    real = figures.save_figure

    def keep(fig, path):
        saved.append(fig)
        return real(fig, path)

    monkeypatch.setattr(figures, "save_figure", keep)
    return saved


def _texts(fig):
    return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def test_gate_heatmap_sorts_units_by_their_mean_forget_gate(tmp_path, monkeypatch):
    saved = _drawn(monkeypatch)
    T, H = 30, 6
    f = np.linspace(0.1, 0.9, H)[[3, 0, 5, 1, 4, 2]] * np.ones((T, H))   # units 2, 4, 0, 5 highest
    trace = {name: np.full((T, H), 0.5) for name in ("i", "g", "o", "c", "h")} | {"f": f}
    gate_heatmap(tmp_path / "g.png", trace, max_units=4)
    fig = saved[-1]
    f_ax = next(ax for ax in fig.axes if ax.get_title(loc="left") == "forget gate f")
    rows = f_ax.images[0].get_array()[:, 0]
    assert np.allclose(rows, np.sort(f[0])[::-1][:4])                 # highest on top, 4 shown
    assert f_ax.get_ylabel() == "unit, by mean f"
    labels = [f_ax.yaxis.get_major_formatter()(k) for k in range(4)]
    assert labels == ["2", "4", "0", "5"]                              # the units' own numbers
    assert "sorted by their mean f" in fig._suptitle.get_text()
    gate_heatmap(tmp_path / "u.png", trace, sort_units=False)
    assert np.allclose(next(ax for ax in saved[-1].axes if ax.get_title(loc="left")
                            == "forget gate f").images[0].get_array()[:, 0], f[0])
    gru = {"r": np.full((T, 3), 0.5), "z": np.array([0.2, 0.9, 0.5]) * np.ones((T, 3)),
           "n": np.zeros((T, 3)), "h": np.zeros((T, 3))}
    gate_heatmap(tmp_path / "gru.png", gru)
    assert "unit, by mean z" in _texts(saved[-1])


def test_loss_curve_says_why_train_and_valid_differ(tmp_path, monkeypatch):
    saved = _drawn(monkeypatch)
    from lstmlab.config import TrainConfig
    from lstmlab.tasks import get_task
    from lstmlab.train import fit

    task = get_task("sine", seed=0, test_size=16)
    fit(task, task.model_config(hidden_size=8), TrainConfig(steps=10, batch_size=8, eval_every=10),
        tmp_path / "run")
    text = _texts(saved[-1])                                           # loss.png comes last
    assert "input noise (jitter 0.02)" in text and "Not on the same scale" in text


def test_characters_the_font_lacks_do_not_warn(tmp_path):
    rows = [{"step": 1, "split": "train", "loss": 1.0}, {"step": 2, "split": "train", "loss": 0.5}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_curve(tmp_path / "l.png", rows, title="\U0001F600 \u4e2d\u6587 \u0007 \U00013000")
    _image(tmp_path / "l.png")
