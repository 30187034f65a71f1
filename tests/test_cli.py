"""The lstmlab command: JSON output, exit codes, one-line errors."""

import json

from tests.conftest import lstmlab


def test_gradcheck_json_passes_for_one_variant():
    r = lstmlab("gradcheck", "--variant", "cifg", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["passed"] is True
    assert out["variants"][0]["variant"] == "cifg"
    assert out["variants"][0]["worst_relative_error"] < out["tolerance"]


def test_gradcheck_table():
    r = lstmlab("gradcheck", "--variant", "rnn_relu")
    assert r.returncode == 0 and "rnn_relu" in r.stdout and "yes" in r.stdout


def test_unknown_variant_is_a_user_error():
    r = lstmlab("gradcheck", "--variant", "lsmt")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "did you mean 'lstm'" in r.stderr
    r = lstmlab("gradcheck", "--variant", "lsmt", "--json")
    assert r.returncode == 2 and "unknown variant" in json.loads(r.stdout)["error"]


def test_variants_json_lists_the_registry():
    r = lstmlab("variants", "--json")
    names = [v["variant"] for v in json.loads(r.stdout)["variants"]]
    assert r.returncode == 0 and "peephole" in names and "gru_cho" in names
