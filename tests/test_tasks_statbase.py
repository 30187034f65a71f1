"""The statistical baselines of `forecast` (tasks.statbase): statsforecast's own rolling
cross-validation is the oracle; the cache; the task's option and report."""

import json

import numpy as np
import pandas as pd
import pytest
from statsforecast import StatsForecast

from lstmlab.config import TrainConfig
from lstmlab.tasks import get_task, statbase
from lstmlab.tasks.statbase import MODELS, roll
from tests.conftest import assert_close, lstmlab, one_line_error, raises_one_line

M, H, N_ORIGINS = 12, 6, 30


def _seasonal(n=360, seed=0):
    """Pure seasonality plus noise: a 12-step cycle, sd 0.3."""
    t = np.arange(n)
    return 20 + 4 * np.sin(2 * np.pi * t / M) + 0.3 * np.random.default_rng(seed).standard_normal(n)


def _cross_validation(kind, y, origins, level=90):
    """statsforecast's rolling origin, fitted once (refit=False): (mean, lo, hi), (n, H)."""
    df = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(y)), "y": y})
    model = statbase._model(kind, M)
    cv = StatsForecast(models=[model], freq=1).cross_validation(
        df=df, h=H, step_size=1, n_windows=len(origins), refit=False, level=[level])
    assert np.array_equal(np.unique(cv["cutoff"]), origins)
    name = model.alias
    return tuple(cv[c].to_numpy().reshape(len(origins), H)
                 for c in (name, f"{name}-lo-{level}", f"{name}-hi-{level}"))


@pytest.mark.parametrize("kind", list(MODELS))
def test_rolled_baselines_equal_statsforecast_cross_validation(kind):
    y = _seasonal()
    origins = np.arange(len(y) - H - N_ORIGINS, len(y) - H)
    r = roll(kind, y, origins, H, M, 0.9)
    mean, lo, hi = _cross_validation(kind, y, origins)
    # AutoARIMA reads only the values its filter still remembers (statbase.arima_window)
    tol = 1e-6 if kind == "arima" else 1e-9
    assert_close(r.mean, mean, tol, f"{kind} mean")
    assert_close(r.lo, lo, tol, f"{kind} lower bound")
    assert_close(r.hi, hi, tol, f"{kind} upper bound")
    assert r.name == MODELS[kind] and r.spec
    # the forecasts are at the noise floor of a pure seasonal series
    truth = y[origins[:, None] + np.arange(1, H + 1)]
    assert np.mean(np.abs(r.mean - truth)) < 0.4


def test_a_rolled_baseline_is_cached_and_a_damaged_cache_is_computed_again(monkeypatch):
    y = _seasonal(seed=1)
    origins = np.arange(300, 320)
    first = roll("ets", y, origins, H, M, 0.9)
    files = list((statbase.cache_root() / "statbase").glob("*.safetensors"))
    mine = [f for f in files if statbase._load(f, "AutoETS") is not None
            and np.array_equal(statbase._load(f, "AutoETS").mean, first.mean)]
    assert len(mine) == 1

    def never(kind, season):
        raise AssertionError("fitted again although cached")

    monkeypatch.setattr(statbase, "_model", never)
    again = roll("ets", y, origins, H, M, 0.9)
    assert np.array_equal(again.mean, first.mean) and again.spec == first.spec
    with pytest.raises(statbase.NotFitted, match="fitted again"):   # another key: not cached
        roll("ets", y, origins, H, M, 0.8)
    monkeypatch.undo()
    mine[0].write_bytes(mine[0].read_bytes()[:100])              # damaged: computed again
    assert np.array_equal(roll("ets", y, origins, H, M, 0.9).mean, first.mean)
    assert statbase._load(mine[0], "AutoETS") is not None


def _csv(tmp_path, values):
    path = tmp_path / "s.csv"
    path.write_text("when,load\n" + "".join(f"{k},{v:.6f}\n" for k, v in enumerate(values)))
    return path


def test_the_option_chooses_the_baselines(tmp_path):
    csv = str(_csv(tmp_path, _seasonal(600)))
    kw = dict(csv=csv, column="load", horizon=H, season=M, context=24)
    assert get_task("forecast", **kw).stat_kinds == ["arima", "ets", "mstl"]
    assert get_task("forecast", **kw, stat_baselines="mstl, ets").stat_kinds == ["ets", "mstl"]
    assert get_task("forecast", **{**kw, "season": 1}).stat_kinds == ["arima", "ets"]
    task = get_task("forecast", **kw, stat_baselines="none")
    assert set(task.baselines()) == {"naive", "seasonal_naive", "seasonal_diff", "seasonal_mean"}
    assert task.baseline_models() == {}
    for bad in ("theta", "arima,theta", ""):
        assert "stat_baselines takes any of arima, ets, mstl" in raises_one_line(
            get_task, "forecast", **kw, stat_baselines=bad)


def test_a_model_statsforecast_cannot_fit_is_left_out_and_said(tmp_path, monkeypatch):
    task = get_task("forecast", csv=str(_csv(tmp_path, _seasonal(600))), column="load",
                    horizon=H, season=M, context=24, stat_baselines="ets")

    class Refuses:
        def fit(self, y):
            raise ValueError("too short\nfor a season")

    monkeypatch.setattr(statbase, "_model", lambda kind, season: Refuses())
    assert set(task.baselines()) == {"naive", "seasonal_naive", "seasonal_diff", "seasonal_mean"}
    assert task.baseline_models() == {"auto_ets": "not fitted (AutoETS could not be fitted: too short)"}


def test_without_statsforecast_the_report_says_so_and_the_task_still_works(tmp_path, monkeypatch):
    """A core install (no `tasks` extra) trains, evaluates and predicts: the statistical
    baselines are left out and the report says what to install."""
    monkeypatch.setattr(statbase, "available", lambda: False)
    task = get_task("forecast", csv=str(_csv(tmp_path, _seasonal(600))), column="load",
                    horizon=H, season=M, context=24)
    assert set(task.baselines()) == {"naive", "seasonal_naive", "seasonal_diff", "seasonal_mean"}
    assert set(task.baseline_models().values()) == {
        "not fitted (statsforecast is not installed: pip install 'lstmlab[tasks]')"}


def test_train_reports_the_statistical_baselines_beside_the_lstm(tmp_path):
    csv = _csv(tmp_path, _seasonal(600))
    args = ["train", "forecast", "--csv", csv, "--column", "load", "-o", f"horizon={H}",
            "-o", f"season={M}", "-o", "context=24", "--steps", "30", "--hidden-size", "8"]
    r = lstmlab(*args, "--out", tmp_path / "run", "-o", "stat_baselines=arima,ets")
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "metric" in line)
    assert all(name in header for name in ("model", "auto_arima", "auto_ets", "seasonal_naive")), r.stdout
    assert "ARIMA(" in r.stdout and "ETS(" in r.stdout
    coverage = next(line for line in r.stdout.splitlines() if line.strip("│ ").startswith("coverage"))
    assert len([c for c in coverage.split("│") if c.strip()]) == 4    # name, LSTM, two peers
    out = json.loads(lstmlab("evaluate", tmp_path / "run", "--json").stdout)
    assert set(out["baseline_models"]) == {"auto_arima", "auto_ets"}
    ets = out["baselines"]["auto_ets"]
    assert ets["mase"] < out["baselines"]["naive"]["mase"] and 0.5 < ets["coverage"] <= 1.0
    assert "metric" in lstmlab(*args, "--out", tmp_path / "bare", "-o", "stat_baselines=none").stdout
    err = one_line_error(lstmlab(*args, "--out", tmp_path / "bad", "-o", "stat_baselines=prophet"))
    assert "stat_baselines takes any of" in err and not (tmp_path / "bad").exists()



def test_a_long_season_bounds_autoarimas_seasonal_search():
    """Above LONG_SEASON AutoARIMA tries seasonal orders of at most 1 (its unbounded search on
    taylor's m = 48 ran 14 minutes unfinished), approximating the likelihood as above
    APPROX_SEASON; at and below it the search is R's."""
    day, half_hours, months = (statbase._model("arima", m) for m in (24, 48, 12))
    assert (half_hours.max_P, half_hours.max_Q, half_hours.approximation) == (1, 1, True)
    assert (day.max_P, day.max_Q, day.approximation) == (2, 2, True)
    assert (months.max_P, months.max_Q, months.approximation) == (2, 2, False)


def _two_cycles(n=900, seed=0):
    """A 12-step cycle (which AutoETS and AutoARIMA model) and a spike every 7th step (which
    their season of 12 misses), plus noise."""
    t = np.arange(n)
    noise = 0.3 * np.random.default_rng(seed).standard_normal(n)
    return 20 + 4 * np.sin(2 * np.pi * t / M) + 3 * (t % 7 == 0) + noise


def test_a_statistical_base_is_its_models_forecast_and_the_lstm_learns_what_it_misses(tmp_path):
    """-o base=ets: the base at every origin is statsforecast's AutoETS fitted on the training
    part and run forward to that origin; a network that outputs nothing forecasts exactly
    the base; trained on the base's residuals, the LSTM learns the cycle AutoETS misses and
    beats it, and the run evaluates from its folder alike."""
    from statsforecast.models import AutoETS

    from lstmlab.tasks.base import Predictor
    from lstmlab.train import evaluate_run, fit

    kw = dict(csv=str(_csv(tmp_path, _two_cycles())), column="load", horizon=H, season=M, context=24)
    task = get_task("forecast", base="ets", stat_baselines="ets", **kw)
    y = task.series.values
    fitted = AutoETS(season_length=M).fit(y[:task.n_train])
    for t in (task.train_origins[0], task.origins["valid"][3], task.origins["test"][-1]):
        assert_close(task._baseline(np.array([t]), "ets")[0], fitted.forward(y[:t + 1], H)["mean"],
                     1e-9, f"the base at origin {t}")
    silent = Predictor(run=lambda x, *a, **k: (np.zeros((x.shape[1], task.outputs)), None),
                       trace=None, config=task.model_config(hidden_size=4))
    o = task.origins["test"]
    ets_alone = np.mean(np.abs(task._baseline(o, "ets") - task._truth(o))) / task.mase_scale
    assert task.evaluate(silent, "test")["mase"] == pytest.approx(ets_alone, rel=1e-12)
    run = tmp_path / "run"
    r = fit(task, task.model_config(hidden_size=16), TrainConfig(steps=300, batch_size=32, lr=3e-3,
                                                                 eval_every=300), run, engine="torch",
            callbacks=[])
    peer = r["baselines"]["auto_ets"]["mase"]                  # fitted on all before the test part
    assert r["metrics"]["test"]["mase"] < 0.9 * min(peer, ets_alone), (r["metrics"], peer, ets_alone)
    assert r["chosen"]["base"] == "ets (given)"
    again = evaluate_run(run)
    assert again["metrics"]["test"]["mase"] == pytest.approx(r["metrics"]["test"]["mase"], rel=1e-9)


def test_a_statistical_base_refuses_what_it_cannot_do(tmp_path):
    csv = _csv(tmp_path, _two_cycles())
    kw = dict(csv=str(csv), column="load", horizon=H, season=M, context=24, stat_baselines="none")
    with pytest.raises(ValueError, match="base=arima needs -o strategy=direct"):
        get_task("forecast", base="arima", strategy="recursive", **kw)
    with pytest.raises(ValueError, match="base=mstl needs a season of at least 2"):
        get_task("forecast", base="mstl", **{**kw, "season": 1})
    with pytest.raises(ValueError, match="base must be one of seasonal, last, seasonal_diff, "
                                         "seasonal_mean, arima, ets, mstl"):
        get_task("forecast", base="theta", **kw)
    task = get_task("forecast", base="ets", **kw)
    with pytest.raises(ValueError, match="forecasts no other values .predict --input, a stream."):
        task.stream_input(task.series.values[:40, None])
    args = ["train", "forecast", "--csv", csv, "--column", "load", "-o", f"horizon={H}", "-o",
            f"season={M}", "-o", "context=24", "-o", "base=ets", "-o", "stat_baselines=none",
            "--steps", "10", "--hidden-size", "4", "--engine", "numpy", "--out", tmp_path / "run"]
    assert lstmlab(*args).returncode == 0
    past = tmp_path / "past.txt"
    past.write_text("\n".join(f"{v}" for v in _two_cycles(100)))
    err = one_line_error(lstmlab("predict", tmp_path / "run", "--input", past))
    assert "corrects AutoETS's forecasts of the series it was fitted on" in err
    assert "-o base=seasonal_diff" in err


def test_mstl_takes_several_seasons_as_statsforecast_does():
    """A day of 8 steps inside a week of 56: MSTL given both equals statsforecast's own
    MSTL(season_length=[8, 56]) cross-validated, and AutoARIMA refuses two seasons."""
    from statsforecast.models import MSTL

    t = np.arange(56 * 12)
    rng = np.random.default_rng(3)
    y = 50 + 4 * np.sin(2 * np.pi * t / 8) + 3 * (t % 56 >= 40) + 0.3 * rng.standard_normal(len(t))
    origins = np.arange(len(y) - H - 5, len(y) - H)
    r = roll("mstl", y, origins, H, (8, 56), 0.9)
    for i, o in enumerate(origins):
        theirs = MSTL(season_length=[8, 56]).fit(y[:origins[0] + 1]).forward(y[:o + 1], H, level=[90])
        assert_close(r.mean[i], theirs["mean"], 1e-9, "MSTL[8, 56]'s mean")
    assert r.spec.startswith("MSTL[8, 56], trend ")
    with pytest.raises(ValueError, match=r"AutoARIMA takes one season, not \(8, 56\)"):
        statbase._model("arima", (8, 56))
