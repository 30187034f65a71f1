"""The statistical forecasters a forecaster trusts, as `forecast`'s baselines: AutoARIMA,
AutoETS and MSTL from statsforecast (Nixtla), not hand-written.

Each is fitted once on the values before the first test origin (`forecast` gives it at most
FIT_MAX of them) and then rolled over the test origins with its fitted parameters: at each
origin it reads the series up to that origin and forecasts the horizon with a `coverage`
interval, as statsforecast's own `cross_validation(refit=False)` does (the tests compare).
AutoARIMA reads only the values its Kalman filter still remembers (`arima_window`: the
moving average's slowest root decides, to FORGET), which cuts seattle-temps' roll about
tenfold; AutoETS and MSTL read the whole prefix, since their forecasts and intervals move
when they read less.

AutoARIMA searches as R's auto.arima does, but approximates the likelihood during its
search above a season of APPROX_SEASON and, above LONG_SEASON (a day of half-hours, a year
of weeks), tries seasonal orders of at most 1 (with statsforecast's bound of 2, its search
on taylor's m = 48 had run 14 minutes unfinished when it was stopped). The exact search
takes minutes on a long seasonal series too, so a rolled baseline is cached:
$LSTMLAB_CACHE (default ~/.cache/lstmlab)/statbase/<key>.safetensors, the key a hash of the
values read, the model, season, horizon, origins, coverage and the stretch fitted. A damaged cache file is
computed again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .kit import cache_root

MODELS = {"arima": "AutoARIMA", "ets": "AutoETS", "mstl": "MSTL"}
FIT_MAX = 10_000          # values at most before the first test origin that `forecast` fits on
FORGET = 1e-9             # what AutoARIMA's filter may still carry of the values it does not read
ARIMA_SLACK = 24          # values it reads beyond that (its filter's start-up)
APPROX_SEASON = 12        # AutoARIMA approximates its search above this season
LONG_SEASON = 24          # and above this one, searches seasonal orders P, Q of at most 1
FORMAT = 2                # bump when what is cached changes


def available() -> bool:
    """Whether statsforecast is installed (the `tasks` extra); without it the baselines are
    left out and the report says why."""
    return importlib.util.find_spec("statsforecast") is not None


class NotFitted(Exception):
    """statsforecast could not fit a model to the series (too short for its season, say)."""


@dataclass
class Rolled:
    """A statistical model rolled over the test origins: (n, H) forecasts and interval bounds,
    the model it chose (e.g. "ARIMA(0,1,3)(0,1,2)[24]") and the seconds it took."""
    name: str
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    spec: str
    seconds: float


def _model(kind: str, season: int | tuple[int, ...]):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    # R's auto.arima approximates the likelihood in its search for a long season; statsforecast
    # never does by default. The exact search is what gives sunspots (m = 12) its MASE of
    # 0.909 against 1.062 (211 s against 3 s), but it runs over 25 minutes on seattle-temps
    # (m = 24), whose approximated search chooses (0,1,3)(0,1,2)[24] in 23 s. Above
    # LONG_SEASON even that search ran over 14 minutes on taylor (m = 48) unfinished; with
    # P, Q <= 1 it chooses (4,0,1)(1,1,0)[48] in 24 s (statsforecast's AutoETS, for its
    # part, models no season above 24)
    if isinstance(season, tuple):                               # several: MSTL's alone
        if kind != "mstl":
            raise ValueError(f"{MODELS[kind]} takes one season, not {season}")
        return MSTL(season_length=list(season))
    orders = 1 if season > LONG_SEASON else 2                   # 2: statsforecast's own
    return {"arima": lambda: AutoARIMA(season_length=season, approximation=season > APPROX_SEASON,
                                       max_P=orders, max_Q=orders),
            "ets": lambda: AutoETS(season_length=season),
            "mstl": lambda: MSTL(season_length=season)}[kind]()


def _spec(kind: str, fitted, season: int | tuple[int, ...]) -> str:
    """The model the automatic search chose, in the usual notation."""
    if kind == "arima":
        p, q, P, Q, m, d, D = fitted.model_["arma"]
        coef = fitted.model_["coef"]
        extra = " with drift" if "drift" in coef else " with mean" if "intercept" in coef else ""
        return f"ARIMA({p},{d},{q})" + (f"({P},{D},{Q})[{m}]" if m > 1 else "") + extra
    if kind == "ets":
        return str(fitted.model_["method"])
    seasons = ", ".join(map(str, season)) if isinstance(season, tuple) else season
    return f"MSTL[{seasons}], trend {fitted.trend_forecaster.model_['method']}"


def arima_window(model: dict) -> int:
    """How many values before an origin a fitted ARIMA must read to forecast as if it read
    them all, to FORGET: its Kalman filter carries the past through the moving-average part,
    which fades as rho ** k, rho the largest inverse root of theta(B) Theta(B^m). Every value
    (a huge window) with drift (its regressor is the time since the first value read) or
    with a moving average near non-invertible."""
    p, q, P, Q, m, d, D = model["arma"]
    coef = model["coef"]
    if "drift" in coef:
        return 1 << 62
    ma = np.array([1.0, *(coef[f"ma{k}"] for k in range(1, q + 1))])
    sma = np.zeros(Q * m + 1)
    sma[0] = 1.0
    for k in range(1, Q + 1):
        sma[k * m] = coef[f"sma{k}"]
    poly = np.polymul(ma, sma)                                   # in powers of B
    roots = np.roots(poly[::-1]) if len(poly) > 1 else np.array([])
    rho = float(np.max(1 / np.abs(roots))) if roots.size else 0.0
    if rho >= 0.999:
        return 1 << 62
    fade = math.ceil(math.log(FORGET) / math.log(rho)) if rho > 0 else 0
    return fade + p + P * m + d + D * m + ARIMA_SLACK


def _key(kind: str, y: np.ndarray, origins: np.ndarray, horizon: int, season: int | tuple[int, ...],
         coverage: float, fit: tuple[int, int]) -> str:
    from statsforecast import __version__

    h = hashlib.sha256(np.ascontiguousarray(y, dtype="<f8").tobytes())
    h.update(json.dumps([FORMAT, __version__, kind, int(origins[0]), int(origins[-1]),
                         len(origins), horizon, season, coverage, *fit]).encode())
    return h.hexdigest()[:32]


def _load(path: Path, name: str) -> Rolled | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            arrays = {k: f.get_tensor(k) for k in ("mean", "lo", "hi")}
        return Rolled(name, arrays["mean"], arrays["lo"], arrays["hi"], meta["spec"],
                      float(meta["seconds"]))
    except Exception:                                            # absent or damaged: compute
        return None


def _save(path: Path, r: Rolled) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    save_file({"mean": r.mean, "lo": r.lo, "hi": r.hi}, str(part),
              metadata={"spec": r.spec, "seconds": f"{r.seconds:.3f}"})
    os.replace(part, path)


def roll(kind: str, y: np.ndarray, origins: np.ndarray, horizon: int, season: int | tuple[int, ...],
         coverage: float, progress: Callable[[int, int], None] | None = None,
         fit: tuple[int, int] | None = None) -> Rolled:
    """`kind` (a key of MODELS) fitted on y[fit[0]:fit[1]] (default: y[..origins[0]]) and
    rolled over `origins` (positions in y, increasing): at each origin t it forecasts
    y[t + 1 .. t + horizon] from y[..t]. Cached (see the module's note); progress(done,
    total) after each origin."""
    origins = np.asarray(origins, dtype=np.int64)
    fit = fit or (0, int(origins[0]) + 1)
    y = np.asarray(y[:max(int(origins[-1]) + 1, fit[1])], dtype=np.float64)
    path = cache_root() / "statbase" / f"{_key(kind, y, origins, horizon, season, coverage, fit)}.safetensors"
    cached = _load(path, MODELS[kind])
    if cached is not None:
        return cached
    started = time.perf_counter()
    level = 100 * coverage
    level = int(level) if level == int(level) else level
    n, H = len(origins), horizon
    mean, lo, hi = (np.empty((n, H)) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # statsforecast's convergence notes, not ours
        try:
            fitted = _model(kind, season).fit(y[fit[0]:fit[1]])
        except Exception as e:                   # the library's, on a series it cannot model
            raise NotFitted(f"{MODELS[kind]} could not be fitted: {str(e).splitlines()[0]}") from e
        window = arima_window(fitted.model_) if kind == "arima" else len(y)
        for i, t in enumerate(origins):
            out = fitted.forward(y[max(0, int(t) + 1 - window):int(t) + 1], H, level=[level])
            mean[i] = out["mean"]
            lo[i] = next(v for k, v in out.items() if k.startswith("lo-"))
            hi[i] = next(v for k, v in out.items() if k.startswith("hi-"))
            if progress is not None:
                progress(i + 1, n)
    rolled = Rolled(MODELS[kind], mean, lo, hi, _spec(kind, fitted, season), time.perf_counter() - started)
    _save(path, rolled)
    return rolled
