"""lstmlab bench: every section and side reported, ratios from the medians, the files it
writes, a missing library skipped, one-line errors. No speed is asserted."""

import json
import math
import os
import subprocess
import sys

import pytest
from rich.console import Console

from lstmlab.bench import lstm_flops, summary, tables
from tests.conftest import lstmlab, one_line_error


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One run at the tests' sizes (hidden --tiny: 1 round), with --threads and --out."""
    out = tmp_path_factory.mktemp("bench")
    r = lstmlab("bench", "--tiny", "--threads", "1", "--json", "--out", out)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), out


def positive(m):
    return m is not None and math.isfinite(m["median"]) and 0 < m["min"] <= m["median"]


def test_every_section_times_every_side_and_ratios_are_the_medians_quotient(tiny):
    result, _ = tiny
    for side in ("numpy", "torch", "onnxruntime"):
        assert result["libraries"][side]["installed"] is True
        assert result["libraries"][side]["threads"] == 1             # --threads 1 reached them
    assert result["peak"]["numpy"]["gflops"] > 0 and result["peak"]["torch"]["gflops"] > 0

    rows = result["lstm"]["rows"]
    assert rows
    for row in rows:
        for mode in ("fwd", "fwd_bwd"):
            n, t = row["numpy"][mode], row["torch"][mode]
            assert positive(n) and positive(t)
            assert row["ratio"][mode] == pytest.approx(n["median"] / t["median"], rel=1e-12)
            assert n["gflops"] == pytest.approx(row["flops"][mode] / (n["median"] * 1e-3) / 1e9)
            assert n["percent_of_peak"] == pytest.approx(
                100 * n["gflops"] / result["peak"]["numpy"]["gflops"])

    for row in result["step"]["rows"]:
        assert all(positive(row[side]) for side in ("numpy", "torch", "onnxruntime"))
        assert row["ratio"]["numpy/torch"] == pytest.approx(
            row["numpy"]["median"] / row["torch"]["median"], rel=1e-12)
        assert row["ratio"]["numpy/onnxruntime"] == pytest.approx(
            row["numpy"]["median"] / row["onnxruntime"]["median"], rel=1e-12)

    va = result["variants"]
    assert [r["variant"] for r in va["rows"]] == ["peephole", "cifg", "layernorm", "gru_cho"]
    assert positive(va["fused"])
    # nn.LSTM timed with torch's defaults and as lstmlab trains: the faster is the baseline
    by = va["fused_by_setup"]
    assert positive(by["torch_defaults"]) and positive(by["training_setup"])
    assert va["fused"] == by[va["baseline"]] == min(by.values(), key=lambda v: v["median"])
    assert "OMP_WAIT_POLICY=" in va["setup"]
    for row in va["rows"]:
        assert positive(row["fwd_bwd"])
        assert row["ratio"] == pytest.approx(row["fwd_bwd"]["median"] / va["fused"]["median"],
                                             rel=1e-12)


def test_memory_reports_both_lengths(tiny):
    result, _ = tiny
    mem = result["memory"]
    (numpy,) = [r for r in mem["rows"] if r["engine"] == "numpy"]
    assert [run["steps"] for run in numpy["runs"]] == mem["lengths"] and len(mem["lengths"]) == 2
    for run in numpy["runs"]:
        assert run["rss_growth_mb"] >= 0 and run["tracemalloc_peak_mb"] > 0 and run["seconds"] > 0
    assert isinstance(numpy["flat"], bool)


def test_out_writes_the_json_printed_and_a_figure(tiny):
    result, out = tiny
    assert json.loads((out / "bench.json").read_text()) == result
    assert result["files"] == {"json": str(out / "bench.json"), "figure": str(out / "bench.png")}
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_tables_show_every_section(tiny):
    result, _ = tiny
    console = Console(record=True, width=80)
    for table in tables(result):
        console.print(table)
    text = console.export_text()
    for shape in result["lstm"]["rows"]:
        assert str(tuple(shape["shape"])) in text
    for words in ("LSTMCell", "onnx-", "gru_cho", "tracemalloc", "% of"):
        assert words in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "numpy 2." in summary(result) or "numpy 1." in summary(result)


def test_flops_of_one_shape():
    # forward: 2 * T * B * 4H * (I + H) = 2 * 100 * 32 * 512 * 160; backward twice that
    assert lstm_flops(100, 32, 32, 128) == 524_288_000
    assert lstm_flops(100, 32, 32, 128, backward=True) == 3 * 524_288_000
    assert lstm_flops(100, 32, 32, 128, gates=3) == 393_216_000       # cifg, GRU


def test_a_missing_library_is_reported_and_skipped(tmp_path):
    # packages named torch and onnxruntime that cannot be imported, ahead of the real ones
    for name in ("torch", "onnxruntime"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {name!r}'!r}, name={name!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
                                                                     os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-m", "lstmlab", "bench", "--tiny", "--json", "--out",
                        tmp_path / "out"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["libraries"]["torch"] == {
        "installed": False, "note": "torch is not installed: pip install 'lstmlab[torch]'"}
    assert result["libraries"]["onnxruntime"]["installed"] is False
    row = result["lstm"]["rows"][0]
    assert positive(row["numpy"]["fwd"]) and row["torch"] is None and row["ratio"]["fwd"] is None
    assert result["step"]["rows"][0]["ratio"] == {"numpy/torch": None, "numpy/onnxruntime": None}
    assert all(r["ratio"] is None for r in result["variants"]["rows"])
    assert result["peak"]["torch"] is None
    assert (tmp_path / "out" / "bench.png").stat().st_size > 10_000     # bars where there are ratios
    text = Console(record=True, width=80)
    for table in tables(result):
        text.print(table)
    assert "not installed" in text.export_text()
    assert "pip install 'lstmlab[torch]'" in summary(result)


def test_bad_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "is a file" in one_line_error(lstmlab("bench", "--out", blocker))
    err = one_line_error(lstmlab("bench", "--tiny", "--out", blocker / "sub"))
    assert f"cannot write {blocker / 'sub'}" in err
    r = lstmlab("bench", "--threads", "0", "--json")
    assert r.returncode == 2 and "--threads" in json.loads(r.stdout)["error"]


def test_a_median_far_from_the_fastest_call_is_flagged():
    from lstmlab.bench import NOISY, _noisy

    result = {"lstm": {"rows": [{"numpy": {"fwd": {"median": NOISY * 1.5, "min": 1.0}},
                                 "torch": {"fwd": {"median": 1.2, "min": 1.0}}}]},
              "variants": {"fused": {"median": 1.0, "min": 1.0}}}
    assert _noisy(result) == ["lstm.rows[0].numpy.fwd"]


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_stream_memory_reports_each_mark_of_one_stream(engine):
    """benchmarks/long_stream.py's measure: one stream, the state carried, a row per mark."""
    from lstmlab.bench import stream_memory

    seen = []
    rows = stream_memory(engine, [200, 500], hidden=4, window=100, progress=seen.append)
    assert [r["steps"] for r in rows] == [200, 500] and seen == [100, 200, 300, 400, 500]
    assert 0 <= rows[0]["seconds"] <= rows[1]["seconds"]
    assert all(r["rss_growth_mb"] >= 0 for r in rows)
