"""The variant registry and flag composition."""

import pytest

import lstmlab
from lstmlab.spec import CellSpec

NAMES = {"lstm", "peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr", "lstm1997",
         "layernorm", "gru", "gru_cho", "rnn_tanh", "rnn_relu"}


def test_registry_has_every_variant_with_a_docstring():
    assert NAMES <= set(lstmlab.VARIANTS)
    for name, spec in lstmlab.VARIANTS.items():
        assert spec.name == name
        assert spec.__doc__ and len(spec.__doc__) > 60, name
        assert any(ch.isdigit() for ch in spec.__doc__), f"{name}: cite the paper and year"


@pytest.mark.parametrize("name,gates", [("lstm", "ifgo"), ("cifg", "igo"), ("nig", "fgo"),
                                        ("nfg", "igo"), ("nog", "ifg"), ("lstm1997", "igo"),
                                        ("gru", "rzn"), ("rnn_relu", "h")])
def test_gate_blocks(name, gates):
    assert "".join(lstmlab.VARIANTS[name].gates) == gates


def test_flags_compose():
    s = lstmlab.variant("cifg", peepholes=True)
    assert s.coupled_gates and s.peepholes and s.sigmoid_gates == ("i", "o")
    assert s.name == "cifg+peepholes"
    assert lstmlab.variant(s) is s
    assert lstmlab.variant("lstm", peepholes=True) == lstmlab.VARIANTS["peephole"]
    assert lstmlab.variant("gru", linear_before_reset=False) == lstmlab.VARIANTS["gru_cho"]


@pytest.mark.parametrize("call,match", [
    (lambda: lstmlab.variant("lsmt"), "unknown variant 'lsmt' \\(did you mean 'lstm'\\?\\)"),
    (lambda: lstmlab.variant("gru", peepholes=True), "peepholes do\\(es\\) not apply to 'gru'"),
    (lambda: lstmlab.variant("lstm", peeholes=True), "unknown flag"),
    (lambda: lstmlab.variant("cifg", forget_gate=False), "coupled_gates"),
    (lambda: lstmlab.variant("lstm", input_activation="relu"), "input_activation must be"),
    (lambda: CellSpec(family="transformer"), "family must be"),
])
def test_bad_requests_say_what_is_wrong(call, match):
    with pytest.raises(ValueError, match=match):
        call()
