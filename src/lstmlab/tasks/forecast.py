"""`forecast`: multi-step forecasting of a real series, scored against naive baselines and
the statistical forecasters a forecaster would pick instead (AutoARIMA, AutoETS, MSTL).

The series (built in, or a column of the user's CSV) is split in time: the first 70% trains,
the next 10% validates (and calibrates the prediction intervals), the last 20% tests. Every
step of the test part is a forecast origin (a rolling origin): the model sees the `context`
values up to it and forecasts the next `horizon` values, in one of two strategies:

  direct      one network output per horizon step, all in one shot (the default)
  recursive   one output, the next step; the forecast is fed back as the newest input and the
              network runs again, `horizon` times (autoregressive: errors can compound, but
              one model serves every horizon)

The backtest reports the metrics on all test origins and, per fold (the test part cut into
`folds` consecutive blocks), the MASE of the model and of every baseline: a model that wins
on average but loses in one regime shows it there.

The model learns what the baseline misses: its targets are the future's differences from a
baseline forecast, scaled; by default the one with the smallest error on the training part:

  seasonal       the value one season ago (the longest season's, where several are given)
  last           the last value
  seasonal_diff  the value one season ago plus the last seasonal difference: the forecast of
                 ARIMA(0,1,0)(0,1,0)[m]
  seasonal_mean  a seasonal profile (the mean of each phase over the context's seasons) and
                 a level (the last season's mean against theirs), as exponential smoothing
                 keeps them: with it the model is a hybrid in the spirit of Smyl's ES-RNN,
                 the LSTM forecasting what the profile and the level miss

or, chosen with `-o base=arima|ets|mstl`, a statistical forecaster's (tasks.statbase), fitted
on the training part and run forward to every origin: the LSTM then learns what AutoARIMA,
AutoETS or MSTL misses (in sample on the training part, whose future the fit has seen; out
of sample on the validation part that calibrates the intervals and on the test part). Such
a model forecasts only its own series (direct strategy; no `predict --input`, no stream).

The season m (`season`) is the series' own (a day of hours), given, or found in the data
(`auto`, a CSV's default): the lag where the training part's autocorrelation peaks
(`detect_season`). Several can be given (`-o season=48,336`: a day and a week of half
hours): the shortest is the main one (the MASE scale's, AutoARIMA's and AutoETS's, and
seasonal_diff's and seasonal_mean's), the longest the seasonal naive forecast's, MSTL takes
them all, and the network reads a seasonal difference for each, its window reaching the
longest back. The report says which and why; for a built-in series it also names the
data's own peak where it differs (sunspots' months have no season of 12, but a solar cycle
of about 11 years).

The calendar (`-o calendar=true`): each step's phase in the day, the week and the year, as
a sine and a cosine, for the cycles its steps are short enough (at most half the cycle) and
its training part long enough (two cycles) to show. The network reads them beside the values
and learns what its window cannot see coming (tomorrow is a Saturday). A built-in series
knows its times; a CSV names its time column (`-o time=COLUMN`), and so must the file that
`predict --input` reads. Covariates (`-o covariates=A,B`, or `--covariates`): other columns
of the CSV, read beside the values up to each origin (in units of their training mean and
deviation), never their future; `predict --input` needs them too. Direct strategy only.

The network's units (`scale`) are the training part's (global), or each window's mean
absolute step (window: the inputs measured from the window's last value, the targets in the
same units; what was learnt at one level and amplitude carries over to another, and the
forecast of a y + b is a f + b; such a model cannot read a stream one value at a time).

Prediction intervals come in two kinds (`intervals`):

  conformal   (the default; Vovk et al. 2005) per horizon step, a quantile of recent absolute
              errors, first the validation part's, then, along the test part, those whose
              truth is already known at each origin, with the adaptive level of Gibbs &
              Candes (2021), so that coverage holds when the series changes regime
  gaussian    a Gaussian head: the network outputs a mean and a log-variance per horizon
              step and trains on the Gaussian negative log-likelihood (Nix & Weigend 1994);
              the interval is mean +- z sigma. It needs no calibration data but trusts the
              variance the network learnt on the training part (direct strategy only)

Metrics: MAE, RMSE, sMAPE (%), MASE (Hyndman & Koehler 2006: MAE over the in-sample MAE of
the seasonal naive forecast), the intervals' empirical coverage and mean width, and
mase_fold1 .. mase_foldK. Baselines on the same origins: the four bases above (naive is
`last`) and, unless `-o stat_baselines=none`, statsforecast's AutoARIMA, AutoETS and (with
a season) MSTL, fitted on the FIT_MAX values before the test part and rolled over its origins
with their own Gaussian intervals (tasks.statbase; cached, since AutoARIMA's search can take
minutes). The report names the models their searches chose.

Missing values (empty cells, NaN) in a CSV stop with an error that names the line, unless
`-o missing=interpolate` fills interior gaps linearly (leading and trailing gaps are dropped).
A run trained on a CSV keeps the column it read (RUN/data.safetensors) beside the scaling
(RUN/preprocessing.json), so it evaluates and forecasts after the CSV is moved.

Larger than memory: `lstmlab prepare forecast --csv PATH -o column=NAME --out DIR` reads the
CSV once as a stream into DIR/values.f64 (the column as float64) with DIR/prepared.json (its
length and the training part's mean, deviation and MASE scale for the season given with
`-o season`); `-o prepared=DIR` then trains from it, reading each batch's windows from the
file (ArrayFile). The valid and test parts are scored on their `valid_origins` and
`test_origins` origins nearest to where they meet (0: every origin; for a prepared series,
PREPARED_ORIGINS each), and where the training part has more than SAMPLE_ORIGINS origins, the
base and the targets' scale are chosen on that many of them, evenly spaced. A run keeps only
the stretch of the series its scored origins read.

Many series: a CSV in long format with `-o id=COLUMN` naming each row's series, or a
built-in panel (`-o data=m1-yearly`), trains one global model over all of them, scored per
series and pooled (tasks.panel).

`predict --input FILE` reads the recent past: a bare column of numbers, one a line, or a
CSV with a header (the training column, or its only column); at least context + season
values, of which the last context + season are used.
"""

from __future__ import annotations

import bisect
import collections
import json
import math
import os
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

from ..config import ModelConfig
from . import statbase
from .base import Batch, Predictor, Task, TaskDefaults, check_int
from .datasets import (
    PANELS,
    ArrayFile,
    Series,
    builtin_series,
    csv_column_chunks,
    read_csv_column,
    read_csv_times,
    read_series,
    series_input,
)
from .kit import count_progress, passes_progress, read_prepared, series_inputs
from .statbase import FIT_MAX, MODELS, NotFitted, Rolled, roll

SPLITS = (0.7, 0.8)           # train up to 70%, valid up to 80%, test the rest
CHUNK = 512                   # origins per inference call
PREPARED = "lstmlab-prepared-forecast"   # prepared.json's format name
VALUES = "values.f64"         # a prepared series' values: float64, little-endian
STATS_CHUNK = 1 << 20         # values read at a time for a prepared series' statistics
# what a run keeps of prepared.json: what rebuilds the task without the folder
PREPARED_KEEP = ("column", "source", "values", "season", "mu", "sd", "mase_scale")
PREPARED_ORIGINS = 10_000     # valid and test origins scored by default for a prepared series
SAMPLE_ORIGINS = 100_000      # training origins at most that choose the base and the scale
SEASON_MAX_LAG = 1000         # the longest season detect_season looks for
SEASON_VALUES = 100_000       # the most recent training values it reads
SEASON_MIN_ACF = 0.3          # the least autocorrelation it calls a season
OWN = "the series' own"       # where a built-in series' season comes from by default
CYCLES = {"day": 86_400.0, "week": 7 * 86_400.0, "year": 365.2425 * 86_400.0}   # in seconds
STAT_NAMES = {"arima": "auto_arima", "ets": "auto_ets", "mstl": "mstl"}   # their baseline names
# what the network corrects (its targets are the differences from it), and the naive baselines
BASES = {"seasonal": "the value a season before",
         "last": "the last value",
         "seasonal_diff": "the value a season before plus the last seasonal difference",
         "seasonal_mean": "the mean of the same phase over the context's seasons, plus the "
                          "last season's level against theirs"}
# a statistical forecaster as the base (-o base=arima, ets or mstl): its forecast at every
# origin, fitted on the training part (so in sample at the training origins only)
STAT_BASES = {k: f"{name}'s forecast, fitted on the training part" for k, name in MODELS.items()}
BASELINES = {"last": "naive", "seasonal": "seasonal_naive", "seasonal_diff": "seasonal_diff",
             "seasonal_mean": "seasonal_mean"}


class Forecast(Task):
    name = "forecast"
    signals = ("value", "above_mean", "rising")
    summary = ("multi-step forecasting of a real series, or of many with one model (built in "
               "or your CSV), against naive and statistical baselines (AutoARIMA, AutoETS, MSTL)")
    loss = "mse"
    metric = "mase"
    defaults = TaskDefaults(engine="torch", model={"hidden_size": 64},
                            train={"steps": 1500, "batch_size": 64, "lr": 3e-3, "eval_every": 100})
    options = {"data": ("seattle-temps", "built-in series: seattle-temps, sunspots, co2, taylor, "
                                          "or many: m1-yearly (the M1 competition's 181)"),
               "csv": ("", "your own CSV file (with -o column=NAME) instead of a built-in series"),
               "column": ("", "the CSV column to forecast"),
               "id": ("", "the CSV column that names each row's series: many series (long "
                          "format), one global model, scored per series and pooled"),
               "horizon": (0, "steps to forecast (0: the series' usual: 24 hours, 12 months)"),
               "season": ("", "seasonal period in steps (1: none; several: 48,336), or auto: "
                              "the lag where the training part's autocorrelation peaks "
                              "(default: the series' own; for a CSV, auto)"),
               "context": (0, "steps the model sees before each origin (0: a week / 10 years)"),
               "base": ("", "what the model corrects: seasonal, last, seasonal_diff, "
                            "seasonal_mean, or a statistical forecaster's forecast: arima, "
                            "ets, mstl (default: the naive one with the smallest error on "
                            "the training part)"),
               "coverage": (0.9, "nominal coverage of the prediction intervals"),
               "scale": ("", "the network's units: global (the training part's; the default "
                             "for one series) or window (each window's mean absolute step, so "
                             "that what it learnt carries over when the series calms down or "
                             "grows wild; the default and only one for many series)"),
               "calendar": (False, "read the calendar too: each step's phase in the day, the "
                                   "week and the year (those its steps are short enough and "
                                   "its training part long enough to show), as a sine and a "
                                   "cosine; needs the times (a built-in series', or -o time)"),
               "time": ("", "the CSV column of each row's time (ISO 8601), for -o calendar"),
               "covariates": ("", "CSV columns the network reads beside the series (comma-"
                                  "separated): their values up to each origin, in units of "
                                  "the training part's mean and deviation; never their future"),
               "strategy": ("direct", "direct (all horizon steps at once) or recursive "
                                      "(one step, fed back: autoregressive)"),
               "intervals": ("conformal", "conformal (adaptive, from recent errors) or "
                                          "gaussian (a mean and variance head)"),
               "folds": (5, "backtest folds: the test origins cut into this many blocks"),
               "missing": ("error", "CSV gaps: error (stop and say where) or interpolate"),
               "prepared": ("", "a folder `lstmlab prepare forecast --csv` wrote: trains from "
                                "its values file, for a series larger than memory"),
               "valid_origins": (0, "validation origins scored, the last ones of the part (0: "
                                    f"all; for a prepared series, {PREPARED_ORIGINS:,})"),
               "test_origins": (0, "test origins scored, the first ones of the part (0: all; "
                                   f"for a prepared series, {PREPARED_ORIGINS:,})"),
               "stat_baselines": ("arima,ets,mstl", "statistical baselines (statsforecast) "
                                  "rolled over the test origins, cached after the first run: "
                                  "any of arima, ets, mstl (with a season), or none")}
    sources = ("csv", "prepared")

    def __new__(cls, seed=0, **options):
        """Many series (-o id, or a built-in panel such as m1-yearly) are a Panel's."""
        data = options.get("data")
        if cls is Forecast and (options.get("id") or isinstance(data, str) and data in PANELS):
            from .panel import Panel
            return super().__new__(Panel)
        return super().__new__(cls)

    def __init__(self, seed=0, **options):
        super().__init__(seed, **options)
        o = self.opts
        if o["missing"] not in ("error", "interpolate"):
            raise ValueError(f"missing must be 'error' or 'interpolate', got {o['missing']!r}")
        if o["csv"] and o["prepared"]:
            raise ValueError("-o csv and -o prepared name two series; give one")
        self.offset, info = 0, None          # the series' position of values[0]; prepared.json
        self.prepared: dict | None = None    # what a run keeps of prepared.json (PREPARED_KEEP)
        stored = self.stored.arrays["series"] if self.stored is not None else None
        if o["prepared"]:
            info = (self.stored.state["prepared"] if self.stored is not None
                    else load_prepared(o["prepared"]))
            n = info["values"]
            values = stored if stored is not None else ArrayFile(
                Path(o["prepared"]) / VALUES, "<f8", 0, n)
            if self.stored is not None:
                self.offset = self.stored.state["offset"]
            self.prepared = {k: info[k] for k in (*PREPARED_KEEP, "season_from") if k in info}
            self.series = Series(info["column"], values, "step", "", info["season"], 12, info["source"])
        elif o["csv"]:
            if not o["column"]:
                raise ValueError("-o csv=PATH needs -o column=NAME, the column to forecast")
            values = (stored if stored is not None
                      else read_csv_column(o["csv"], o["column"], missing=o["missing"]))
            self.series = Series(Path(o["csv"]).name, values, "step", "", 0, 12, str(o["csv"]))
        else:
            self.series = builtin_series(o["data"])
        s = self.series
        N = info["values"] if info is not None else len(s.values)
        self.n_train, self.n_valid = int(SPLITS[0] * N), int(SPLITS[1] * N)
        self.horizon = int(o["horizon"]) or s.horizon
        seasons, self.season_from = self._season(o["season"])
        self._set_seasons(seasons)
        default_context = {"hour": 168, "month": 120}.get(s.step, 4 * max(self.horizon, self.season))
        self.context = int(o["context"]) or default_context
        self._read_model_options()
        if self.base in STAT_BASES:
            self._check_stat_base()
        if o["time"] and not o["csv"]:
            raise ValueError("-o time names the time column of -o csv; a built-in series knows "
                             "its times")
        self.calendar = bool(o["calendar"])
        self.cycles: list[str] = []
        self.times: np.ndarray | None = None     # each value's time, for the calendar
        self.covariates = [c.strip() for c in str(o["covariates"]).split(",") if c.strip()]
        self.cov: np.ndarray | None = None       # (N, C) the covariates' values, as read
        self.cov_mu = self.cov_sd = np.empty(0)  # and their training mean and deviation
        self.extra: np.ndarray | None = None     # (N, E) the calendar's and covariates' features
        if self.calendar or self.covariates:
            self._read_extra()
        self._tables: dict[str, np.ndarray] = {}     # the statistical bases, at every origin
        self.folds = int(o["folds"])
        if self.folds < 1:
            raise ValueError(f"folds must be at least 1, got {self.folds}")
        for name, v in (("horizon", self.horizon), ("season", self.season), ("context", self.context)):
            if v < 1:
                raise ValueError(f"{name} must be at least 1, got {v}")
        first = self.context + self.reach                        # features need a season of past
        if self.n_train - self.horizon - first < 10 or N - self.n_valid < self.horizon + 1:
            raise ValueError(f"the series has {N} values: too short for context {self.context}, "
                             f"season {self.reach} and horizon {self.horizon}")
        m = self.season
        if info is not None:                                     # measured when it was prepared
            if m != info["season"]:
                raise ValueError(f"the series in {o['prepared']} was prepared for season "
                                 f"{info['season']}, not {m}: prepare it again with -o season={m}")
            self.mu, self.sd, self.mase_scale = info["mu"], info["sd"], info["mase_scale"]
        else:
            train = s.values[: self.n_train]
            self.mu, self.sd = float(train.mean()), float(train.std()) or 1.0
            self.mase_scale = float(np.mean(np.abs(train[m:] - train[:-m]))) or 1.0
        # origins t: the model has seen y[..t] and forecasts y[t+1 .. t+H]; the training
        # origins are first .. n_train - H - 1, drawn from (never held: a prepared series'
        # would not fit in memory)
        H = self.horizon
        self.train_origins = (first, self.n_train - H)
        scored = {k: check_int(f"{k}_origins", o[f"{k}_origins"], 0) or
                  (PREPARED_ORIGINS if info is not None else 0) for k in ("valid", "test")}
        valid = (max(first, self.n_train - 1), self.n_valid - H)     # all, as (lo, hi)
        test = (max(first, self.n_valid - 1), N - H)
        if scored["valid"]:                                      # the last ones: next to test
            valid = (max(valid[0], valid[1] - scored["valid"]), valid[1])
        if scored["test"]:                                       # the first ones
            test = (test[0], min(test[1], test[0] + scored["test"]))
        self.origins = {"valid": np.arange(*valid), "test": np.arange(*test)}
        if self.stored is not None:                              # what training chose
            st = self.stored.state
            self.base, self.r_scale, self.s_floor = st["base"], st["r_scale"], st.get("s_floor", 0.0)
        else:
            self._choose_base_and_scale()
        if len(self.origins["test"]) < self.folds:
            raise ValueError(f"the test part has {len(self.origins['test'])} forecast origins, "
                             f"fewer than {self.folds} folds; lower -o folds")
        # a stream step reads one value; its seasonal difference needs the season before it
        self.stream_width = 1
        self.stream_window = max(self.reach + 1, self.mean_seasons * self.season
                                 if self.base == "seasonal_mean" else 0)
        self.stat_kinds = self._stat_kinds(o["stat_baselines"])
        self._rolled: dict[str, Rolled | str] = {}

    def _set_seasons(self, seasons: list[int]) -> None:
        """The seasons, shortest first: the shortest is the main one (the MASE scale's, the
        bases' and the statistical models'), the longest the seasonal naive forecast's; each
        longer than 1 gives the network a seasonal difference, and the window reaches back
        the longest."""
        self.seasons = seasons
        self.season, self.reach = seasons[0], seasons[-1]

    def _read_model_options(self) -> None:
        """The options that shape the model (given the context and the season): what it
        corrects, its units, strategy and intervals."""
        o = self.opts
        self.mean_seasons = max(1, self.context // max(self.season, 1))   # seasonal_mean's K
        self.base = o["base"]
        self.base_given = bool(self.base)                        # else chosen by training error
        self.coverage = float(o["coverage"])
        if self.base not in ("", *BASES, *STAT_BASES):
            raise ValueError(f"base must be one of {', '.join([*BASES, *STAT_BASES])}, "
                             f"got {self.base!r}")
        if not 0.5 <= self.coverage < 1.0:
            raise ValueError(f"coverage must lie in [0.5, 1), got {self.coverage}")
        self.scale = o["scale"] or "global"
        if self.scale not in ("global", "window"):
            raise ValueError(f"scale must be 'global' or 'window', got {self.scale!r}")
        if self.scale == "window" and self.context < 2:
            raise ValueError("-o scale=window measures each window by its steps: it needs a "
                             "context of at least 2")
        self.strategy = o["strategy"]
        if self.strategy not in ("direct", "recursive"):
            raise ValueError(f"strategy must be 'direct' or 'recursive', got {self.strategy!r}")
        self.intervals = o["intervals"]
        if self.intervals not in ("conformal", "gaussian"):
            raise ValueError(f"intervals must be 'conformal' or 'gaussian', got {self.intervals!r}")
        if self.intervals == "gaussian" and self.strategy != "direct":
            raise ValueError("-o intervals=gaussian needs -o strategy=direct: a recursive "
                             "forecast has no variance for the steps it feeds back")
        self.loss = "gaussian" if self.intervals == "gaussian" else "mse"

    @classmethod
    def options_of_state(cls, state: dict) -> dict:
        """The base and the season the run's training chose (runs from before seasonal_diff
        existed chose between seasonal and last, and must keep what they chose; a season
        found in the data is kept as it was found; a built-in series' own is its own again)."""
        own = state.get("season_from") == OWN
        seasons = state.get("seasons", [state["season"]])
        season = state["season"] if len(seasons) == 1 else ",".join(map(str, seasons))
        return {**({} if own else {"season": season}),
                **({"base": state["base"]} if state.get("base") in (*BASES, *STAT_BASES) else {})}

    def _season(self, given) -> tuple[list[int], str]:
        """The seasons (-o season: a number, several separated by commas, auto or empty) and
        where they came from; a run's, as it trained."""
        if self.stored is not None:
            st = self.stored.state
            return st.get("seasons", [st["season"]]), st.get("season_from", "given")
        text = str(given).strip().lower()
        own = self.series.season
        if text in ("", "0") and own:                            # a built-in's, a prepared one's
            if self.prepared is not None:
                return [own], self.prepared.get("season_from", "given when it was prepared")
            return [own], OWN
        if text in ("", "0", "auto"):
            if self.prepared is not None:
                raise ValueError("a prepared series keeps the season it was prepared with; "
                                 "prepare it again with -o season=auto")
            m, said = season_found(self._recent())
            return [m], said
        return parse_seasons(given), "given"

    def _recent(self) -> np.ndarray:
        """The training part's last SEASON_VALUES values, where detect_season looks."""
        return self._values(max(0, self.n_train - SEASON_VALUES), self.n_train)

    def chosen(self) -> dict[str, str]:
        said = self.season_from
        if said == OWN and self.prepared is None:                # and where the data peaks
            found, r = detect_season(self._recent())
            if found not in (1, self.season):
                said += f"; the data's autocorrelation peaks at lag {found} ({r:.2f}): -o season=auto uses it"
        return {"season": f"{', '.join(map(str, self.seasons))} ({said})",
                "base": f"{self.base} ({self._base_from()})",
                **({"calendar": ", ".join(self.cycles)} if self.calendar else {}),
                **({"covariates": ", ".join(self.covariates)} if self.covariates else {})}

    def _base_from(self) -> str:
        return "given" if self.base_given else "smallest training error"

    def recall(self, state: dict) -> None:
        """A built-in run's season and base, pinned by options_of_state, are labelled as its
        training chose them (found in the data, the smallest training error), not "given"."""
        self.season_from = state.get("season_from", self.season_from)
        self.base_given = bool(state["options"].get("base"))

    def _check_stat_base(self) -> None:
        """What a statistical base needs: the series in memory, statsforecast, the direct
        strategy (a recursive forecast would need the model at every fed-back step) and,
        for MSTL, a season."""
        name = f"-o base={self.base}"
        if self.prepared is not None:
            raise ValueError(f"{name} fits {MODELS[self.base]} to the series in memory; a "
                             "prepared series takes a naive base")
        if not statbase.available():
            raise ValueError(f"{name} needs statsforecast: pip install 'lstmlab[tasks]'")
        if self.strategy != "direct":
            raise ValueError(f"{name} needs -o strategy=direct: a recursive forecast would "
                             f"need {MODELS[self.base]} at every step it feeds back")
        if self.base == "mstl" and self.reach < 2:
            raise ValueError(f"{name} needs a season of at least 2 (-o season=M)")

    def _read_extra(self) -> None:
        """What the network reads beside the series: the calendar (the series' times, from a
        built-in's, the CSV's -o time column or a run's, the cycles they can show and each
        value's phase in them) and the covariates (the CSV's columns, or a run's), as
        self.extra."""
        what = "-o calendar" if self.calendar else "-o covariates"
        if self.prepared is not None:
            raise ValueError(f"{what} reads more of the CSV than a prepared series keeps")
        if self.strategy != "direct":
            raise ValueError(f"{what} needs -o strategy=direct")
        parts = []
        if self.calendar:
            self._read_times()
            parts.append(calendar_features(self.times, self.cycles))
        if self.covariates:
            self._read_covariates()
            parts.append(self._scaled_covariates(self.cov))
        self.extra = np.concatenate(parts, axis=1)

    def _read_covariates(self) -> None:
        o, n = self.opts, len(self.series.values)
        if self.stored is not None and "covariates" in self.stored.arrays:
            self.cov = self.stored.arrays["covariates"]
        elif not o["csv"]:
            raise ValueError("-o covariates names columns of -o csv")
        else:
            cols = [read_csv_column(o["csv"], c, missing=o["missing"]) for c in self.covariates]
            bad = next((c for c, v in zip(self.covariates, cols) if len(v) != n), None)
            if bad is not None:
                raise ValueError(f"{o['csv']}: column {bad!r} has values on other rows than "
                                 f"{o['column']!r}; fill the gaps of both alike")
            self.cov = np.stack(cols, axis=1)
        train = self.cov[:self.n_train]
        self.cov_mu, self.cov_sd = train.mean(axis=0), train.std(axis=0)
        self.cov_sd[self.cov_sd == 0] = 1.0

    def _scaled_covariates(self, cov) -> np.ndarray:
        return (cov - self.cov_mu) / self.cov_sd

    def _reads(self) -> str:
        """What the network reads beside the series, in words."""
        return " and ".join((["the calendar"] if self.calendar else [])
                            + ([f"the covariates {', '.join(self.covariates)}"] if self.covariates else []))

    def _read_times(self) -> None:
        o, n = self.opts, len(self.series.values)
        if self.stored is not None and "times" in self.stored.arrays:
            self.times = self.stored.arrays["times"].astype("datetime64[s]")
        elif o["csv"]:
            if not o["time"]:
                raise ValueError("-o calendar reads each value's time: name the CSV's time "
                                 "column with -o time=COLUMN")
            self.times = read_csv_times(o["csv"], o["time"])
            if len(self.times) != n:
                raise ValueError(f"{o['csv']} has {len(self.times)} times for {n} values: drop "
                                 "the rows at either end that have no value")
        elif self.series.times is not None:
            self.times = self.series.times
        else:
            raise ValueError(f"the series {self.series.name} has no times, so no calendar")
        self.cycles = calendar_cycles(self.times[:self.n_train])
        if not self.cycles:
            raise ValueError("the training part spans no calendar cycle (a day, a week, a year) "
                             "twice at steps short enough to show it: train without -o calendar")

    def _stat_kinds(self, given: str) -> list[str]:
        """The statistical baselines asked for, in MODELS' order (MSTL only with a season)."""
        kinds = [k.strip() for k in str(given).split(",") if k.strip()]
        if kinds == ["none"]:
            return []
        bad = [k for k in kinds if k not in MODELS]
        if bad or not kinds:
            raise ValueError(f"stat_baselines takes any of {', '.join(MODELS)} (comma-separated) "
                             f"or none; got {given!r}")
        return [k for k in MODELS if k in kinds and (k != "mstl" or self.reach > 1)]

    def _choose_base_and_scale(self) -> None:
        """The base with the smaller error on the training origins (unless the user chose one)
        and the scale of the network's targets, measured on the training origins (on
        SAMPLE_ORIGINS of them, evenly spaced, where there are more)."""
        t = self._training_sample()
        truth = self._truth(t)
        if not self.base:
            err = {b: np.mean(np.abs(self._baseline(t, b) - truth)) for b in BASES}
            self.base = min(err, key=lambda b: err[b])
        r = (truth - self._base(t))[:, :self.steps_out]
        self.s_floor = 0.0
        if self.scale == "window":           # a flat window's unit: a hundredth of the usual
            win = self._windows(t)
            self.s_floor = 0.01 * float(np.median(self._window_unit(win))) or 1e-12
            r = r / self._window_unit(win)[:, None]
        self.r_scale = float(r.std()) or 1.0

    def _training_sample(self) -> np.ndarray:
        """The training origins that choose the base and the scale: all, or SAMPLE_ORIGINS
        of them, evenly spaced."""
        lo, hi = self.train_origins
        return (np.arange(lo, hi) if hi - lo <= SAMPLE_ORIGINS
                else np.linspace(lo, hi - 1, SAMPLE_ORIGINS).round().astype(np.int64))

    def _draw(self, rng, n: int) -> np.ndarray:
        """n training origins drawn at random (with replacement)."""
        lo, hi = self.train_origins
        return lo + rng.integers(0, hi - lo, size=n)

    def preprocessing(self) -> dict:
        m, n = self.season, self.steps_out
        base = {**BASES, **STAT_BASES}[self.base]
        output = (f"{n} value(s): for h = 1..{n} steps ahead, (y[t + h] - base) / r_scale, the "
                  f"base being {base}" + (f"; then {n} log-variances of those" if
                                          self.intervals == "gaussian" else ""))
        return {"series": self.series.name, "column": self.opts["column"] or None,
                "horizon": self.horizon, "season": m, "seasons": self.seasons,
                "season_from": self.season_from,
                "context": self.context,
                "strategy": self.strategy, "intervals": self.intervals, "coverage": self.coverage,
                "base": self.base, "mu": self.mu, "sd": self.sd, "r_scale": self.r_scale,
                "scale": self.scale, "s_floor": self.s_floor, "mase_scale": self.mase_scale,
                **({"prepared": self.prepared, "offset": self._kept()[0]}
                   if self.prepared is not None else {}),
                "input": {"steps": self.context, "features": (
                    ["(y[t] - mu) / sd"] + [f"(y[t] - y[t - {k}]) / sd" for k in self.seasons if k > 1]
                    if self.scale == "global" else
                    ["(y[t] - y[origin]) / s"] + [f"(y[t] - y[t - {k}]) / s" for k in self.seasons if k > 1]
                    + ["s: the window's mean |y[t] - y[t - 1]| (at least s_floor); the "
                       "output is in units of r_scale * s"])
                    + [f"{f}(2 pi (time of y[t] in the {c}))" for c in self.cycles for f in ("sin", "cos")]
                    + [f"({c}[t] - {mu:.6g}) / {sd:.6g}" for c, mu, sd in
                       zip(self.covariates, self.cov_mu, self.cov_sd)]},
                "output": output}

    def stored_arrays(self) -> dict[str, np.ndarray]:
        """The series, or for a prepared one the stretch its scored origins read."""
        if not self.opts["prepared"]:
            return {"series": self.series.values,
                    **({"times": self.times.astype(np.int64)}
                       if self.times is not None and self.opts["csv"] else {}),
                    **({"covariates": self.cov} if self.cov is not None else {})}
        lo, hi = self._kept()
        return {"series": self._values(lo, hi)}

    def _kept(self) -> tuple[int, int]:
        """(lo, hi): the stretch of the series that scoring the valid and test origins reads
        (the windows before the first, the truth after the last), and the statistical
        baselines' fit."""
        lo = int(self.origins["valid"][0]) + 1 - self.context - self.reach
        return (min(lo, self._fit_start()) if self.stat_kinds else lo,
                int(self.origins["test"][-1]) + self.horizon + 1)

    def _fit_start(self) -> int:
        """Where the statistical baselines' fit starts: FIT_MAX values before the test part."""
        return max(0, int(self.origins["test"][0]) + 1 - FIT_MAX)

    def _values(self, lo: int, hi: int) -> np.ndarray:
        """The series' values lo:hi (positions in the whole series)."""
        y = self.series.values
        if isinstance(y, ArrayFile):
            return y.read(lo, hi)
        return y[lo - self.offset:hi - self.offset]

    @classmethod
    def prepare_data(cls, folder=None, quiet: bool = False, csv=None, column=None, season="auto",
                     missing="error") -> dict:
        """`lstmlab prepare forecast --csv FILE -o column=NAME --out FOLDER`: see `prepare`."""
        if not csv or not folder or not column:
            raise ValueError("lstmlab prepare forecast needs --csv FILE (the series), -o "
                             "column=NAME (its column) and --out FOLDER (where its values go)")
        started = time.perf_counter()
        info = prepare(csv, column, folder, season=season, missing=missing,
                       progress=None if quiet else passes_progress("forecast", {"statistics": "value"}))
        return {"prepared": str(folder), "values": info["values"], "season": info["season"],
                "season_from": info["season_from"], "seconds": round(time.perf_counter() - started, 3),
                "train": f"lstmlab train forecast -o prepared={folder}"}

    # --- data ---------------------------------------------------------------------------
    def _span(self, origins, lo: int, hi: int, y=None) -> np.ndarray:
        """(n, hi - lo): the values t + lo .. t + hi - 1 around each origin t, of the series
        (read from its file where it is prepared) or of another series `y`."""
        if y is None:
            y, origins = self.series.values, np.asarray(origins) - self.offset
        if isinstance(y, ArrayFile):
            return y.windows(origins + lo, hi - lo)
        return y[origins[:, None] + np.arange(lo, hi)[None, :]]

    def _baseline(self, origins, kind, y=None):
        """(n, H) forecasts of a baseline (a key of BASES or STAT_BASES)."""
        if kind in STAT_BASES:
            if y is not None:
                raise ValueError(f"this model corrects {MODELS[kind]}'s forecasts of the series "
                                 "it was fitted on, and forecasts no other values (predict "
                                 "--input, a stream): for those, train it with a naive base "
                                 "(-o base=seasonal_diff, say)")
            return self._stat_base(kind)[np.asarray(origins) - self.train_origins[0]]
        m = {"last": 1, "seasonal": self.reach, "seasonal_diff": self.season + 1,
             "seasonal_mean": self.mean_seasons * self.season}[kind]
        return self._base_forecast(self._span(origins, 1 - m, 1, y), self.horizon, kind)

    def _stat_base(self, kind: str) -> np.ndarray:
        """(n, H): a statistical forecaster's forecasts at every origin from the first
        training one to the last test one, fitted on the training part (its last FIT_MAX
        values): in sample at the training origins, out of sample at the validation ones that
        calibrate the intervals and at the test ones. Rolled once a task, and cached."""
        if kind not in self._tables:
            lo, hi = self.train_origins[0], int(self.origins["test"][-1]) + 1
            progress = count_progress(f"forecast: {MODELS[kind]} at every origin, the base", "origin")
            try:
                self._tables[kind] = roll(kind, self.series.values, np.arange(lo, hi), self.horizon,
                                          self._stat_season(kind), self.coverage, progress,
                                          fit=(max(0, self.n_train - FIT_MAX), self.n_train)).mean
            except NotFitted as e:
                raise ValueError(f"-o base={kind}: {e}; choose another base") from None
        return self._tables[kind]

    def _stat_season(self, kind: str) -> int | tuple[int, ...]:
        """The season a statistical model takes: MSTL all of them, the others the main one."""
        return tuple(self.seasons) if kind == "mstl" and len(self.seasons) > 1 else self.season

    def _truth(self, origins):
        return self._span(origins, 1, self.horizon + 1)

    def _base(self, origins, y=None):
        return self._baseline(origins, self.base, y)

    def _residuals(self, origins):
        return self._truth(origins) - self._base(origins)

    def _windows(self, origins, y=None):
        """(n, context + reach) values up to and including each origin (reach: the longest
        season)."""
        return self._span(origins, 1 - self.context - self.reach, 1, y)

    def _features(self, origins, y=None, given=None):
        return self._window_features(self._windows(origins, y), self._extra(origins, y, given))

    def _extra(self, origins, y=None, given=None):
        """(n, L, E): the calendar's and covariates' features of the L steps up to each origin,
        of the series (or of another series `y`, whose own `given` (N', E) it needs: see
        extra_of); None where the network reads the series alone."""
        if self.extra is None:
            return None
        if y is not None and given is None:
            raise ValueError(f"this model reads {self._reads()}: give them with the values")
        at = np.asarray(origins)[:, None] + np.arange(1 - self.context, 1)
        return (self.extra if y is None else given)[at]

    def extra_of(self, times=None, cov=None) -> np.ndarray:
        """(N', E): the features another series' times and covariates (N', C) give."""
        parts = ([calendar_features(times, self.cycles)] if self.calendar else []) + \
                ([self._scaled_covariates(cov)] if self.covariates else [])
        return np.concatenate(parts, axis=1)

    def _window_features(self, win, extra=None):
        """(L, n, F) inputs from (n, L + R) windows (R: the longest season): the level and,
        for each season, the seasonal difference; in the training part's units (scale
        global), or in the window's own, the level then measured from the window's last value
        (scale window); then the calendar's and covariates' features `extra` (n, L, E), if
        given."""
        R = self.reach
        if self.scale == "global":
            level, unit = (win[:, R:] - self.mu), np.full((len(win), 1), self.sd)
        else:
            level, unit = win[:, R:] - win[:, -1:], self._window_unit(win)[:, None]
        feats = [level / unit]                                   # (n, L)
        feats += [(win[:, R:] - win[:, R - m:-m]) / unit for m in self.seasons if m > 1]
        x = np.stack(feats, axis=-1)                             # (n, L, F)
        if extra is not None:
            x = np.concatenate([x, extra], axis=-1)
        return x.transpose(1, 0, 2)                              # (L, n, F)

    def _window_unit(self, win) -> np.ndarray:
        """(n,): the mean absolute step of each window's context (at least s_floor)."""
        steps = np.abs(np.diff(win[:, self.reach:], axis=1))
        return np.maximum(steps.mean(axis=1), self.s_floor)

    def _out_scale(self, win) -> np.ndarray:
        """(n, 1): what the network's outputs are multiplied by, for (n, L + m) windows."""
        if self.scale == "global":
            return np.full((len(win), 1), self.r_scale)
        return self.r_scale * self._window_unit(win)[:, None]

    @property
    def n_features(self):
        return 1 + sum(m > 1 for m in self.seasons) + 2 * len(self.cycles) + len(self.covariates)

    @property
    def steps_out(self):
        """Steps the network forecasts: every horizon step (direct) or the next (recursive)."""
        return self.horizon if self.strategy == "direct" else 1

    @property
    def outputs(self):
        """Network outputs: a mean per step, and a log-variance per step with the Gaussian head."""
        return self.steps_out * (2 if self.intervals == "gaussian" else 1)

    def model_config(self, **settings) -> ModelConfig:
        return ModelConfig(input_size=self.n_features, output_size=self.outputs,
                           readout="last", **settings)

    def train_batch(self, step, batch_size):
        if self.stored is not None and self.opts["prepared"]:
            raise ValueError("this forecast task was rebuilt from a run folder, which keeps the "
                             "scored stretch only; build it from the prepared folder to train")
        origins = self._draw(np.random.default_rng([self.seed, 0, step]), batch_size)
        win = self._windows(origins)
        return Batch(x=self._window_features(win, self._extra(origins)),
                     y=self._residuals(origins)[:, :self.steps_out] / self._out_scale(win))

    # --- evaluation ---------------------------------------------------------------------
    def _forecast(self, predictor: Predictor, origins, y=None, given=None):
        """(n, H) forecasts from `origins` of the series (or of another series `y`, with its
        calendar's and covariates' features `given` for a model that reads them)."""
        return self._forecast_and_sigma(predictor, origins, y, given)[0]

    def _forecast_and_sigma(self, predictor: Predictor, origins, y=None, given=None):
        """(forecasts (n, H), the Gaussian head's standard deviations (n, H) or None)."""
        if predictor.config.output_size != self.outputs:
            raise ValueError(f"the model has {predictor.config.output_size} outputs; the task "
                             f"needs {self.outputs} ({self.strategy}, {self.intervals} "
                             f"intervals, horizon {self.horizon})")
        def run(at):                                             # origins at a time
            win = self._windows(at, y)
            if self.strategy == "direct":
                return self._direct(predictor, win, self._baseline(at, self.base, y),
                                    self._extra(at, y, given))
            return self._recursive(predictor, win)

        parts = [run(origins[k:k + CHUNK]) for k in range(0, len(origins), CHUNK)]
        forecast = np.concatenate([f for f, _ in parts])
        return forecast, None if parts[0][1] is None else np.concatenate([s for _, s in parts])

    def _network(self, predictor, win, extra=None):
        """The network's raw outputs (n, outputs) for (n, L + m) windows (and their calendar's
        and covariates' features), in scaled units."""
        x = self._window_features(win, extra).astype(np.dtype(predictor.config.dtype))
        return predictor.run(x)[0].astype(np.float64)

    def _direct(self, predictor, win, base, extra=None):
        """The base's forecast (n, H) plus the network's correction for every step, (n, H),
        and the Gaussian head's sigma (n, H) or None."""
        H = self.horizon
        out = self._network(predictor, win, extra)               # (n, H) or (n, 2H)
        unit = self._out_scale(win)
        sigma = np.exp(0.5 * out[:, H:]) * unit if self.intervals == "gaussian" else None
        return base + out[:, :H] * unit, sigma

    def _base_forecast(self, win, H, kind=None):
        """(n, H): a baseline's forecast (a key of BASES; None: the model's base) of the H
        steps after (n, >= reach + 1) windows. seasonal: the value a season back (the longest
        season's). seasonal_diff is ARIMA(0,1,0)(0,1,0)[m]'s (m the main season's)
        forecast: the seasonal naive value k = ceil(h / m) seasons back, plus k times the
        last seasonal difference. seasonal_mean: the mean of the values at the same phase in
        the last K = mean_seasons seasons, moved by how far the last season's mean lies from
        the K seasons' (a seasonal profile and a level, as exponential smoothing keeps them,
        with equal weights)."""
        kind = kind or self.base
        m, h = self.season, np.arange(1, H + 1)
        if kind == "last":
            return np.repeat(win[:, -1:], H, axis=1)
        if kind == "seasonal":
            k = np.ceil(h / self.reach).astype(int)
            return win[:, win.shape[1] - self.reach * k + h - 1]
        k = np.ceil(h / m).astype(int)
        seasonal = win[:, win.shape[1] - m * k + h - 1]
        if kind == "seasonal_diff":
            return seasonal + k * (win[:, -1:] - win[:, -1 - m:-m])
        K = self.mean_seasons                                    # seasonal_mean
        past = win[:, win.shape[1] - K * m:]                     # (n, K m): K whole seasons
        profile = past.reshape(len(win), K, m).mean(axis=1)      # (n, m), phase of y[t - m + 1] first
        level = past[:, -m:].mean(axis=1, keepdims=True) - past.mean(axis=1, keepdims=True)
        return profile[:, (h - 1) % m] + level

    def _recursive(self, predictor, win):
        """(n, H): one step at a time, each forecast appended to the window as if observed."""
        past = win.shape[1]
        win = np.concatenate([win, np.empty((len(win), self.horizon))], axis=1)
        for h in range(self.horizon):
            end = past + h                                       # win[:, :end] is known
            now = win[:, end - past:end]
            base = self._base_forecast(now, 1)[:, 0]
            win[:, end] = base + self._network(predictor, now)[:, 0] * self._out_scale(now)[:, 0]
        return win[:, past:], None

    def _half_widths(self, predictor, forecast, truth, sigma):
        """(n, H) interval half-widths at the test origins: z sigma from the Gaussian head, or
        adaptive conformal from the errors known at each origin."""
        if sigma is not None:
            return NormalDist().inv_cdf(0.5 + self.coverage / 2) * sigma
        return self.rolling_intervals(self.calibration_scores(predictor), np.abs(forecast - truth))

    def _scores(self, forecast, truth) -> dict:
        err = forecast - truth
        denom = np.abs(forecast) + np.abs(truth)
        smape = np.where(denom > 0, 2 * np.abs(err) / np.where(denom > 0, denom, 1), 0.0)
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                "smape": float(100 * np.mean(smape)),
                "mase": float(np.mean(np.abs(err)) / self.mase_scale)}

    def calibration_scores(self, predictor) -> np.ndarray:
        """(n_valid, H) absolute forecast errors on the validation origins."""
        o = self.origins["valid"]
        return np.abs(self._forecast(predictor, o) - self._truth(o))

    def _quantile(self, scores, level):
        n = scores.shape[0]
        level = min(1.0, np.ceil((n + 1) * level) / n)           # finite-sample correction
        return np.quantile(scores, level, axis=0, method="higher")

    def rolling_intervals(self, calib, err) -> np.ndarray:
        """(n, H) interval half-widths along the test origins, in time order.

        Adaptive conformal inference (Gibbs & Candes 2021): at each origin the half-width is a
        quantile of the most recent known errors (validation first, then test origins whose
        truth has arrived, never later ones), and the quantile's level moves after every miss
        or hit so that coverage holds in the long run even when the series changes regime.
        """
        n, H = err.shape
        alpha, gamma, window = 1.0 - self.coverage, 0.005, calib.shape[0]
        half = np.empty_like(err)
        for h in range(H):
            # the `window` most recent errors, in arrival order and sorted (a quantile is
            # then one index: numpy's method "higher", ceil(q (window - 1)))
            recent = collections.deque(calib[:, h].tolist())
            ranked, a = sorted(recent), alpha
            for i in range(n):
                j = i - h - 1                                    # its truth arrived by origin i
                if j >= 0:
                    new = float(err[j, h])
                    del ranked[bisect.bisect_left(ranked, recent.popleft())]
                    bisect.insort(ranked, new)
                    recent.append(new)
                    a += gamma * (alpha - float(new > half[j, h]))
                q = min(1.0, (1 - a) * (1 + 1 / window))
                half[i, h] = (np.inf if a <= 0 else 0.0 if a >= 1
                              else ranked[math.ceil(q * (window - 1))])
        return half

    def evaluate(self, predictor, split):
        o = self.origins[split]
        (forecast, sigma), truth = self._forecast_and_sigma(predictor, o), self._truth(o)
        m = self._scores(forecast, truth)
        if split == "valid":
            unit = self.r_scale if self.scale == "global" else self._out_scale(self._windows(o))
            m["loss"] = float(np.mean(((forecast - truth) / unit) ** 2))
        else:
            err = np.abs(forecast - truth)
            half = self._half_widths(predictor, forecast, truth, sigma)
            m["coverage"] = float((err <= half).mean())
            m["interval_width"] = float(2 * np.mean(half[np.isfinite(half)]))
            m.update(self._fold_scores(forecast, truth))
        return m

    def _fold_scores(self, forecast, truth) -> dict:
        """The backtest: MASE on each of `folds` consecutive blocks of test origins."""
        blocks = np.array_split(np.arange(len(truth)), self.folds)
        return {f"mase_fold{k + 1}": float(np.mean(np.abs(forecast[b] - truth[b])) / self.mase_scale)
                for k, b in enumerate(blocks)}

    def baselines(self):
        o = self.origins["test"]
        truth = self._truth(o)
        out = {}
        for kind, name in BASELINES.items():
            forecast = self._baseline(o, kind)
            out[name] = {**self._scores(forecast, truth), **self._fold_scores(forecast, truth)}
        for kind in self.stat_kinds:
            r = self.rolled(kind)
            if isinstance(r, str):                               # could not be fitted
                continue
            inside = (truth >= r.lo) & (truth <= r.hi)
            out[STAT_NAMES[kind]] = {**self._scores(r.mean, truth), "coverage": float(inside.mean()),
                                     "interval_width": float(np.mean(r.hi - r.lo)),
                                     **self._fold_scores(r.mean, truth)}
        return out

    def baseline_models(self) -> dict[str, str]:
        return {STAT_NAMES[k]: r if isinstance(r := self.rolled(k), str) else r.spec
                for k in self.stat_kinds}

    def rolled(self, kind: str) -> Rolled | str:
        """A statistical baseline (statbase.MODELS) rolled over the test origins, fitted on
        the FIT_MAX values before them, once a task; or why statsforecast could not fit it."""
        if kind not in self._rolled and not statbase.available():     # a core install
            self._rolled[kind] = "not fitted (statsforecast is not installed: pip install 'lstmlab[tasks]')"
        if kind not in self._rolled:
            o, start = self.origins["test"], self._fit_start()
            progress = count_progress(f"forecast: {MODELS[kind]} over the test origins", "origin")
            try:
                self._rolled[kind] = roll(kind, self._values(start, int(o[-1]) + 1), o - start,
                                          self.horizon, self._stat_season(kind), self.coverage,
                                          progress)
            except NotFitted as e:
                self._rolled[kind] = f"not fitted ({e})"
        return self._rolled[kind]

    def figures(self, predictor, folder, test, baselines):
        from ..viz.figures import backtest_figure, forecast_figure

        o = self.origins["test"]
        picks = o[np.linspace(0, len(o) - 1, 3).astype(int)]
        at = np.searchsorted(o, picks)
        (forecast, sigma), truth = self._forecast_and_sigma(predictor, o), self._truth(o)
        q = self._half_widths(predictor, forecast, truth, sigma)[at]   # (3, H)
        forecast, truth = forecast[at], truth[at]
        fitted = [k for k in self.stat_kinds if STAT_NAMES[k] in baselines]
        arima = self.rolled("arima") if "arima" in fitted else None
        if isinstance(arima, Rolled):                            # the peer a forecaster trusts
            shown, shown_label = arima.mean[at], f"AutoARIMA: {arima.spec}"
        else:
            shown, shown_label = self._baseline(picks, self.base), {**BASES, **STAT_BASES}[self.base]
        show = min(self.context, 4 * self.horizon)
        history = self._span(picks, 1 - show, 1)
        series = [{"history": history[k], "truth": truth[k], "free_run": forecast[k],
                   "lower": forecast[k] - q[k], "upper": forecast[k] + q[k], "baseline": shown[k],
                   "label": f"test origin {int(t)} ({self.series.step} {int(t) + 1} of the series)"}
                  for k, t in enumerate(picks)]
        pct = int(round(100 * self.coverage))
        peers = {**{name: name.replace("_", " ") for name in BASELINES.values()},
                 **{STAT_NAMES[k]: MODELS[k] for k in fitted}}
        metrics = {"LSTM MASE": test["mase"], **{label: baselines[name]["mase"]
                                            for name, label in peers.items()},
                   f"{pct}% {self.intervals} interval coverage": test["coverage"],
                   **{f"{MODELS[k]} {pct}% coverage": baselines[STAT_NAMES[k]]["coverage"]
                      for k in fitted}}
        s = self.series
        folds = [{"fold": k, "LSTM": test[f"mase_fold{k}"],
                  **{label: baselines[name][f"mase_fold{k}"] for name, label in peers.items()}}
                 for k in range(1, self.folds + 1)]
        return [backtest_figure(Path(folder) / "backtest.png", folds,
                                title=f"rolling-origin backtest: {s.name}, {self.horizon} "
                                      f"{s.step}s ahead, {len(o)} origins in {self.folds} folds"),
                forecast_figure(Path(folder) / "forecast.png", series=series,
                                title=f"forecast: {s.name}, {self.horizon} {s.step}s ahead",
                                metrics=metrics,
                                forecast_label=f"LSTM forecast ({self.strategy})",
                                baseline_label=shown_label,
                                xlabel=f"{s.step}s from the forecast origin",
                                ylabel=s.unit or "value")]

    def read_input(self, path) -> np.ndarray:
        """The recent past from the user's file: a bare column of numbers (one a line), or a
        CSV with a header: the training column (-o column), else its only column."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"input file {path} does not exist")
        cells, header = _first_row(path)
        if header:
            column = self.opts["column"] if self.opts["column"] in cells else \
                (cells[0] if len(cells) == 1 else self.opts["column"] or "value")
            return read_csv_column(path, column, missing=self.opts["missing"])
        if len(cells) > 1:
            raise ValueError(f"{path} has {len(cells)} columns and no header row; give one number "
                             f"a line, or a header row that names the column "
                             f"{self.opts['column'] or 'value'!r}")
        return read_series(path)

    # --- inspection ---------------------------------------------------------------------------
    def examples(self, split="test"):
        """The network's input at every origin of the split: the last `context` values
        before it (with their seasonal differences), as the direct forecast reads them."""
        o = self.origins[split]
        win = self._windows(o)                                   # (n, L + m)
        return series_inputs(win[:, self.reach:].T, self._window_features(win, self._extra(o)))

    def encode_input(self, value):
        """The window before the end of the user's series (a file as `predict --input` reads
        it, or numbers separated by commas)."""
        if self.extra is not None:
            raise ValueError(f"this model reads {self._reads()}, which bare numbers do not give: "
                             "forecast with lstmlab predict --input FILE.csv (with those columns)")
        values = series_input(value, self.read_input)
        L, m = self.context, self.reach
        if len(values) < L + m:
            raise ValueError(f"the series has {len(values)} values; this model reads the last "
                             f"{L + m} (context {L} + season {m}): give at least {L + m}")
        win = values[None, -(L + m):]
        return series_inputs(win[:, m:].T, self._window_features(win))

    def stream_input(self, window):
        """The newest value's features, as _window_features makes them; None for the first
        `season` values of a stream (encode_input also reads a season before its window)."""
        if self.scale == "window":
            raise ValueError("a window-scaled forecast (-o scale=window) measures every input "
                             "against its window's last value, so it cannot read a stream one "
                             "value at a time: forecast with lstmlab predict --input FILE")
        if self.base in STAT_BASES:
            self._baseline(None, self.base, window)              # says why not
        if self.extra is not None:
            raise ValueError(f"this model reads {self._reads()}, which a stream of numbers does "
                             "not give: forecast with lstmlab predict --input FILE.csv")
        if len(window) <= self.reach:
            return None
        return self._window_features(window[None, -(self.reach + 1):, 0])[0, 0]   # (F,)

    def stream_prediction(self, output, window):
        """The forecast of the next steps_out values (the horizon, or the next one with
        strategy recursive) in the series' units: the base plus the network's correction."""
        H = self.steps_out
        return (self._base_forecast(window[None, :, 0], H)[0] + output[:H] * self.r_scale).tolist()

    def predict_file(self, predictor, path):
        """Forecast the next `horizon` values after the end of the user's series."""
        values = self.read_input(path)
        column = self.opts["column"] or "value"
        L, m = self.context, self.reach
        if len(values) < L + m:
            raise ValueError(f"{path} has {len(values)} values; this model needs the last "
                             f"{L + m} (context {L} + season {m}): give at least {L + m} "
                             "numbers, one a line")
        t = np.array([len(values) - 1])
        given = None
        if self.extra is not None:
            time = self.opts["time"] or "time"
            columns = ([time] if self.calendar else []) + self.covariates
            if not _first_row(path)[1]:
                raise ValueError(f"this model reads {self._reads()}: give {path} a header row "
                                 f"and the columns {', '.join(columns)} beside the values")
            cov = (np.stack([read_csv_column(path, c, missing=self.opts["missing"])
                             for c in self.covariates], axis=1) if self.covariates else None)
            times = read_csv_times(path, time) if self.calendar else None
            if any(v is not None and len(v) != len(values) for v in (cov, times)):
                raise ValueError(f"{path}: give {', '.join(columns)} on every row that has a value")
            given = self.extra_of(times, cov)
        forecast, sigma = self._forecast_and_sigma(predictor, t, values, given)
        forecast = forecast[0]
        q = (NormalDist().inv_cdf(0.5 + self.coverage / 2) * sigma[0] if sigma is not None
             else self._quantile(self.calibration_scores(predictor), self.coverage))
        return {"input": str(path), "column": column, "horizon": self.horizon,
                "forecast": forecast.tolist(), "lower": (forecast - q).tolist(),
                "upper": (forecast + q).tolist(), "coverage": self.coverage}



def _first_row(path) -> tuple[list[str], bool]:
    """The cells of a CSV's first line, and whether it is a header (its first cell is not a
    number)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    cells = [c.strip() for c in first.split(",")]
    try:
        float(cells[0])
    except ValueError:
        return cells, True
    return cells, False


def calendar_cycles(times) -> list[str]:
    """The calendar cycles (CYCLES) that times (datetime64) can show: those at least two of
    their median steps long (a shorter one aliases) and which they span at least twice (once
    could teach a phase only by extrapolating it: a year of training data, say, and a test
    part in its autumn)."""
    t = np.asarray(times).astype("datetime64[s]").astype(np.int64)
    if len(t) < 2:
        return []
    step, span = float(np.median(np.diff(t))), float(t[-1] - t[0])
    return [c for c, period in CYCLES.items() if period >= 2 * step and span >= 2 * period]


def calendar_features(times, cycles) -> np.ndarray:
    """(N, 2 len(cycles)): each time's phase in each cycle, as its sine and its cosine."""
    t = np.asarray(times).astype("datetime64[s]").astype(np.int64).astype(np.float64)
    cols = []
    for c in cycles:
        angle = 2 * np.pi * np.mod(t, CYCLES[c]) / CYCLES[c]
        cols += [np.sin(angle), np.cos(angle)]
    return np.stack(cols, axis=1) if cols else np.empty((len(t), 0))


def detect_season(y) -> tuple[int, float]:
    """The season of a series, from the autocorrelation of its last SEASON_VALUES values less
    their linear trend, at lags up to a third of them (at most SEASON_MAX_LAG): a season is a
    lag where it peaks (a local maximum), reaching SEASON_MIN_ACF and Bartlett's 95% band,
    and rising above the lowest value before it by at least half its height;
    of those, the shortest that peaks at least 80% as high as the highest (a day, not the week
    its days make up), or the lag within a tenth of it whose multiples correlate best (a noisy
    peak is flat). (season, its autocorrelation), or (1, the highest peak's) where no lag
    stands out; R's forecast::findfrequency looks for the same in the spectrum."""
    x = np.asarray(y, dtype=np.float64)[-SEASON_VALUES:]
    n = len(x)
    L = min(n // 3, SEASON_MAX_LAG)
    if L < 3:
        return 1, 0.0
    t = np.arange(n)
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    f = np.fft.rfft(x, 2 * n)
    a = np.fft.irfft(f * np.conj(f), 2 * n)[:L + 1]
    if a[0] <= 1e-12 * max(1.0, float(np.sum(x * x))):         # constant: no season
        return 1, 0.0
    a = a / a[0]
    # Bartlett: the autocorrelation at lag k of an MA(k - 1) process has variance
    # (1 + 2 sum_{j<k} a_j^2) / n
    band = 1.96 * np.sqrt((1 + 2 * np.concatenate([[0.0, 0.0], np.cumsum(a[1:L] ** 2)])) / n)
    k = np.arange(2, L)
    peaks = k[(a[k] >= a[k - 1]) & (a[k] >= a[k + 1])]
    if not peaks.size:
        return 1, 0.0
    trough = np.minimum.accumulate(a)                    # the lowest before each lag: a
    seasons = peaks[(a[peaks] >= SEASON_MIN_ACF) & (a[peaks] > band[peaks])   # wiggle on the
                    & (a[peaks] - trough[peaks - 1] >= a[peaks] / 2)]        # way down is none
    if not seasons.size:
        return 1, float(a[peaks].max())
    best = float(a[seasons].max())
    m = int(seasons[a[seasons] >= 0.8 * best][0])
    # a noisy peak is flat: of the lags within a tenth of it, the one whose multiples
    # correlate best
    near = range(max(2, m - m // 10 - 1), min(L, m + m // 10 + 1) + 1)
    m = max(near, key=lambda c: a[c::c].mean())
    return m, float(a[m])


def parse_seasons(given) -> list[int]:
    """-o season's numbers ("48" or "48,336"), shortest first, each at least 1 (a 1 beside
    longer seasons says nothing and is dropped)."""
    try:
        seasons = sorted({int(v) for v in str(given).split(",") if v.strip()})
    except ValueError:
        seasons = []
    if not seasons:
        raise ValueError(f"season must be a number of steps (1: none), several separated by "
                         f"commas (48,336), auto (found in the data) or empty (the series' own), "
                         f"got {given!r}")
    if seasons[0] < 1:
        raise ValueError(f"season must be at least 1, got {seasons[0]}")
    return [m for m in seasons if m > 1] or [1]


def season_found(y) -> tuple[int, str]:
    """detect_season's season of y and the words that say where it came from."""
    m, r = detect_season(y)
    if m > 1:
        return m, f"from the data: autocorrelation {r:.2f} at lag {m}"
    return 1, (f"from the data: none (no autocorrelation peak reaches {SEASON_MIN_ACF}"
               + (f"; the highest is {r:.2f}" if r else "") + ")")


# --- a series larger than memory: lstmlab prepare forecast ----------------------------------
def prepare(path, column: str, out, season: int | str = "auto", missing: str = "error",
            progress=None) -> dict:
    """`lstmlab prepare forecast`: the CSV column at `path` as float64 values in out/values.f64
    and out/prepared.json (the length, and the training part's mean, standard deviation and
    mean absolute seasonal difference at `season`, what the task scales and scores with),
    the CSV read once as a stream and the values once more from the file, never whole.
    season "auto": detect_season's, from the training part's last SEASON_VALUES values.
    Returns the JSON. progress(what, done, total) after every chunk, if given."""
    path, out = Path(path), Path(out)
    auto = str(season).strip().lower() == "auto"
    season = 1 if auto else check_int("season", season, 1)
    if missing not in ("error", "interpolate"):
        raise ValueError(f"missing must be 'error' or 'interpolate', got {missing!r}")
    if not path.is_file():
        raise ValueError(f"CSV file {path} does not exist; give --csv the path of a CSV file "
                         "with a header row")
    if (out / "prepared.json").exists():
        raise ValueError(f"{out} already holds prepared data; choose another --out or delete it")
    report = progress or (lambda what, done, total: None)
    total = path.stat().st_size
    out.mkdir(parents=True, exist_ok=True)
    part, n = out / (VALUES + ".part"), 0
    try:
        with open(part, "wb") as f:                              # written, not mapped
            for values, done in csv_column_chunks(path, column, missing):
                f.write(values.astype("<f8").tobytes())
                n += len(values)
                report("values", done, total)
        n_train = int(SPLITS[0] * n)
        season_from = "given"
        if auto:
            season, season_from = season_found(ArrayFile(part, "<f8", 0, n).read(
                max(0, n_train - SEASON_VALUES), n_train))
        if n_train <= season:
            raise ValueError(f"{path}, column {column!r}, has {n} values: too few to prepare "
                             f"(its training part must hold more than a season of {season})")
        stats = _training_stats(ArrayFile(part, "<f8", 0, n), n_train, season, report)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out / VALUES)
    info = {"format": PREPARED, "version": 1, "source": str(path.resolve()), "column": column,
            "values": n, "season": season, "season_from": season_from, "missing": missing,
            **stats}
    from ..io.atomic import write_text
    write_text(out / "prepared.json", json.dumps(info))         # last: it marks the data whole
    return info


def _training_stats(values: ArrayFile, n_train: int, season: int, report) -> dict:
    """The training part's (values 0:n_train) mean, standard deviation and mean absolute
    difference at lag `season`, read in chunks of STATS_CHUNK: the means of chunks merged
    as Chan et al. (1979) do, so that no long sum loses precision."""
    count, mean, m2, abs_diff = 0, 0.0, 0.0, 0.0
    for a in range(0, n_train, STATS_CHUNK):
        b = min(a + STATS_CHUNK, n_train)
        y = values.read(max(0, a - season), b)                   # a season before, for the lag
        chunk = y[a - max(0, a - season):]
        k, mu = len(chunk), float(chunk.mean())
        delta = mu - mean
        m2 += float(np.sum((chunk - mu) ** 2)) + delta * delta * count * k / (count + k)
        mean += delta * k / (count + k)
        count += k
        abs_diff += float(np.sum(np.abs(y[season:] - y[:-season])))
        report("statistics", b, n_train)
    return {"mu": mean, "sd": float(np.sqrt(m2 / count)) or 1.0,
            "mase_scale": abs_diff / (n_train - season) or 1.0}


def load_prepared(folder) -> dict:
    """prepared.json of a folder `prepare` wrote, checked against its values file."""
    def whole(folder: Path, info: dict) -> bool:
        return (folder / VALUES).stat().st_size == info["values"] * 8 and all(
            k in info for k in PREPARED_KEEP)

    return read_prepared(folder, PREPARED, "forecast", whole, what="series")
