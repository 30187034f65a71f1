"""The forecast task: its data, splits, baselines, metrics and intervals, and a small run."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from lstmlab.config import TrainConfig
from lstmlab.tasks import forecast, get_task
from lstmlab.tasks.datasets import ArrayFile, builtin_series, csv_column_chunks, read_csv_column
from lstmlab.tasks.forecast import detect_season, prepare
from lstmlab.train import evaluate_ensemble, evaluate_run, fit, load_run
from tests.conftest import lstmlab, one_line_error, raises_one_line


def _csv(tmp_path, values, name="s.csv", column="load"):
    path = tmp_path / name
    path.write_text(f"when,{column}\n" + "".join(f"{k},{v:.6f}\n" for k, v in enumerate(values)))
    return path


def _wave(n=1200, period=20, seed=0):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 10 + 3 * np.sin(2 * np.pi * t / period) + 0.02 * t + 0.3 * rng.standard_normal(n)


def test_builtin_series_are_read_from_their_packages():
    s = builtin_series("seattle-temps")
    assert len(s.values) == 8759 and s.season == 24 and 20 < s.values.mean() < 70
    s = builtin_series("sunspots")
    assert len(s.values) == 2820 and s.values.min() >= 0 and s.season == 12
    with pytest.raises(ValueError, match="built in: seattle-temps, sunspots, co2, taylor"):
        builtin_series("tides")


def test_the_package_series_equal_their_packages_own_loaders():
    """co2 and taylor are read from the packages' files, never imported; the packages' own
    loaders are the oracle (statsmodels leaves co2's gaps as NaN; lstmlab interpolates)."""
    from pmdarima.datasets import load_taylor
    from statsmodels.datasets import co2

    s = builtin_series("taylor")
    np.testing.assert_array_equal(s.values, load_taylor())
    assert (s.season, s.horizon, s.step) == (48, 48, "half-hour")
    theirs = co2.load_pandas().data["co2"].to_numpy()
    s = builtin_series("co2")
    assert len(s.values) == len(theirs) == 2284 and np.isnan(theirs).sum() == 59
    known = ~np.isnan(theirs)
    np.testing.assert_array_equal(s.values[known], theirs[known])
    gap = np.flatnonzero(~known)[0]                              # a gap lies between its neighbours
    assert min(theirs[gap - 1], theirs[gap + 1]) <= s.values[gap] <= max(theirs[gap - 1], theirs[gap + 1])


def test_splits_origins_and_baselines(tmp_path):
    y = _wave()
    task = get_task("forecast", csv=str(_csv(tmp_path, y)), column="load", horizon=5, season=20,
                    context=40)
    o = task.origins
    assert task.train_origins[1] - 1 + 5 < 840 and o["valid"].min() == 839 and o["valid"].max() + 5 < 960
    assert o["test"].min() == 959 and o["test"].max() + 5 == 1199      # every test target is in the last 20%
    t = o["test"][:3]
    np.testing.assert_allclose(task._baseline(t, "last"), np.repeat(y[t][:, None], 5, 1))
    np.testing.assert_allclose(task._baseline(t, "seasonal"), y[t[:, None] + np.arange(1, 6) - 20])
    scale = np.mean(np.abs(y[20:840] - y[:820]))
    b = task.baselines()["seasonal_naive"]
    err = task._baseline(o["test"], "seasonal") - task._truth(o["test"])
    assert b["mase"] == pytest.approx(np.mean(np.abs(err)) / scale)
    assert b["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)))


def test_features_never_see_the_future(tmp_path):
    y = _wave()
    task = get_task("forecast", csv=str(_csv(tmp_path, y)), column="load", horizon=5, season=20,
                    context=40)
    t = task.origins["test"][:4]
    before = task._features(t)
    y2 = task.series.values.copy()
    y2[t.max() + 1:] += 100.0                                    # change everything after the origins
    np.testing.assert_array_equal(task._features(t, y2), before)


def test_adaptive_intervals_hold_coverage_through_a_regime_change():
    task = get_task("forecast", data="sunspots")
    rng = np.random.default_rng(0)
    H = task.horizon
    calib = np.abs(rng.standard_normal((400, H)))
    err = np.abs(rng.standard_normal((3000, H))) * np.r_[np.ones(1000), 3 * np.ones(2000)][:, None]
    half = task.rolling_intervals(calib, err)
    assert abs((err <= half).mean() - 0.9) < 0.02
    fixed = task._quantile(calib, 0.9)                           # split conformal without adapting
    assert (err <= fixed).mean() < 0.7


def test_adaptive_intervals_equal_numpy_quantiles_of_the_recent_errors():
    """The sorted window gives the quantiles np.quantile(method="higher") gives of the same
    recent errors, ties included (the oracle: the loop written out plainly)."""
    task = get_task("forecast", data="sunspots")
    rng = np.random.default_rng(1)
    W, n, H = 37, 400, 3
    calib = np.abs(rng.standard_t(3, (W, H))).round(1)            # rounded: many ties
    err = np.abs(rng.standard_t(3, (n, H))).round(1) * np.r_[np.ones(100), 4 * np.ones(300)][:, None]
    half = task.rolling_intervals(calib, err)
    alpha, want = 1 - task.coverage, np.empty_like(err)
    for h in range(H):
        known, a = list(calib[:, h]), alpha
        for i in range(n):
            if i - h - 1 >= 0:
                known.append(err[i - h - 1, h])
                a += 0.005 * (alpha - float(err[i - h - 1, h] > want[i - h - 1, h]))
            want[i, h] = (np.inf if a <= 0 else 0.0 if a >= 1 else np.quantile(
                known[-W:], min(1.0, (1 - a) * (1 + 1 / W)), method="higher"))
    np.testing.assert_array_equal(half, want)


@pytest.mark.parametrize("content, expect", [
    ("when,load\n0,1\n1,x\n", "line 3, column 'load'"),
    ("when,load\n0,1\n1,nan\n", "not a finite number"),
    ("when,power\n0,1\n", "no column 'load'; its columns are: when, power"),
    ("", "is empty"),
    ("when,load\n0,1\n1,\n2,3\n", "line 3, column 'load': is empty; .* -o missing=interpolate"),
    ("when,load\n0,\xff\xfe\n", "line 2, column 'load'"),
])
def test_bad_csv_is_one_clear_line(tmp_path, content, expect):
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))                  # \xff\xfe: not UTF-8
    with pytest.raises(ValueError, match=expect):
        read_csv_column(path, "load")


def test_missing_values_interpolate_inside_and_drop_at_the_ends(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("when,load\n0,\n1,2\n2,NaN\n3,\n4,8\n5,9\n6,\n")
    np.testing.assert_allclose(read_csv_column(path, "load", missing="interpolate"), [2, 4, 6, 8, 9])


class _Constant:
    """A stand-in predictor whose network always answers `value` (in scaled units)."""

    def __init__(self, task, value):
        self.config = task.model_config(hidden_size=4)
        self.value = value

    def run(self, x):
        return np.full((x.shape[1], self.config.output_size), self.value, np.float32), None


@pytest.mark.parametrize("base", ["seasonal", "last", "seasonal_diff"])
def test_recursive_feeds_its_forecasts_back(tmp_path, base):
    csv = str(_csv(tmp_path, _wave()))
    m = 4
    kw = dict(csv=csv, column="load", horizon=6, season=m, context=12, base=base,
              stat_baselines="none")
    direct = get_task("forecast", **kw)
    recursive = get_task("forecast", strategy="recursive", **kw)
    t = recursive.origins["test"][:5]
    # a network that adds nothing: both strategies are exactly the baseline they correct
    # (for seasonal_diff, ARIMA(0,1,0)(0,1,0)[m] run one step at a time is its closed form)
    for task in (direct, recursive):
        np.testing.assert_allclose(task._forecast(_Constant(task, 0.0), t), task._baseline(t, base))
    # adding c each step: direct adds c to every horizon step; recursive, fed its own
    # forecasts, accumulates it as its base's recursion does: g(h) = 1 + the base of g's past
    g = [0.0] * (m + 1)                                          # g(h) = 0 for h <= 0
    for _ in range(6):
        last, season, before = g[-1], g[-m], g[-m - 1]
        g.append(1 + {"last": last, "seasonal": season, "seasonal_diff": season + last - before}[base])
    steps = np.array(g[m + 1:])
    if base == "last":
        np.testing.assert_array_equal(steps, np.arange(1, 7))
    c = 0.5
    np.testing.assert_allclose(direct._forecast(_Constant(direct, c), t),
                               direct._baseline(t, base) + c * direct.r_scale)
    np.testing.assert_allclose(recursive._forecast(_Constant(recursive, c), t),
                               recursive._baseline(t, base) + c * recursive.r_scale * steps)


def test_the_seasonal_mean_baseline_is_the_profile_and_the_level():
    """seasonal_mean: the mean of each phase over the context's K seasons plus the last
    season's level against theirs; exact on a pure pattern, at any horizon, and by hand."""
    m = 7
    pattern = np.random.default_rng(1).standard_normal(m)
    y = 5 + np.tile(pattern, 60)
    task = get_task("forecast", data="sunspots", season=m, horizon=16, context=3 * m,
                    stat_baselines="none")
    assert task.mean_seasons == 3
    t = np.array([100, 201, 333])
    np.testing.assert_allclose(task._baseline(t, "seasonal_mean", y=y), y[t[:, None] + np.arange(1, 17)])
    z = np.random.default_rng(2).standard_normal(400)
    got = task._baseline(t, "seasonal_mean", y=z)
    for row, o in zip(got, t):
        past = z[o - 3 * m + 1:o + 1]
        level = past[-m:].mean() - past.mean()
        want = [np.mean([z[o + h - m * (1 + (h - 1) // m) - k * m] for k in range(3)]) + level
                for h in range(1, 17)]
        np.testing.assert_allclose(row, want)


def test_the_seasonal_diff_baseline_is_arima_010_010():
    """seasonal_diff is the forecast of (1 - B)(1 - B^m) y = e: the recursion
    y(t+h) = y(t+h-1) + y(t+h-m) - y(t+h-m-1), known values where known."""
    y = _wave(200, period=7)
    task = get_task("forecast", data="sunspots", season=7, horizon=16, stat_baselines="none")
    t = np.array([50, 120, 180])
    got = task._baseline(t, "seasonal_diff", y=y)
    for row, o in zip(got, t):
        z = list(y[:o + 1])
        for _ in range(16):
            z.append(z[-1] + z[-7] - z[-8])
        np.testing.assert_allclose(row, z[o + 1:])


class _Linear(_Constant):
    """A fixed random linear map of the last step's inputs: a stand-in network."""

    def run(self, x):
        w = np.random.default_rng(3).standard_normal((x.shape[2], self.config.output_size))
        return (x[-1] @ w).astype(np.float32), None


@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_a_window_scaled_forecast_moves_with_the_series(tmp_path, strategy):
    """scale=window: the inputs are measured from each window's last value in units of its
    mean step, so the forecast of a y + b is a f + b: what was learnt at one level and
    amplitude carries over to another."""
    y = _wave()
    kw = dict(column="load", horizon=6, season=20, context=40, scale="window",
              strategy=strategy, stat_baselines="none")
    task = get_task("forecast", csv=str(_csv(tmp_path, y)), **kw)
    y = task.series.values                                       # as read (6 decimals)
    t = task.origins["test"][::40]
    net = _Linear(task, 0.0)
    f = task._forecast(net, t)
    for a, b in ((3.0, -50.0), (0.2, 7.0)):          # (above the floor of a flat window)
        np.testing.assert_allclose(task._forecast(net, t, y=a * y + b), a * f + b, rtol=1e-5, atol=1e-4 * a)
        np.testing.assert_allclose(task._features(t, y=a * y + b), task._features(t), atol=1e-9)
    glob = get_task("forecast", csv=str(_csv(tmp_path, y, "g.csv")), **{**kw, "scale": "global"})
    net = _Linear(glob, 0.0)
    assert not np.allclose(glob._forecast(net, t, y=3 * y), 3 * glob._forecast(net, t))
    with pytest.raises(ValueError, match="cannot read a stream one value at a time"):
        task.stream_input(y[:30, None])
    assert "window" in raises_one_line(get_task, "forecast", csv=str(_csv(tmp_path, y)), column="load",
                                       scale="local")
    assert "context of at least 2" in raises_one_line(get_task, "forecast", csv=str(_csv(tmp_path, y)),
                                                      column="load", scale="window", context=1)


@pytest.mark.parametrize("source", ["built-in", "csv"])
def test_a_run_forecasts_with_the_base_its_training_chose(tmp_path, source):
    """A run rebuilt from its folder keeps the base its training chose, even where the choice
    would now fall elsewhere: runs from before seasonal_diff existed chose between two."""
    data = (dict(data="sunspots") if source == "built-in"
            else dict(csv=str(_csv(tmp_path, _wave())), column="load", season=20, context=40))
    chosen = get_task("forecast", stat_baselines="none", **data).base
    task = get_task("forecast", base="last" if chosen != "last" else "seasonal",
                    stat_baselines="none", **data)
    run = tmp_path / "run"
    r = fit(task, task.model_config(hidden_size=8), TrainConfig(steps=20, eval_every=20), run,
            engine="numpy", callbacks=[])
    for name, key in (("config.json", "task_options"), ("preprocessing.json", "options")):
        kept = json.loads((run / name).read_text())
        kept[key]["base"] = ""                                   # as an old run chose it
        (run / name).write_text(json.dumps(kept))
    again = evaluate_run(run)
    assert again["metrics"]["test"]["mase"] == pytest.approx(r["metrics"]["test"]["mase"], rel=1e-12)
    assert again["chosen"]["season"] == r["chosen"]["season"]   # "the series' own", "given"


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_the_gaussian_head_learns_the_noise_level(tmp_path, engine):
    """Residuals with a known spread: the head's sigma must come out near it."""
    rng = np.random.default_rng(1)
    y = 10 + 3 * np.sin(2 * np.pi * np.arange(1500) / 20) + 0.5 * rng.standard_normal(1500)
    task = get_task("forecast", csv=str(_csv(tmp_path, y)), column="load", horizon=3, season=20,
                    context=40, base="seasonal", intervals="gaussian")
    assert task.loss == "gaussian" and task.model_config().output_size == 6
    r = fit(task, task.model_config(hidden_size=16),
            TrainConfig(steps=300, batch_size=64, lr=1e-2, eval_every=100), tmp_path / "run",
            engine=engine)
    from lstmlab.train import load_run

    _, predictor, _ = load_run(tmp_path / "run")
    _, sigma = task._forecast_and_sigma(predictor, task.origins["test"])
    # the seasonal baseline's error is the difference of two noises: sd 0.5 * sqrt(2) = 0.71;
    # the model removes part of it, so its own error lies between 0.5 and 0.71
    assert 0.4 < np.median(sigma) < 0.85
    assert abs(r["metrics"]["test"]["coverage"] - 0.9) < 0.06


def test_backtest_folds_split_the_test_origins(tmp_path):
    task = get_task("forecast", csv=str(_csv(tmp_path, _wave())), column="load", horizon=5,
                    season=20, context=40, folds=4)
    b = task.baselines()["seasonal_naive"]
    sizes = [len(a) for a in np.array_split(task.origins["test"], 4)]
    weighted = sum(n * b[f"mase_fold{k + 1}"] for k, n in enumerate(sizes)) / sum(sizes)
    assert weighted == pytest.approx(b["mase"]) and "mase_fold5" not in b


def test_the_season_is_found_in_the_data():
    """detect_season: the built-in series' training parts give their calendar's season (a day
    of hours, a year of weeks, a day of half-hours rather than the week those make up) and
    sunspots its solar cycle of about 11 years; a noisy or trending cycle is found at its
    period, unchanged by a y + b; noise, red noise and a random walk have none."""
    def train_part(name):
        y = builtin_series(name).values
        return y[: int(0.7 * len(y))]

    assert [detect_season(train_part(n))[0] for n in ("seattle-temps", "co2", "taylor")] == [24, 52, 48]
    cycle, r = detect_season(train_part("sunspots"))
    assert 120 <= cycle <= 140 and 0.3 < r < 0.6
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    for period in (7, 17, 50):
        noisy = 1.5 * np.sin(2 * np.pi * t / period) + rng.standard_normal(3000)
        assert detect_season(noisy)[0] == period
        assert detect_season(-40 * noisy + 0.01 * t + 7)[0] == period       # with a trend
    ar = np.zeros(3000)
    for k in range(1, 3000):
        ar[k] = 0.95 * ar[k - 1] + rng.standard_normal()
    for plain in (rng.standard_normal(3000), ar, np.cumsum(rng.standard_normal(3000)), np.ones(500)):
        assert detect_season(plain)[0] == 1


def test_a_csv_gets_the_season_of_its_data_and_a_run_keeps_it(tmp_path, monkeypatch):
    """A CSV's season defaults to the data's (and so does -o season=auto on a built-in one); the
    report says where it came from, and a run keeps the season it was trained with even where
    the data would now give another."""
    csv = str(_csv(tmp_path, _wave(period=20)))
    task = get_task("forecast", csv=csv, column="load", horizon=5, context=40, stat_baselines="none")
    assert task.season == 20
    assert task.chosen()["season"].startswith("20 (from the data: autocorrelation 0.")
    assert task.chosen()["base"].endswith("(smallest training error)")
    given = get_task("forecast", csv=csv, column="load", horizon=5, context=40, season=10, base="last",
                     stat_baselines="none")
    assert given.chosen() == {"season": "10 (given)", "base": "last (given)"}
    spots = get_task("forecast", data="sunspots", stat_baselines="none")
    assert spots.season == 12 and re.match(r"12 \(the series' own; the data's autocorrelation peaks at "
                                           r"lag 1[234]\d \(0\.\d\d\): -o season=auto uses it\)$",
                                           spots.chosen()["season"])
    assert 120 <= get_task("forecast", data="sunspots", season="auto", stat_baselines="none").season <= 140
    with pytest.raises(ValueError, match="season must be a number of steps .1: none., several"):
        get_task("forecast", data="sunspots", season="yearly")
    run = tmp_path / "run"
    r = fit(task, task.model_config(hidden_size=8), TrainConfig(steps=20, eval_every=20), run,
            engine="numpy", callbacks=[])
    assert r["chosen"]["season"] == task.chosen()["season"]
    monkeypatch.setattr(forecast, "SEASON_MIN_ACF", 0.999)           # the data now has no season
    assert get_task("forecast", csv=csv, column="load", horizon=5, context=40).season == 1
    again = evaluate_run(run)
    assert again["chosen"] == r["chosen"]
    assert again["metrics"]["test"]["mase"] == pytest.approx(r["metrics"]["test"]["mase"], rel=1e-12)


def test_a_prepared_series_finds_its_season_once(tmp_path):
    csv = _csv(tmp_path, _wave(n=3000, period=20))
    info = prepare(csv, "load", tmp_path / "p")
    assert info["season"] == 20 and info["season_from"].startswith("from the data")
    task = get_task("forecast", prepared=str(tmp_path / "p"), horizon=5, context=40, stat_baselines="none")
    assert task.season == 20 and task.chosen()["season"] == f"20 ({info['season_from']})"
    with pytest.raises(ValueError, match="keeps the season it was prepared with"):
        get_task("forecast", prepared=str(tmp_path / "p"), season="auto")


def test_option_mistakes(tmp_path):
    with pytest.raises(ValueError, match="needs -o column=NAME"):
        get_task("forecast", csv=str(_csv(tmp_path, _wave())))
    with pytest.raises(ValueError, match="too short"):
        get_task("forecast", csv=str(_csv(tmp_path, _wave(100))), column="load", context=80)
    with pytest.raises(ValueError, match="strategy must be 'direct' or 'recursive'"):
        get_task("forecast", data="sunspots", strategy="iterated")
    with pytest.raises(ValueError, match="intervals=gaussian needs -o strategy=direct"):
        get_task("forecast", data="sunspots", strategy="recursive", intervals="gaussian")
    with pytest.raises(ValueError, match="intervals must be 'conformal' or 'gaussian'"):
        get_task("forecast", data="sunspots", intervals="quantile")
    with pytest.raises(ValueError, match="missing must be 'error' or 'interpolate'"):
        get_task("forecast", csv=str(_csv(tmp_path, _wave())), column="load", missing="zero")


@pytest.mark.parametrize("strategy, intervals", [("direct", "conformal"),
                                                 ("recursive", "conformal"),
                                                 ("direct", "gaussian")])
def test_a_small_run_beats_the_baselines_and_predicts(tmp_path, strategy, intervals):
    y = _wave()
    csv = _csv(tmp_path, y)
    task = get_task("forecast", csv=str(csv), column="load", horizon=5, season=20, context=40,
                    strategy=strategy, intervals=intervals)
    r = fit(task, task.model_config(hidden_size=16),
            TrainConfig(steps=150, batch_size=32, lr=1e-2, eval_every=50), tmp_path / "run")
    test, base = r["metrics"]["test"], r["baselines"]
    assert test["mase"] < base["naive"]["mase"] and test["mase"] < base["seasonal_naive"]["mase"]
    assert 0.75 < test["coverage"] <= 1.0
    out = subprocess.run([sys.executable, "-m", "lstmlab", "predict", str(tmp_path / "run"),
                          "--input", str(csv), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    p = json.loads(out.stdout)
    assert len(p["forecast"]) == 5 and all(lo <= f <= hi for lo, f, hi in
                                           zip(p["lower"], p["forecast"], p["upper"]))
    assert abs(p["forecast"][0] - y[len(y) - 20]) < 3.0          # near the value one season ago


# --- a series larger than memory: lstmlab prepare forecast, -o prepared ---------------------------
def test_a_csv_read_in_chunks_equals_it_read_whole(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.normal(size=300).round(3)
    cells = ["" if gap else str(v) for v, gap in zip(y, rng.random(300) < 0.3)]
    cells[:3], cells[-2:] = ["", "", ""], ["nan", ""]             # leading and trailing gaps
    path = tmp_path / "gaps.csv"
    path.write_text("t,v\n" + "".join(f"{k},{c}\n" for k, c in enumerate(cells)))
    whole = read_csv_column(path, "v", missing="interpolate")
    assert np.isfinite(whole).all() and len(whole) == 300 - 3 - 2
    for rows in (1, 2, 7, 64):
        parts = [v for v, _ in csv_column_chunks(path, "v", "interpolate", rows=rows)]
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-12, err_msg=str(rows))
    assert [v for v, _ in csv_column_chunks(_csv(tmp_path, y[:5]), "load", rows=2)][-1].size == 1


def test_array_file_reads_dense_and_scattered_windows_alike(tmp_path):
    values = np.arange(100_000, dtype="<f8") * 0.5
    (tmp_path / "v.f64").write_bytes(values.tobytes())
    f = ArrayFile(tmp_path / "v.f64", "<f8", 10, 100_000)
    for starts in (np.array([5, 9, 7, 30]), np.array([3, 50_000, 99_000, 12])):   # one read; four
        np.testing.assert_array_equal(f.windows(starts, 6), values[10 + starts[:, None] + np.arange(6)])
    with pytest.raises(ValueError, match="shorter than its description"):
        f.read(99_980, 100_000)


def test_a_prepared_series_trains_and_scores_like_the_csv(tmp_path):
    """prepare streams the CSV into values.f64 with the training part's statistics; the task
    built from it draws the same batches, scores the same origins the same way (the
    statistical baselines too), and a run keeps only the stretch its scoring and the
    statistical baselines' fit read, so it evaluates after the folder is gone."""
    y = _wave(n=3000)
    csv = _csv(tmp_path, y)
    info = prepare(csv, "load", tmp_path / "p", season=20)
    assert info["values"] == 3000 and (tmp_path / "p" / "values.f64").stat().st_size == 3000 * 8
    opts = dict(season=20, horizon=5, context=40, valid_origins=100, test_origins=200)
    whole = get_task("forecast", csv=str(csv), column="load", **opts)
    part = get_task("forecast", prepared=str(tmp_path / "p"), **opts)
    assert isinstance(part.series.values, ArrayFile)
    for k in ("mu", "sd", "mase_scale"):
        assert getattr(part, k) == pytest.approx(getattr(whole, k), rel=1e-12), k
    assert (part.base, part.r_scale, part.train_origins) == (whole.base, whole.r_scale, whole.train_origins)
    for split in ("valid", "test"):
        np.testing.assert_array_equal(part.origins[split], whole.origins[split])
    assert len(whole.origins["valid"]) == 100 and len(whole.origins["test"]) == 200
    for step in (1, 7):
        a, b = whole.train_batch(step, 16), part.train_batch(step, 16)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    assert part.baselines() == whole.baselines()
    train = TrainConfig(steps=30, batch_size=16, lr=3e-3, eval_every=30, seed=0)
    run = tmp_path / "run"
    result = fit(part, part.model_config(hidden_size=8), train, run, engine="numpy", callbacks=[])
    kept = load_file(run / "data.safetensors")["series"]
    lo, hi = part._kept()
    np.testing.assert_array_equal(kept, y[lo:hi].round(6))     # the stretch scoring reads
    assert lo == 0 == part._fit_start()                           # and the statistical fit's
    bare = get_task("forecast", prepared=str(tmp_path / "p"), **opts, stat_baselines="none")
    assert np.subtract(*bare._kept()[::-1]) < 1000
    (tmp_path / "p" / "values.f64").unlink()                      # the prepared folder is gone
    again = evaluate_run(run)
    assert again["metrics"]["test"]["mase"] == pytest.approx(result["metrics"]["test"]["mase"], rel=1e-9)


def test_prepare_forecast_refuses_what_it_cannot_use(tmp_path):
    csv = _csv(tmp_path, _wave(n=600))
    out = tmp_path / "p"
    err = one_line_error(lstmlab("prepare", "forecast", "--csv", csv, "--out", out))
    assert "--column" in err or "column=NAME" in err
    err = one_line_error(lstmlab("prepare", "forecast", "--csv", csv, "--column", "power", "--out", out))
    assert "no column 'power'; its columns are: when, load" in err
    err = one_line_error(lstmlab("prepare", "forecast", "--csv", csv, "--column", "load", "--out", out,
                                 "-o", "horizon=3"))
    assert "-o horizon does not apply to lstmlab prepare forecast" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("when,load\n0,1\n1,2\n2,x\n")
    err = one_line_error(lstmlab("prepare", "forecast", "--csv", bad, "--column", "load", "--out", out))
    assert "line 4, column 'load'" in err and not (out / "values.f64.part").exists()
    r = lstmlab("prepare", "forecast", "--csv", csv, "--column", "load", "--out", out, "-o", "season=20",
                "--json")
    assert r.returncode == 0, r.stderr
    said = json.loads(r.stdout)
    assert (said["train"], said["season"], said["season_from"]) == (
        f"lstmlab train forecast -o prepared={out}", 20, "given")
    err = one_line_error(lstmlab("prepare", "forecast", "--csv", csv, "--column", "load", "--out", out))
    assert "already holds prepared data" in err
    with pytest.raises(ValueError, match="prepared for season 20, not 24: prepare it again with -o season="):
        get_task("forecast", prepared=str(out), season=24)
    with open(out / "values.f64", "r+b") as f:                    # damaged: a value short
        f.truncate(599 * 8)
    with pytest.raises(ValueError, match="holds no series prepared by `lstmlab prepare forecast`"):
        get_task("forecast", prepared=str(out), season=20)


def test_runs_of_several_seeds_forecast_as_one_ensemble(tmp_path):
    """evaluate RUN RUN RUN averages the members' forecasts: the ensemble's MAE is at most
    the members' mean MAE (the absolute error is convex), and runs of another task or data
    are refused in one line."""
    csv = _csv(tmp_path, _wave())
    kw = dict(csv=str(csv), column="load", horizon=5, season=20, context=40, stat_baselines="none")
    runs = []
    for seed in range(3):
        task = get_task("forecast", seed=seed, **kw)
        runs.append(tmp_path / f"s{seed}")
        fit(task, task.model_config(hidden_size=8),
            TrainConfig(steps=40, batch_size=16, eval_every=40, seed=seed), runs[-1], engine="numpy",
            callbacks=[])
    r = evaluate_ensemble(runs)
    loaded = [load_run(run) for run in runs]
    t = loaded[0][0].origins["test"]
    mean = np.mean([task._forecast(p, t) for task, p, _ in loaded], axis=0)
    truth = loaded[0][0]._truth(t)
    assert r["metrics"]["test"]["mae"] == pytest.approx(np.mean(np.abs(mean - truth)), rel=1e-6)  # float32
    members = [task.evaluate(p, "test") for task, p, _ in loaded]
    assert r["members"]["mase"] == [m["mase"] for m in members]
    assert r["metrics"]["test"]["mae"] <= np.mean([m["mae"] for m in members]) + 1e-12
    assert len(set(r["members"]["mase"])) == 3                   # three different models
    out = lstmlab("evaluate", *runs)
    assert out.returncode == 0 and "ensemble of 3" in out.stdout and "the members alone: mase" in out.stdout
    other = get_task("forecast", **{**kw, "horizon": 4})
    fit(other, other.model_config(hidden_size=8), TrainConfig(steps=10, eval_every=10),
        tmp_path / "h4", engine="numpy", callbacks=[])
    assert "is not a run of the same task on the same data" in one_line_error(
        lstmlab("evaluate", runs[0], tmp_path / "h4"))


def _pure_season(n, shift_at=None, shift=0.0, seed=0, sd=0.2):
    """A fixed 12-step pattern plus white noise (sd 0.2); optionally a level shift."""
    rng = np.random.default_rng(seed)
    pattern = 3 * np.sin(2 * np.pi * np.arange(12) / 12) + np.cos(4 * np.pi * np.arange(12) / 12)
    y = 10 + np.tile(pattern, n // 12 + 1)[:n] + sd * rng.standard_normal(n)
    if shift_at is not None:
        y[shift_at:] += shift
    return y


def test_pure_seasonality_plus_noise_is_forecast_near_the_noise_floor(tmp_path):
    """The best possible forecast of pattern + noise errs by the noise alone: MAE sd sqrt(2/pi).
    Seasonal naive errs by two noises (sqrt(2) times that). The hybrid (a seasonal profile
    and level from the context's 4 seasons, the LSTM forecasting what they miss) errs by
    sqrt(1 + 1/4 + ...) times the floor: within 15% of it. An LSTM correcting seasonal naive
    alone stays near seasonal naive (measured: 1.33x the floor after 1,000 steps)."""
    y = _pure_season(3000)
    task = get_task("forecast", csv=str(_csv(tmp_path, y)), column="load", horizon=6, season=12,
                    context=48, stat_baselines="none")
    assert task.base == "seasonal_mean"                          # the smallest training error
    r = fit(task, task.model_config(hidden_size=16),
            TrainConfig(steps=200, batch_size=64, lr=3e-3, eval_every=100), tmp_path / "run",
            engine="torch", callbacks=[])
    floor = 0.2 * np.sqrt(2 / np.pi)
    assert r["baselines"]["seasonal_naive"]["mae"] == pytest.approx(np.sqrt(2) * floor, rel=0.1)
    assert r["metrics"]["test"]["mae"] < 1.15 * floor, (r["metrics"]["test"]["mae"], floor)


@pytest.mark.parametrize("scale", ["window", "global"])
def test_a_forecast_recovers_from_a_level_shift(tmp_path, scale):
    """A level shift of 40 noise sds in the test part: the forecasts whose horizon spans it
    miss by far, and once the context has passed it the error is back to what it was before
    (the base, seasonal_diff, follows the level; the inputs are differences, or measured from
    the window's last value with scale=window)."""
    n, at = 3000, 2700
    y = _pure_season(n, shift_at=at, shift=8.0)
    task = get_task("forecast", csv=str(_csv(tmp_path, y)), column="load", horizon=6, season=12,
                    context=48, base="seasonal_diff", scale=scale, stat_baselines="none")
    fit(task, task.model_config(hidden_size=32),
        TrainConfig(steps=400, batch_size=64, lr=1e-2, eval_every=100), tmp_path / "run",
        engine="torch", callbacks=[])
    _, p, _ = load_run(tmp_path / "run")
    o = task.origins["test"]
    err = np.abs(task._forecast(p, o) - task._truth(o)).mean(axis=1)
    before, spanning, after = err[o + 6 < at].mean(), err[(o < at) & (o + 6 >= at)].mean(), \
        err[o > at + 48 + 12].mean()
    assert spanning > 5 * before
    assert after < 1.3 * before, (before, after)


def _weekly_csv(tmp_path, weeks=30, seed=0):
    """Hourly: a daily cycle, a weekend 6 lower, noise; a time column `when`."""
    k = np.arange(24 * 7 * weeks)
    times = np.datetime64("2021-01-04T00:00", "s") + k * np.timedelta64(3600, "s")   # a Monday
    weekend = (k // 24) % 7 >= 5
    noise = 0.3 * np.random.default_rng(seed).standard_normal(len(k))
    y = 10 + 3 * np.sin(2 * np.pi * k / 24) - 6 * weekend + noise
    path = tmp_path / "week.csv"
    path.write_text("when,load\n" + "".join(f"{str(a).replace('T', ' ')},{v:.6f}\n"
                                            for a, v in zip(times, y)))
    return path, times, y


def test_calendar_cycles_and_features():
    """A cycle is read where the steps are at most half of it and the times span it twice; its
    features are the sine and cosine of the phase, periodic in it."""
    hour = np.timedelta64(3600, "s")
    hours = np.datetime64("2021-01-04T00:00", "s") + np.arange(24 * 300) * hour
    assert forecast.calendar_cycles(hours) == ["day", "week"]          # 300 days: no year twice
    assert forecast.calendar_cycles(hours[:24 * 10]) == ["day"]
    months = (np.datetime64("1900-01", "M") + np.arange(600)).astype("datetime64[s]")
    assert forecast.calendar_cycles(months) == ["year"]
    f = forecast.calendar_features(hours, ["day", "week"])
    assert f.shape == (len(hours), 4)
    np.testing.assert_allclose(f[:24 * 7], f[24 * 7:24 * 14], atol=1e-9)   # a week later, the same
    assert not np.allclose(f[:24, 2:], f[24:48, 2:])                      # a day later, another weekday
    np.testing.assert_allclose(f[6, :2], [1, 0], atol=1e-9)               # 06:00: a quarter of the day
    np.testing.assert_allclose(np.hypot(f[:, 0], f[:, 1]), 1)


def test_the_calendar_teaches_the_weekday_and_a_run_keeps_its_times(tmp_path):
    """A weekend the one-day window cannot see coming is learnt from the calendar (MASE below
    three quarters of the model's without it); the run keeps the CSV's times, so it evaluates
    after the file is gone, and predict reads the input's time column."""
    path, times, y = _weekly_csv(tmp_path)
    kw = dict(csv=str(path), column="load", horizon=24, season=24, context=24, stat_baselines="none")
    train = TrainConfig(steps=300, batch_size=32, lr=3e-3, eval_every=300)
    scores = {}
    for cal in (False, True):
        task = get_task("forecast", calendar=cal, **({"time": "when"} if cal else {}), **kw)
        assert task.n_features == 2 + 4 * cal
        r = fit(task, task.model_config(hidden_size=16), train, tmp_path / f"run{cal}", engine="torch",
                callbacks=[])
        scores[cal] = r["metrics"]["test"]["mase"]
    assert scores[True] < 0.75 * scores[False], scores
    assert r["chosen"]["calendar"] == "day, week"
    past = tmp_path / "past.csv"
    past.write_text("when,load\n" + "".join(f"{str(a).replace('T', ' ')},{v}\n"
                                            for a, v in zip(times[-100:], y[-100:])))
    p = lstmlab("predict", tmp_path / "runTrue", "--input", past, "--json")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["forecast"]) == 24
    path.unlink()
    again = evaluate_run(tmp_path / "runTrue")
    assert again["metrics"]["test"]["mase"] == pytest.approx(scores[True], rel=1e-9)
    bare = tmp_path / "bare.txt"
    bare.write_text("\n".join(str(v) for v in y[-100:]))
    err = one_line_error(lstmlab("predict", tmp_path / "runTrue", "--input", bare))
    assert "reads the calendar: give" in err and "the columns when beside the values" in err


def test_calendar_mistakes(tmp_path):
    path, _, _ = _weekly_csv(tmp_path, weeks=4)
    kw = dict(csv=str(path), column="load", horizon=24, season=24, context=24, stat_baselines="none")
    with pytest.raises(ValueError, match="name the CSV's time column with -o time=COLUMN"):
        get_task("forecast", calendar=True, **kw)
    with pytest.raises(ValueError, match="no column 'date'; its columns are: when, load"):
        get_task("forecast", calendar=True, time="date", **kw)
    with pytest.raises(ValueError, match="-o calendar needs -o strategy=direct"):
        get_task("forecast", calendar=True, time="when", strategy="recursive", **kw)
    with pytest.raises(ValueError, match="-o time names the time column of -o csv"):
        get_task("forecast", data="sunspots", time="when")
    task = get_task("forecast", calendar=True, time="when", **kw)
    with pytest.raises(ValueError, match="which a stream of numbers does not give"):
        task.stream_input(np.zeros((30, 1)))
    with pytest.raises(ValueError, match="bare numbers do not give"):
        task.encode_input("1,2,3")
    bad = tmp_path / "bad.csv"
    bad.write_text("when,load\n2021-01-01 00:00,1\n2021-01-01 01:00,2\nyesterday,3\n")
    with pytest.raises(ValueError, match="line 4, column 'when': 'yesterday' is not a time; write"):
        get_task("forecast", calendar=True, time="when", csv=str(bad), column="load")
    bad.write_text("when,load\n2021-01-01 01:00,1\n2021-01-01 00:00,2\n")
    with pytest.raises(ValueError, match="line 3, column 'when': the time does not come after"):
        get_task("forecast", calendar=True, time="when", csv=str(bad), column="load")
    assert get_task("forecast", data="sunspots", calendar=True, stat_baselines="none").cycles == ["year"]


def test_a_covariate_the_series_follows_is_read_and_kept(tmp_path):
    """y[t + 1] = 2 x[t] + noise, x white: the series' own past tells nothing of its next value,
    its covariate x nearly all (MASE under half the model's without it); the run keeps the
    column, predict reads it from the input, and what cannot give it says so."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000)
    y = np.concatenate([[0.0], 2 * x[:-1]]) + 0.2 * rng.standard_normal(3000)
    path = tmp_path / "cov.csv"
    path.write_text("load,driver\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in zip(y, x)))
    kw = dict(csv=str(path), column="load", horizon=1, season=1, context=8, stat_baselines="none")
    train = TrainConfig(steps=300, batch_size=32, lr=3e-3, eval_every=300)
    scores = {}
    for cov in ("", "driver"):
        task = get_task("forecast", covariates=cov, **kw)
        r = fit(task, task.model_config(hidden_size=16), train, tmp_path / f"run{cov}", engine="torch",
                callbacks=[])
        scores[cov] = r["metrics"]["test"]["mase"]
    assert scores["driver"] < 0.5 * scores[""], scores
    assert r["chosen"]["covariates"] == "driver" and task.n_features == 2
    past = tmp_path / "past.csv"
    past.write_text("load,driver\n" + "".join(f"{a},{b}\n" for a, b in zip(y[-20:], x[-20:])))
    p = json.loads(lstmlab("predict", tmp_path / "rundriver", "--input", past, "--json").stdout)
    assert abs(p["forecast"][0] - 2 * x[-1]) < 1.0                  # it read the driver's last value
    path.unlink()
    again = evaluate_run(tmp_path / "rundriver")
    assert again["metrics"]["test"]["mase"] == pytest.approx(scores["driver"], rel=1e-9)
    past.write_text("load\n" + "".join(f"{a}\n" for a in y[-20:]))
    err = one_line_error(lstmlab("predict", tmp_path / "rundriver", "--input", past))
    assert "has no column 'driver'" in err
    with pytest.raises(ValueError, match="-o covariates names columns of -o csv"):
        get_task("forecast", data="sunspots", covariates="driver")
    with pytest.raises(ValueError, match="-o covariates needs -o strategy=direct"):
        get_task("forecast", csv=str(_csv(tmp_path, _wave())), column="load", covariates="when",
                 strategy="recursive")


def test_several_seasons_are_parsed_shortest_first():
    assert forecast.parse_seasons("336, 48") == [48, 336]
    assert forecast.parse_seasons(24) == [24] and forecast.parse_seasons("1,24") == [24]
    assert forecast.parse_seasons("1") == [1]
    assert "got '48;336'" in raises_one_line(forecast.parse_seasons, "48;336")
    assert "season must be at least 1, got -2" in raises_one_line(forecast.parse_seasons, "-2,48")


def _weekly_days(days=7 * 30, seed=0):
    """8 steps a day, a weekend (days 6 and 7) at a lower level, and noise."""
    t = np.arange(8 * days)
    rng = np.random.default_rng(seed)
    weekend = (t // 8) % 7 >= 5
    return 20 + 3 * np.sin(2 * np.pi * t / 8) - 6 * weekend + 0.3 * rng.standard_normal(len(t))


def test_a_week_of_days_is_two_seasons_and_the_network_reads_both(tmp_path):
    """With seasons 8 and 56 the window reaches a week back, the network reads a seasonal
    difference for each, and the seasonal naive forecast is last week's; a network with both
    forecasts the weekend its one-day window cannot see far better than one with the day
    alone. The run keeps its seasons."""
    csv = _csv(tmp_path, _weekly_days())
    kw = dict(csv=str(csv), column="load", horizon=8, context=16, scale="window",
              stat_baselines="none")
    one, two = get_task("forecast", season=8, **kw), get_task("forecast", season="56,8", **kw)
    assert (two.seasons, two.season, two.reach, two.n_features) == ([8, 56], 8, 56, 3)
    assert two._windows(two.origins["test"][:2]).shape == (2, 16 + 56)
    assert two.mase_scale == one.mase_scale                      # the main season's
    t = two.origins["test"][:5]
    np.testing.assert_array_equal(two._baseline(t, "seasonal"),
                                  two._span(t, 1 - 56, 1 - 56 + 8))
    assert two.chosen()["season"] == "8, 56 (given)"
    scores = {}
    for name, task in (("one", one), ("two", two)):
        r = fit(task, task.model_config(hidden_size=16),
                TrainConfig(steps=300, batch_size=32, lr=1e-2, eval_every=100),
                tmp_path / name, engine="numpy", callbacks=[])
        scores[name] = r["metrics"]["test"]["mase"]
    assert scores["two"] < 0.6 * scores["one"], scores
    again = evaluate_run(tmp_path / "two")
    assert again["metrics"]["test"]["mase"] == pytest.approx(scores["two"], rel=1e-12)
    state = json.loads((tmp_path / "two" / "preprocessing.json").read_text())
    assert state["seasons"] == [8, 56] and len(state["input"]["features"]) == 4
    assert forecast.Forecast.options_of_state({**state, "season_from": "given"})["season"] == "8,56"


def test_a_built_in_run_says_where_its_season_and_base_came_from(tmp_path):
    """A run on built-in data is rebuilt from its options, which pin the season it found in
    the data and the base its training error chose: evaluate labels them as training did."""
    task = get_task("forecast", data="sunspots", season="auto", horizon=6, context=24,
                    stat_baselines="none")
    assert task.season > 100 and task.chosen()["base"].endswith("(smallest training error)")
    r = fit(task, task.model_config(hidden_size=8), TrainConfig(steps=10, eval_every=10),
            tmp_path / "run", engine="numpy", callbacks=[])
    again = evaluate_run(tmp_path / "run")
    assert again["chosen"] == r["chosen"] == task.chosen()
    assert again["chosen"]["season"].startswith(f"{task.season} (from the data: autocorrelation")
