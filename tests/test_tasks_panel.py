"""forecast over many series (tasks.panel): the long-format CSV and the M1 series, the split
at each series' end, one global model, per-series and pooled scores, runs and predictions."""

import json

import numpy as np
import pytest

from lstmlab.config import TrainConfig
from lstmlab.tasks import get_task, panel
from lstmlab.tasks.datasets import m1_yearly, read_csv_panel
from lstmlab.train import evaluate_ensemble, evaluate_run, fit, load_run
from tests.conftest import lstmlab, one_line_error, raises_one_line


def _panel(n_series=12, period=8, seed=0, lengths=(40, 90), noise=0.05):
    """Series of one seasonal shape at their own levels, amplitudes and lengths."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n_series):
        n = int(rng.integers(*lengths))
        t = np.arange(n)
        level, amp = 10 ** rng.uniform(0, 3), 10 ** rng.uniform(-0.5, 1.5)
        shape = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(4 * np.pi * t / period)
        out[f"s{k}"] = level + amp * (shape + noise * rng.standard_normal(n))
    return out


def _csv(tmp_path, series, name="panel.csv", shuffle=False):
    rows = [(key, t, v) for key, y in series.items() for t, v in enumerate(y)]
    if shuffle:                                                  # ids interleaved
        rows.sort(key=lambda r: (r[1], r[0]))
    path = tmp_path / name
    path.write_text("item,step,sales\n" + "".join(f"{k},{t},{float(v)!r}\n" for k, t, v in rows))
    return path


def _task(path, **kw):
    return get_task("forecast", csv=str(path), id="item", column="sales",
                    **{"stat_baselines": "none", "horizon": 4, "season": 8, **kw})


def test_a_long_csv_is_read_per_series_in_the_order_ids_first_appear(tmp_path):
    series = _panel(4)
    ids, values = read_csv_panel(_csv(tmp_path, series, shuffle=True), "item", "sales")
    assert ids == ["s0", "s1", "s2", "s3"]
    for key, y in zip(ids, values):
        np.testing.assert_array_equal(y, series[key])
    path = tmp_path / "gaps.csv"
    path.write_text("item,sales\na,1\nb,5\na,\na,3\nb,7\nb,\n")
    assert "line 4, column 'sales': is empty" in raises_one_line(read_csv_panel, path, "item", "sales")
    ids, values = read_csv_panel(path, "item", "sales", missing="interpolate")
    assert ids == ["a", "b"] and values[0].tolist() == [1, 2, 3] and values[1].tolist() == [5, 7]
    path.write_text("item,sales\na,1\n,2\n")
    assert "line 3, column 'item': names no series" in raises_one_line(read_csv_panel, path, "item", "sales")
    assert "has no column 'id'; its columns are: item, sales" in raises_one_line(
        read_csv_panel, path, "id", "sales")


def test_the_m1_competitions_yearly_series_ship_offline():
    p = m1_yearly()
    assert len(p.ids) == 181 and p.ids[0] == "T1" and (p.season, p.horizon) == (1, 6)
    lengths = [len(y) for y in p.values]
    assert (min(lengths), max(lengths), sum(lengths)) == (15, 58, 4515)
    assert p.values[0][:3].tolist() == [3600, 7700, 12300]


def test_each_series_is_split_at_its_own_end_and_no_window_crosses_series(tmp_path):
    series = _panel(6)
    task = _task(_csv(tmp_path, series), test_origins=2, valid_origins=3)
    assert type(task).__name__ == "Panel" and task.scale == "window"
    H, y = task.horizon, task.series.values
    values = list(series.values())
    for k, a in enumerate(task.starts):
        n = len(values[k])
        np.testing.assert_array_equal(y[a:a + n], values[k])
        test = task.origins["test"][task.series_of["test"] == k]
        valid = task.origins["valid"][task.series_of["valid"] == k]
        assert len(test) == 2 and len(valid) == 3
        assert test[-1] + H == a + n - 1                         # the last forecast ends the series
        assert valid[-1] + H == test[0]                          # validation ends where test begins
        train = task.train_all[(task.train_all >= a) & (task.train_all < a + n)]
        assert train[0] == a + 1 and train[-1] + H == valid[0]   # its futures precede validation
        padded = np.concatenate([np.full(task.context + task.season, values[k][0]), values[k]])
        for t in np.concatenate([train, valid, test]):           # its values, or its first
            end = t - a + task.context + task.season + 1
            np.testing.assert_array_equal(task._windows(np.array([t]))[0],
                                          padded[end - task.context - task.season:end])
    assert len(task.train_all) == sum(len(v) - 3 * H - 2 - 3 - panel.MIN_SEEN + 3 for v in values)


def test_series_too_short_are_left_out_and_said(tmp_path):
    series = {**_panel(5), "tiny": np.arange(9.0)}
    task = _task(_csv(tmp_path, series))
    assert len(task.kept) == 5 and "tiny" not in [task.ids[i] for i in task.kept]
    assert "1 too short left out" in task.chosen()["series"]
    assert "shorter than" in raises_one_line(_task, _csv(tmp_path, {"a": np.arange(9.0)}, "a.csv"))


def test_the_pooled_scores_are_means_of_each_series_own(tmp_path):
    """The naive MASE of each series is its test MAE over its own in-sample naive MAE (all its
    values before the test part, as M4); the pooled is their mean, the median beside it."""
    series = _panel(5)
    task = _task(_csv(tmp_path, series), season=1)
    b = task.baselines()["naive"]
    per = []
    for y in series.values():
        t = len(y) - 4 - 1                                       # the one test origin
        scale = np.mean(np.abs(np.diff(y[:t + 1])))
        per.append(np.mean(np.abs(y[t + 1:] - y[t])) / scale)
    assert b["mase"] == pytest.approx(np.mean(per), rel=1e-12)
    assert b["mase_median"] == pytest.approx(np.median(per), rel=1e-12)


def test_the_statistical_baselines_are_fitted_on_each_series_alone(tmp_path):
    from statsforecast.models import AutoETS

    series = _panel(3, lengths=(40, 60))
    task = _task(_csv(tmp_path, series), stat_baselines="ets", season=1)
    r = task.rolled("ets")
    for k, y in enumerate(series.values()):
        t = len(y) - 5                                           # y[..t] seen, 4 ahead
        theirs = AutoETS(season_length=1).fit(y[:t + 1]).predict(4)["mean"]
        np.testing.assert_allclose(r.mean[task.series_of["test"] == k][0], theirs, rtol=1e-9)
    assert "per series; most often ETS(" in task.baseline_models()["auto_ets"]


def test_a_series_the_statistical_model_cannot_fit_takes_the_naive_forecast(tmp_path, monkeypatch):
    series = _panel(3)
    task = _task(_csv(tmp_path, series), stat_baselines="ets")
    real = panel.roll

    def fails_on_the_second(kind, y, *a, **kw):
        if y[0] == series["s1"][0]:
            raise panel.NotFitted("no")
        return real(kind, y, *a, **kw)

    monkeypatch.setattr(panel, "roll", fails_on_the_second)
    r = task.rolled("ets")
    row = np.flatnonzero(task.series_of["test"] == 1)[0]
    assert r.mean[row].tolist() == [series["s1"][-5]] * 4
    assert task.baseline_models()["auto_ets"].endswith("naive on 1 it could not fit")


def test_one_global_model_learns_the_shape_all_series_share(tmp_path):
    """Twenty series of one seasonal shape at levels from 1 to 1000: a small network trained
    on all of them at once forecasts better than the seasonal naive forecast, whose error holds
    two noises (the best forecast's holds one: 1 / sqrt(2) of it), and far better than the
    naive one, pooled over the series."""
    task = _task(_csv(tmp_path, _panel(20, noise=0.3)), base="last", context=16)
    r = fit(task, task.model_config(hidden_size=32),
            TrainConfig(steps=400, batch_size=64, lr=1e-2, eval_every=100), tmp_path / "run",
            engine="torch", callbacks=[])
    test, base = r["metrics"]["test"], r["baselines"]
    assert test["mase"] < 0.9 * base["seasonal_naive"]["mase"], (test, base["seasonal_naive"])
    assert test["mase"] < 0.5 * base["naive"]["mase"]
    assert 0.7 <= test["coverage"] <= 1.0
    rows = (tmp_path / "run" / "figures" / "per_series.csv").read_text().splitlines()
    assert len(rows) == 21 and rows[0].startswith("series,values,LSTM MASE,LSTM sMAPE,naive MASE")
    lstm = np.array([float(line.split(",")[2]) for line in rows[1:]])
    assert lstm.mean() == pytest.approx(test["mase"], rel=1e-5)
    assert {"backtest.png", "forecast.png"} <= {p.name for p in (tmp_path / "run" / "figures").iterdir()}


def test_a_run_evaluates_and_forecasts_from_its_folder(tmp_path):
    series = _panel(6)
    csv = _csv(tmp_path, series)
    task = _task(csv)
    run = tmp_path / "run"
    r = fit(task, task.model_config(hidden_size=8), TrainConfig(steps=30, eval_every=30), run,
            engine="numpy", callbacks=[])
    csv.unlink()                                                 # the run keeps its series
    again = evaluate_run(run)
    assert again["metrics"]["test"]["mase"] == pytest.approx(r["metrics"]["test"]["mase"], rel=1e-12)
    assert again["chosen"] == r["chosen"]
    # predict: each series cut at its test origin forecasts as the test split did
    cut = {k: y[:-4] for k, y in series.items()}
    loaded, predictor, _ = load_run(run)
    out = loaded.predict(predictor, _csv(tmp_path, cut, "cut.csv"))
    test = loaded._forecast(predictor, loaded.origins["test"])
    for k, key in enumerate(series):
        np.testing.assert_allclose(out["series"][key]["forecast"], test[k], rtol=1e-6)   # float32
        assert all(lo <= f <= hi for lo, f, hi in zip(out["series"][key]["lower"],
                                                      out["series"][key]["forecast"],
                                                      out["series"][key]["upper"]))
    cli = lstmlab("predict", run, "--input", tmp_path / "cut.csv", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["series"]["s0"]["forecast"] == pytest.approx(test[0].tolist())
    one = tmp_path / "one.txt"                                   # one series, shorter than a window
    one.write_text("\n".join(map(str, series["s2"][:5])))
    assert len(loaded.predict(predictor, one)["series"]["value"]["forecast"]) == 4


def test_runs_of_several_seeds_ensemble(tmp_path):
    csv = _csv(tmp_path, _panel(6))
    runs = []
    for seed in range(2):
        task = _task(csv, seed=seed)
        runs.append(tmp_path / f"s{seed}")
        fit(task, task.model_config(hidden_size=8), TrainConfig(steps=30, eval_every=30, seed=seed),
            runs[-1], engine="numpy", callbacks=[])
    r = evaluate_ensemble(runs)
    loaded = [load_run(run) for run in runs]
    t = loaded[0][0].origins["test"]
    mean = np.mean([task._forecast(p, t) for task, p, _ in loaded], axis=0)
    expected = loaded[0][0]._pooled(mean, loaded[0][0]._truth(t), loaded[0][0].series_of["test"])
    assert r["metrics"]["test"]["mase"] == pytest.approx(expected["mase"], rel=1e-6)


@pytest.mark.parametrize("source, options, says", [
    ("m1", {"id": "item"}, "-o id names the series column of -o csv=PATH"),
    ("csv", {"calendar": True}, "-o calendar is for one series"),
    ("csv", {"scale": "global"}, "one global scale cannot serve series of different levels"),
    ("csv", {"base": "arima"}, "-o base=arima corrects one series' fitted model"),
    ("csv", {"horizon": 60}, "every series is shorter than"),
    ("csv", {"horizon": 40}, "the series hold 0 training origins: too few for horizon 40"),
    ("csv", {"season": "yearly"}, "season must be a number of steps"),
    ("m1", {"test_origins": 3, "valid_origins": 2, "horizon": 6}, None),
])
def test_what_many_series_cannot_do_is_one_line(tmp_path, source, options, says):
    kw = ({"data": "m1-yearly", "stat_baselines": "none"} if source == "m1" else
          {"csv": str(_csv(tmp_path, _panel(4))), "id": "item", "column": "sales"})
    if says is None:                  # 3 + 2 origins and 2 horizons: 17 values at least
        lengths = [len(y) for y in m1_yearly().values]
        assert len(get_task("forecast", **kw, **options).kept) == sum(n >= 17 for n in lengths) < 181
    else:
        assert says in raises_one_line(get_task, "forecast", **{**kw, **options})


def test_the_command_line_trains_many_series_and_says_what_it_chose(tmp_path):
    csv = _csv(tmp_path, _panel(6))
    out = lstmlab("train", "forecast", "--csv", csv, "--id", "item", "--column", "sales",
                  "-o", "horizon=4", "-o", "stat_baselines=none", "--steps", "20",
                  "--engine", "numpy", "--out", tmp_path / "run", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["chosen"]["series"].startswith("6 (") and "season" in r["chosen"]
    assert {"mase", "smape", "mase_median", "coverage"} <= set(r["metrics"]["test"])
    err = one_line_error(lstmlab("train", "forecast", "--csv", csv, "--id", "shop", "--column",
                                 "sales", "--out", tmp_path / "bad"))
    assert "has no column 'shop'" in err and not (tmp_path / "bad").exists()


def test_the_intervals_widen_where_a_series_has_just_turned_wild(tmp_path):
    """Normalized conformal: each interval is the validation errors' quantile in units of the
    series' last `horizon` steps, so a series ten times wilder at its end gets intervals ten
    times wider than its calm twin."""
    series = _panel(6)
    task = _task(_csv(tmp_path, series))
    run = tmp_path / "run"
    fit(task, task.model_config(hidden_size=8), TrainConfig(steps=20, eval_every=20), run,
        engine="numpy", callbacks=[])
    loaded, predictor, _ = load_run(run)
    calm = series["s0"][:60]
    wild = calm.copy()
    wild[-5:] = calm[-6] + 10 * np.diff(calm[-6:]).cumsum()     # its last 5 steps, ten times
    (tmp_path / "two.csv").write_text("item,sales\n" + "".join(
        f"{k},{v!r}\n" for k, y in (("calm", calm), ("wild", wild)) for v in y.tolist()))
    out = loaded.predict(predictor, tmp_path / "two.csv")["series"]
    width = {k: np.subtract(out[k]["upper"], out[k]["lower"]) for k in out}
    steps = {k: np.abs(np.diff(y[-5:])).mean() for k, y in (("calm", calm), ("wild", wild))}
    np.testing.assert_allclose(width["wild"] / width["calm"], steps["wild"] / steps["calm"], rtol=1e-9)
    assert steps["wild"] / steps["calm"] > 5
