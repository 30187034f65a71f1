"""The Protocols of lstmlab.interfaces name what the implementations really have (mypy checks
the signatures; this keeps the names true even where the type checker is not run), and the
None checks the type checker asked for."""

import xml.etree.ElementTree as ET

import pytest

from lstmlab.interfaces import Engine, RecurrentCell
from lstmlab.numpy import LSTM, RNN
from lstmlab.numpy.reference import ReferenceCell
from lstmlab.tasks.music import midi_pitch
from lstmlab.train.engines import NumpyEngine, TorchEngine


def members(protocol) -> set[str]:
    """The attributes and methods a Protocol asks for."""
    names = set(getattr(protocol, "__annotations__", {}))
    return names | {n for n, v in vars(protocol).items()
                    if not n.startswith("_") and (callable(v) or isinstance(v, property))}


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("make", [lambda fast: LSTM(3, 4, proj_size=2, fast=fast),
                                  lambda fast: RNN(3, 4, fast=fast)])
def test_cells_have_every_member_of_recurrent_cell(make, fast):
    model = make(fast)
    for cell in model._steppers:
        assert isinstance(cell, ReferenceCell) != fast
        missing = {n for n in members(RecurrentCell) if not hasattr(cell, n)}
        assert not missing, f"{type(cell).__name__} lacks {sorted(missing)}"


@pytest.mark.parametrize("engine", [NumpyEngine, TorchEngine])
def test_engines_have_every_member_of_engine(engine):
    missing = {n for n in members(Engine) if not hasattr(engine, n)}
    assert members(Engine) >= {"train_step", "predictor", "num_params", "name"}
    assert not missing, f"{engine.__name__} lacks {sorted(missing)}"


@pytest.mark.parametrize("missing", ["step", "octave"])
def test_a_note_without_step_or_octave_is_refused_with_a_value_error(missing):
    # was TypeError/AttributeError (int(None), None.strip()); a score with such a note is
    # counted unreadable either way, and a ValueError says which element is missing
    pitch = "".join(f"<{k}>{v}</{k}>" for k, v in (("step", "C"), ("octave", "4")) if k != missing)
    note = ET.fromstring(f"<note><pitch>{pitch}</pitch></note>")
    with pytest.raises(ValueError, match=f"<note> has no <pitch/{missing}>"):
        midi_pitch(note)
