"""`forecast` over many series with one global model, scored per series and pooled as the
M competitions score: a CSV in long format (`-o id=COLUMN` names each row's series) or a
built-in panel (`-o data=m1-yearly`: the 181 yearly series of the M1 competition).

The split is per series, at its end: its last `test_origins` origins (default 1: one
forecast of its last `horizon` values, as the M competitions make) test; the `valid_origins`
origins (default 1) whose futures end where the test part begins validate and calibrate the
intervals; every earlier origin trains. One network learns from the training windows of all
the series at once, as the global models do that won or led the M4 competition (Smyl's
ES-RNN, N-BEATS): each window in its own units (`scale` window, the only one here: series of
different levels and amplitudes then look alike), forecasting what the base misses.

A series shorter than the window is padded in front with its first value (the network then
sees a flat past); one too short to hold a training value, a validation future and a test
future (2 + valid_origins + test_origins + 2 horizon - 2 values) is left out, and the report
says how many were.

Scores: each series' MASE (its scale: the mean absolute seasonal difference, at lag 1 where
the season is longer than its past, of all its values before the test part, as in M4) and
sMAPE; pooled as means over the series, with the median MASE beside them. The baselines:
the naive ones, and statsforecast's AutoARIMA and AutoETS (MSTL with a season) fitted on
each series' values before its test part; where one cannot fit a series, that series takes
the naive forecast and the report says so. The conformal intervals are split conformal,
normalized (Lei et al. 2018): per horizon step, the quantile of the validation errors of
all series, each over its series' mean absolute step in the `horizon` steps before its
origin, times that of the series at the test origin (so they widen where a series has just
turned wild; measured in each series' usual scale instead, M1's covered 78%).
The figures: three series' forecasts, the MASE of each forecaster by series length, and
per_series.csv (every series' scores) beside them.

`predict --input FILE` forecasts every series of a CSV with the id column (or the one series
of a bare column of numbers), each from its own last values.
"""

from __future__ import annotations

import collections
import csv
import io
from pathlib import Path
from statistics import NormalDist

import numpy as np

from . import statbase
from .base import Task, check_int
from .datasets import PANELS, Series, read_csv_panel, series_input
from .forecast import (
    BASELINES,
    OWN,
    SAMPLE_ORIGINS,
    STAT_BASES,
    STAT_NAMES,
    Forecast,
    _first_row,
    detect_season,
)
from .kit import count_progress, series_inputs
from .statbase import FIT_MAX, MODELS, NotFitted, Rolled, roll

MIN_SEEN = 2         # values a series has shown before any origin (a window's unit is a step)
GROUPS = 5           # the series-length groups of the figure
ONE_SERIES = ("prepared", "calendar", "time", "covariates")   # options for one series only


class Panel(Forecast):
    """Forecast's task over many series (see the module's note)."""

    def __init__(self, seed=0, **options):
        Task.__init__(self, seed, **options)
        o = self.opts
        given = [k for k in ONE_SERIES if o[k]]
        if given:
            raise ValueError(f"-o {given[0]} is for one series; many series train without it")
        if o["missing"] not in ("error", "interpolate"):
            raise ValueError(f"missing must be 'error' or 'interpolate', got {o['missing']!r}")
        ids, values, meta = self._read()
        self.prepared, self.offset, self.extra = None, 0, None
        self.cycles: list[str] = []
        self.covariates: list[str] = []
        self.calendar, self.times, self.cov = False, None, None
        self.cov_mu = self.cov_sd = np.empty(0)
        H = self.horizon = int(o["horizon"]) or meta["horizon"]
        season, self.season_from = self._panel_season(o["season"], meta["season"], values)
        self._set_seasons([season])
        self.context = int(o["context"]) or 4 * max(H, self.season)
        for name, v in (("horizon", H), ("season", self.season), ("context", self.context)):
            if v < 1:
                raise ValueError(f"{name} must be at least 1, got {v}")
        if not o["scale"] or o["scale"] == "window":
            self.opts["scale"] = "window"
        else:
            raise ValueError("many series are read in each window's own units (-o scale=window): "
                             "one global scale cannot serve series of different levels")
        self._read_model_options()
        if self.base in STAT_BASES:
            raise ValueError(f"-o base={self.base} corrects one series' fitted model; many "
                             "series take a naive base (seasonal, last, seasonal_diff, seasonal_mean)")
        self._layout(ids, values, meta)
        self.mu = self.sd = self.mase_scale = None       # per window, per series (self.scales)
        if self.stored is not None:
            st = self.stored.state
            self.base, self.r_scale, self.s_floor = st["base"], st["r_scale"], st["s_floor"]
        else:
            self._choose_base_and_scale()
        self.stream_width = 1
        self.stream_window = max(self.season + 1, self.mean_seasons * self.season
                                 if self.base == "seasonal_mean" else 0)
        self.stat_kinds = self._stat_kinds(o["stat_baselines"])
        self._rolled: dict[str, Rolled | str] = {}

    # --- the data -----------------------------------------------------------------------
    def _read(self) -> tuple[list[str], list[np.ndarray], dict]:
        """The series' ids and values (a run's, a CSV's or a built-in panel's) and what is
        known of them: name, step, season (0: unknown), usual horizon, source."""
        o = self.opts
        if o["csv"]:
            if not o["column"] or not o["id"]:
                raise ValueError("many series from -o csv=PATH need -o id=NAME (the column naming "
                                 "each row's series) and -o column=NAME (their values)")
            meta = {"name": Path(o["csv"]).name, "step": "step", "unit": "", "season": 0,
                    "horizon": 12, "source": o["csv"]}
        elif o["id"]:
            raise ValueError("-o id names the series column of -o csv=PATH")
        elif o["data"] in PANELS:
            meta = {}
        else:
            raise ValueError(f"many series come from -o csv=PATH -o id=NAME or a built-in "
                             f"panel ({', '.join(PANELS)}), not {o['data']!r}")
        if self.stored is not None:                              # a CSV run's (a built-in
            lengths = self.stored.arrays["lengths"]              # panel's is read again)
            values = np.split(self.stored.arrays["series"], np.cumsum(lengths)[:-1])
            return list(self.stored.state["ids"]), values, meta
        if o["csv"]:
            ids, values = read_csv_panel(o["csv"], o["id"], o["column"], missing=o["missing"])
            return ids, values, meta
        p = PANELS[o["data"]]()
        return p.ids, p.values, {"name": p.name, "step": p.step, "unit": p.unit,
                                 "season": p.season, "horizon": p.horizon, "source": p.source}

    def _panel_season(self, given, own: int, values) -> tuple[int, str]:
        """The season: a run's, given, the panel's own, or found in the data (auto, a CSV's
        default): the lag detect_season finds in most of the series long enough to show one."""
        if self.stored is not None:
            return self.stored.state["season"], self.stored.state["season_from"]
        text = str(given).strip().lower()
        if text in ("", "0") and own:
            return own, OWN
        if text in ("", "0", "auto"):
            found = [detect_season(y[:int(0.8 * len(y))])[0] for y in values if len(y) >= 12]
            counts = collections.Counter(m for m in found if m > 1)
            if not counts:
                return 1, f"from the data: none in {len(found)} series of at least 12 values"
            m, n = counts.most_common(1)[0]
            if 2 * n < len(found):
                return 1, (f"from the data: none in most series (lag {m}, the most common, "
                           f"in {n} of {len(found)})")
            return m, f"from the data: autocorrelation peaks at lag {m} in {n} of {len(found)} series"
        try:
            return int(text), "given"
        except ValueError:
            raise ValueError(f"season must be a number of steps (1: none), auto (found in the "
                             f"data) or empty (the panel's own), got {given!r}") from None

    def _layout(self, ids, values, meta) -> None:
        """The series end to end in one array, each padded in front with its first value
        (context + season of them, so that every window lies inside its series), and each
        one's origins: training (self.train_all), validation and test (self.origins, with
        self.series_of: the kept series each origin belongs to)."""
        o, H = self.opts, self.horizon
        n_test = check_int("test_origins", o["test_origins"], 0) or 1
        n_valid = check_int("valid_origins", o["valid_origins"], 0) or 1
        self.ids, self.values = list(ids), values
        self.lengths = np.array([len(y) for y in values], dtype=np.int64)
        shortest = MIN_SEEN + n_valid + n_test + 2 * H - 2
        keep = [i for i, y in enumerate(values) if len(y) >= shortest]
        if not keep:
            raise ValueError(f"every series is shorter than {shortest} values (a training value, "
                             f"{n_valid} validation and {n_test} test origin(s) with horizon {H}): "
                             "lower -o horizon")
        self.kept = np.array(keep, dtype=np.int64)
        pad = self.context + self.season
        parts, starts = [], []
        at = 0
        for i in keep:
            y = values[i]
            parts += [np.full(pad, y[0]), y]
            starts.append(at + pad)
            at += pad + len(y)
        self.starts = np.array(starts, dtype=np.int64)          # where each kept series' values begin
        self.series = Series(meta["name"], np.concatenate(parts), meta["step"], meta["unit"],
                             self.season, H, meta["source"])
        train: list[np.ndarray] = []
        origins: dict[str, list[np.ndarray]] = {"valid": [], "test": []}
        owner: dict[str, list[np.ndarray]] = {"valid": [], "test": []}
        scales = []
        m = self.season
        for k, i in enumerate(keep):
            y, a = values[i], self.starts[k]
            first_test = len(y) - H - n_test
            first_valid = first_test - H - n_valid + 1
            train.append(a + np.arange(MIN_SEEN - 1, first_valid - H + 1))
            origins["valid"].append(a + np.arange(first_valid, first_valid + n_valid))
            origins["test"].append(a + np.arange(first_test, first_test + n_test))
            for part in ("valid", "test"):
                owner[part].append(np.full(len(origins[part][-1]), k))
            past = y[:first_test + 1]                            # what the forecaster has seen
            lag = m if len(past) > m else 1
            scales.append(float(np.mean(np.abs(past[lag:] - past[:-lag]))) or 1.0)
        self.train_all = np.concatenate(train)
        if len(self.train_all) < 10:
            raise ValueError(f"the series hold {len(self.train_all)} training origins: too few "
                             f"for horizon {H}; lower -o horizon or -o valid_origins")
        self.origins = {k: np.concatenate(v) for k, v in origins.items()}
        self.series_of = {k: np.concatenate(v) for k, v in owner.items()}
        self.scales = np.array(scales)                           # MASE's, per kept series

    def _training_sample(self) -> np.ndarray:
        t = self.train_all
        if len(t) <= SAMPLE_ORIGINS:
            return t
        return t[np.linspace(0, len(t) - 1, SAMPLE_ORIGINS).astype(np.int64)]

    def _draw(self, rng, n: int) -> np.ndarray:
        return self.train_all[rng.integers(0, len(self.train_all), size=n)]

    def stored_arrays(self) -> dict[str, np.ndarray]:
        """Every series' values end to end (the left-out ones too), and their lengths."""
        return {"series": np.concatenate(self.values), "lengths": self.lengths}

    def preprocessing(self) -> dict:
        d = super().preprocessing()
        for k in ("mu", "sd", "mase_scale"):
            d.pop(k)
        return {**d, "ids": self.ids, "mase_scales": self.scales.tolist()}

    def chosen(self) -> dict[str, str]:
        n, left = len(self.kept), len(self.ids) - len(self.kept)
        per = len(self.origins["test"]) // n
        lengths = self.lengths[self.kept]
        return {"series": f"{n} ({lengths.min()}-{lengths.max()} values, {per} test origin"
                          f"{'s' if per > 1 else ''} each"
                          + (f"; {left} too short left out" if left else "") + ")",
                "season": f"{self.season} ({self.season_from})",
                "base": f"{self.base} ({self._base_from()})"}

    # --- scores -------------------------------------------------------------------------
    def _per_series(self, forecast, truth, owner) -> tuple[np.ndarray, np.ndarray]:
        """Each kept series' MASE and sMAPE (%) over its origins in `owner`."""
        n = len(self.kept)
        counts = np.bincount(owner, minlength=n) * self.horizon
        err = np.abs(forecast - truth)
        denom = np.abs(forecast) + np.abs(truth)
        smape = np.where(denom > 0, 2 * err / np.where(denom > 0, denom, 1), 0.0)
        mase = np.bincount(owner, err.sum(axis=1), minlength=n) / counts / self.scales
        return mase, 100 * np.bincount(owner, smape.sum(axis=1), minlength=n) / counts

    def _pooled(self, forecast, truth, owner) -> dict:
        mase, smape = self._per_series(forecast, truth, owner)
        return {"mase": float(mase.mean()), "smape": float(smape.mean()),
                "mase_median": float(np.median(mase))}

    def _recent_unit(self, win, scale) -> np.ndarray:
        """(n,): how wild each series was just before its origin: the mean absolute step of
        its window's last `horizon` steps, at least a hundredth of `scale` (its usual step);
        what the conformal errors are measured in (normalized conformal: Lei et al. 2018)."""
        steps = np.abs(np.diff(win[:, -self.horizon - 1:], axis=1)).mean(axis=1)
        return np.maximum(steps, 0.01 * np.asarray(scale))

    def calibration_scores(self, predictor) -> np.ndarray:
        """(n_valid, H) absolute forecast errors on the validation origins, in units of their
        series' recent steps (_recent_unit)."""
        o = self.origins["valid"]
        err = np.abs(self._forecast(predictor, o) - self._truth(o))
        unit = self._recent_unit(self._windows(o), self.scales[self.series_of["valid"]])
        return err / unit[:, None]

    def _half(self, predictor, sigma, win, scale) -> np.ndarray:
        """(n, H) interval half-widths for (n, L + m) windows of series whose usual steps are
        `scale`: z sigma from the Gaussian head, or split conformal in units of each series'
        recent steps."""
        if sigma is not None:
            return NormalDist().inv_cdf(0.5 + self.coverage / 2) * sigma
        q = self._quantile(self.calibration_scores(predictor), self.coverage)   # (H,)
        return q[None, :] * self._recent_unit(win, scale)[:, None]

    def evaluate(self, predictor, split):
        o, owner = self.origins[split], self.series_of[split]
        (forecast, sigma), truth = self._forecast_and_sigma(predictor, o), self._truth(o)
        m = self._pooled(forecast, truth, owner)
        if split == "valid":
            m["loss"] = float(np.mean(((forecast - truth) / self._out_scale(self._windows(o))) ** 2))
        else:
            half = self._half(predictor, sigma, self._windows(o), self.scales[owner])
            m["coverage"] = float((np.abs(forecast - truth) <= half).mean())
            m["interval_width"] = float(np.mean(2 * half / self.scales[owner][:, None]))
        return m

    def baselines(self):
        o, owner = self.origins["test"], self.series_of["test"]
        truth = self._truth(o)
        out = {name: self._pooled(self._baseline(o, kind), truth, owner)
               for kind, name in BASELINES.items()}
        for kind in self.stat_kinds:
            r = self.rolled(kind)
            if isinstance(r, str):
                continue
            inside = (truth >= r.lo) & (truth <= r.hi)
            out[STAT_NAMES[kind]] = {**self._pooled(r.mean, truth, owner),
                                     "coverage": float(inside.mean()),
                                     "interval_width": float(np.mean((r.hi - r.lo) /
                                                                     self.scales[owner][:, None]))}
        return out

    def rolled(self, kind: str) -> Rolled | str:
        """A statistical baseline fitted on each series' values before its test part and
        rolled over its test origins, once a task (each series cached); a series it cannot
        fit takes the naive forecast with the naive interval's width, and the spec says how
        many did."""
        if kind not in self._rolled and not statbase.available():
            self._rolled[kind] = "not fitted (statsforecast is not installed: pip install 'lstmlab[tasks]')"
        if kind in self._rolled:
            return self._rolled[kind]
        o, owner, H = self.origins["test"], self.series_of["test"], self.horizon
        n = len(self.kept)
        progress = count_progress(f"forecast: {MODELS[kind]} on each of {n} series", "series")
        mean, lo, hi = (np.empty((len(o), H)) for _ in range(3))
        specs: collections.Counter = collections.Counter()
        failed, seconds = 0, 0.0
        for k in range(n):
            rows = np.flatnonzero(owner == k)
            a = int(self.starts[k])
            y = self.series.values[a:int(o[rows[-1]]) + H + 1]
            t = o[rows] - a
            try:
                r = roll(kind, y, t, H, self.season, self.coverage,
                         fit=(max(0, int(t[0]) + 1 - FIT_MAX), int(t[0]) + 1))
                mean[rows], lo[rows], hi[rows] = r.mean, r.lo, r.hi
                specs[r.spec] += 1
                seconds += r.seconds
            except NotFitted:
                failed += 1
                last = y[t][:, None] * np.ones(H)
                width = self.scales[k] * np.sqrt(np.arange(1, H + 1))
                z = NormalDist().inv_cdf(0.5 + self.coverage / 2)
                mean[rows], lo[rows], hi[rows] = last, last - z * width, last + z * width
            if progress is not None:
                progress(k + 1, n)
        if not specs:
            self._rolled[kind] = f"not fitted (on none of the {n} series)"
            return self._rolled[kind]
        spec, count = specs.most_common(1)[0]
        said = (f"per series; most often {spec} ({count} of {n})"
                + (f"; naive on {failed} it could not fit" if failed else ""))
        self._rolled[kind] = Rolled(MODELS[kind], mean, lo, hi, said, seconds)
        return self._rolled[kind]

    # --- figures ------------------------------------------------------------------------
    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import backtest_figure, forecast_figure

        folder = Path(folder)
        o, owner = self.origins["test"], self.series_of["test"]
        (forecast, sigma), truth = self._forecast_and_sigma(predictor, o), self._truth(o)
        half = self._half(predictor, sigma, self._windows(o), self.scales[owner])
        fitted = [k for k in self.stat_kinds if STAT_NAMES[k] in baselines]
        peers = {**{name: name.replace("_", " ") for name in BASELINES.values()},
                 **{STAT_NAMES[k]: MODELS[k] for k in fitted}}
        scored = {"LSTM": self._per_series(forecast, truth, owner),
                  **{peers[name]: self._per_series(self._baseline(o, kind), truth, owner)
                     for kind, name in BASELINES.items()},
                  **{MODELS[k]: self._per_series(r.mean, truth, owner)
                     for k in fitted if isinstance(r := self.rolled(k), Rolled)}}
        self._write_per_series(folder / "per_series.csv", scored)
        # three series, the last test origin of each: the shortest, the middle, the longest
        lengths = self.lengths[self.kept]
        order = np.argsort(lengths, kind="stable")
        picks = order[np.linspace(0, len(order) - 1, 3).astype(int)]
        arima = self.rolled("arima") if "arima" in fitted else None
        series = []
        for k in picks:
            row = int(np.flatnonzero(owner == k)[-1])
            t, a = int(o[row]), int(self.starts[k])
            history = self.series.values[max(a, t + 1 - min(self.context, 4 * self.horizon)):t + 1]
            base = (arima.mean[row] if isinstance(arima, Rolled)
                    else self._baseline(o[row:row + 1], self.base)[0])
            series.append({"history": history, "truth": truth[row], "free_run": forecast[row],
                           "lower": forecast[row] - half[row], "upper": forecast[row] + half[row],
                           "baseline": base,
                           "label": f"series {self.ids[self.kept[k]]} ({lengths[k]} values)"})
        pct = int(round(100 * self.coverage))
        metrics = {"LSTM MASE (mean over series)": test["mase"],
                   **{label: baselines[name]["mase"] for name, label in peers.items()},
                   f"{pct}% {self.intervals} interval coverage": test["coverage"]}
        groups = np.array_split(order, min(GROUPS, len(order)))
        rows = [{"fold": i + 1, **{name: float(np.mean(s[0][g])) for name, s in scored.items()}}
                for i, g in enumerate(groups)]
        labels = [f"{lengths[g].min()}-{lengths[g].max()} values ({len(g)} series)" for g in groups]
        s = self.series
        return [backtest_figure(folder / "backtest.png", rows, labels=labels,
                                title=f"MASE by series length: {s.name}, {len(self.kept)} series, "
                                      f"{self.horizon} {s.step}s ahead"),
                forecast_figure(folder / "forecast.png", series=series,
                                title=f"forecast: {s.name}, {self.horizon} {s.step}s ahead",
                                metrics=metrics, forecast_label=f"LSTM forecast ({self.strategy})",
                                baseline_label=("AutoARIMA (per series)" if isinstance(arima, Rolled)
                                                else self.base),
                                xlabel=f"{s.step}s from the forecast origin",
                                ylabel=s.unit or "value")]

    def _write_per_series(self, path: Path, scored: dict) -> None:
        from ..io.atomic import write_text

        names = list(scored)
        out = io.StringIO()
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(["series", "values"] + [f"{n} {w}" for n in names for w in ("MASE", "sMAPE")])
        for k, i in enumerate(self.kept):
            rows.writerow([self.ids[i], self.lengths[i]]
                          + [f"{scored[n][j][k]:.6g}" for n in names for j in (0, 1)])
        write_text(path, out.getvalue())

    # --- the user's series --------------------------------------------------------------
    def _padded(self, y: np.ndarray) -> np.ndarray:
        """(context + season,): a series' last values, padded in front with its first."""
        need = self.context + self.season
        return np.concatenate([np.full(max(0, need - len(y)), y[0]), y[-need:]])

    def encode_input(self, value):
        values = series_input(value, self.read_input)
        win = self._padded(values)[None, :]
        return series_inputs(win[:, self.season:].T, self._window_features(win))

    def predict_file(self, predictor, path):
        """The next `horizon` values of every series in the file: a CSV with the id column,
        or one series (a bare column of numbers, or a CSV with the value column)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"input file {path} does not exist")
        cells, header = _first_row(path)
        column = self.opts["column"] or "value"
        if header and self.opts["id"] and self.opts["id"] in cells:
            ids, values = read_csv_panel(path, self.opts["id"], column, missing=self.opts["missing"])
        else:
            ids, values = ["value"], [self.read_input(path)]
        short = [i for i, y in zip(ids, values) if len(y) < MIN_SEEN]
        if short:
            raise ValueError(f"{path}: series {short[0]!r} has fewer than {MIN_SEEN} values; "
                             f"give each series at least {MIN_SEEN}")
        win = np.stack([self._padded(y) for y in values])        # (n, L + m)
        ends = np.arange(1, len(win) + 1) * win.shape[1] - 1       # each window's origin
        forecast, sigma = self._forecast_and_sigma(predictor, ends, win.reshape(-1))
        m = self.season
        scale = np.array([float(np.mean(np.abs(y[lag:] - y[:-lag]))) or 1.0
                          for y in values for lag in [m if len(y) > m else 1]])
        q = self._half(predictor, sigma, win, scale)
        result = {i: {"forecast": f.tolist(), "lower": (f - h).tolist(), "upper": (f + h).tolist()}
                  for i, f, h in zip(ids, forecast, q)}
        lines = [f"{i}: " + ", ".join(f"{v:.4g}" for v in r["forecast"]) for i, r in result.items()]
        return {"input": str(path), "column": column, "horizon": self.horizon,
                "coverage": self.coverage, "series": result, "lines": lines}
