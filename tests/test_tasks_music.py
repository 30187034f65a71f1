"""The music task: the MusicXML reader on hand-written scores and on the chorales, the tokens,
the metrics and baselines against hand computation, bad input, a short run on both engines,
and generation into a MIDI file that reads back."""

import json
import shutil
import subprocess
import sys
import zipfile
from fractions import Fraction

import matplotlib.image
import numpy as np
import pytest

from lstmlab.config import TrainConfig
from lstmlab.tasks import TASKS, get_task
from lstmlab.tasks import music as M
from lstmlab.train import fit, load_run

F = Fraction


def _note(step, octave, dur, alter=0, voice=1, tie=(), chord=False, rest=False, grace=False):
    pitch = ("<rest/>" if rest else
             f"<pitch><step>{step}</step>{f'<alter>{alter}</alter>' if alter else ''}"
             f"<octave>{octave}</octave></pitch>")
    return ("<note>" + ("<grace/>" if grace else "") + ("<chord/>" if chord else "") + pitch
            + ("" if grace else f"<duration>{dur}</duration>")
            + "".join(f'<tie type="{t}"/>' for t in tie) + f"<voice>{voice}</voice></note>")


def _score(parts):
    """A <score-partwise> with parts {name: [measure xml, ...]}."""
    plist = "".join(f'<score-part id="P{k}"><part-name>{n}</part-name></score-part>'
                    for k, n in enumerate(parts))
    body = "".join(f'<part id="P{k}">' + "".join(f'<measure number="{m}">{x}</measure>'
                                                  for m, x in enumerate(ms)) + "</part>"
                   for k, ms in enumerate(parts.values()))
    return (f'<?xml version="1.0"?><score-partwise><part-list>{plist}</part-list>{body}'
            '</score-partwise>')


SOPRANO = [
    # divisions 2: a leading rest (dropped), C#5 eighth, B4 eighth tied into the next measure
    "<attributes><divisions>2</divisions></attributes>" + _note("", 0, 2, rest=True)
    + _note("C", 5, 1, alter=1) + _note("B", 4, 1, tie=("start",)),
    # the tie ends (B4 lasts 0.5 + 1), a chord (its top note G5 counts), a grace note (skipped),
    # then a second voice after <backup> (skipped)
    _note("B", 4, 2, tie=("stop",)) + _note("E", 5, 2) + _note("G", 5, 2, chord=True)
    + _note("D", 5, 0, grace=True) + _note("A", 4, 4)
    + "<backup><duration>8</duration></backup>" + _note("C", 4, 8, voice=2),
    # divisions change to 4: two rests in a row merge, Bb4 a half note, a trailing rest (dropped)
    "<attributes><divisions>4</divisions></attributes>" + _note("", 0, 4, rest=True)
    + "<forward><duration>4</duration><voice>1</voice></forward>"
    + _note("B", 4, 8, alter=-1) + _note("", 0, 4, rest=True),
]
EXPECTED = [(73, F(1, 2)), (71, F(3, 2)), (79, F(1)), (69, F(2)), (None, F(2)), (70, F(2))]


def _write_mxl(path, xml):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/container.xml", '<container><rootfiles>'
                   '<rootfile full-path="score.xml"/></rootfiles></container>')
        z.writestr("score.xml", xml)
    return path


def test_the_reader_follows_the_soprano_voice_ties_chords_and_rests(tmp_path):
    # the soprano is the second part: the first (a horn) must be passed over
    xml = _score({"Horn 1": [_note("C", 3, 16)], "Soprano": SOPRANO, "Bass": [_note("C", 2, 8)]})
    plain = tmp_path / "a.musicxml"
    plain.write_text(xml)
    for path in (_write_mxl(tmp_path / "a.mxl", xml), plain):   # zipped and plain MusicXML
        root = M.read_score(path)
        assert M.part_events(M.melody_part(root, first_if_none=False)) == EXPECTED
    no_soprano = M.read_score(_write_mxl(tmp_path / "b.mxl", _score({"Piano": SOPRANO})))
    assert M.melody_part(no_soprano, first_if_none=False) is None
    assert M.part_events(M.melody_part(no_soprano, first_if_none=True)) == EXPECTED


def test_the_chorales_are_read_deduplicated_and_split():
    task = get_task("music")
    c = task.corpus
    assert c.files == 410 and c.unreadable == 0 and c.no_melody == 1     # BWV 846, a piano prelude
    assert c.duplicates >= 8 and len(c.names) == c.files - c.no_melody - c.duplicates
    # BWV 66.6 begins C#5 B4 (eighths) A4 B4 C#5 E5 C#5 B4 A4 (quarters), as in its score
    events = c.melodies[c.names.index("bwv66.6.mxl")]
    assert M.format_events(events[:9]) == "C#5:0.5 B4:0.5 A4:1 B4:1 C#5:1 E5:1 C#5:1 B4:1 A4:1"
    idx = task.index
    n = len(c.names)
    assert sorted(idx["train"] + idx["valid"] + idx["test"]) == list(range(n))
    assert len(idx["test"]) == len(idx["valid"]) == round(0.1 * n)
    assert get_task("music", seed=5).index == idx            # a split of the data, not the seed
    lengths = [len(m) for m in c.melodies]
    assert 20 <= min(lengths) and 45 < np.mean(lengths) < 60


def test_tokens_round_trip_and_unknown_events():
    v = M.Vocabulary(60, 72, [F(1, 2), F(1), F(2)])
    events = [(60, F(1)), (None, F(2)), (72, F(1, 2)), (67, F(1))]
    ids = v.encode(events)
    assert ids.tolist() == [1 * 3 + 1, 0 * 3 + 2, 13 * 3 + 0, 8 * 3 + 1]
    assert v.decode(ids) == events
    assert v.decode(v.encode([(67, F(1)), (None, F(2))], shift=-5)) == [(62, F(1)), (None, F(2))]
    assert v.encode(events, shift=1).tolist()[2] == v.unknown       # C5 + 1 leaves the range
    assert v.encode([(64, F(3))]).tolist() == [v.unknown]           # a duration never seen
    assert v.encode([(None, F(3))]).tolist() == [v.unknown]
    assert (v.unknown, v.bos, v.size, v.n_out) == (42, 43, 44, 43)
    with pytest.raises(ValueError, match="not a note"):
        v.decode([v.unknown])
    assert M.parse_prompt("C4:1 D#4:0.5 Bb3:2 R:1 c5:1/2") == [
        (60, F(1)), (63, F(1, 2)), (58, F(2)), (None, F(1)), (72, F(1, 2))]
    assert M.format_events(M.parse_prompt("C#5:0.5 R:1.5 Bb3:2")) == "C#5:0.5 R:1.5 Bb3:2"


@pytest.mark.parametrize("prompt, expect", [("H4:1", "'H4:1' is not a note"),
                                            ("C4", "'C4' is not a note"),
                                            ("C4:0", "no duration"), ("   ", "empty")])
def test_bad_prompts_are_one_clear_line(prompt, expect):
    with pytest.raises(ValueError, match=expect):
        M.parse_prompt(prompt)


def test_metrics_match_hand_computation():
    v = M.Vocabulary(60, 61, [F(1), F(2)])       # pitches: rest, C4, C#4; ids 0..5, UNKNOWN 6
    p = np.full((3, 7), 0.02)
    p[0, 2] = 0.88                                # C4:1, the target: right
    p[1, 5] = 0.48                                # C#4:2 most likely, target C#4:1 (id 4) ...
    p[1, [2, 3]] = 0.20                           # ... C4 has 0.4 in all, C#4 0.5: pitch right
    p[2, 6] = 0.88                                # UNKNOWN target predicted: still a miss
    p /= p.sum(1, keepdims=True)
    y = np.array([2, 4, 6])
    m = M.score_events(np.log(p), y, v)
    assert m["nll"] == pytest.approx(-np.log(p[[0, 1, 2], y]).mean())
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["pitch_accuracy"] == pytest.approx(2 / 3)
    # durations: row 0 right (1 quarter); row 1: 2 quarters (0.48 + 0.02 + 0.20) beat 1
    assert m["duration_accuracy"] == pytest.approx(1 / 3)
    assert m["unknown_rate"] == pytest.approx(1 / 3)


def test_baselines_are_add_one_counts_from_training():
    task = get_task("music")
    V = task.vocab
    bigram, unigram = task._counts()
    train = task.tokens["train"]
    pairs = [(a, b) for s in train for a, b in zip(np.r_[V.bos, s[:-1]], s)]
    a, b = pairs[10]
    n_a = sum(1 for p, _ in pairs if p == a)
    n_ab = sum(1 for p in pairs if p == (a, b))
    assert np.exp(bigram[a, b]) == pytest.approx((n_ab + 1) / (n_a + V.n_out))
    n_b = sum(int(np.sum(s == b)) for s in train)
    assert np.exp(unigram[b]) == pytest.approx((n_b + 1) / (len(pairs) + V.n_out))
    base = task.baselines()
    assert set(base) == {"bigram", "unigram"}
    assert base["bigram"]["nll"] < base["unigram"]["nll"] < np.log(V.n_out)
    assert base["bigram"]["unknown_rate"] == base["unigram"]["unknown_rate"] > 0


def test_training_batches_are_pure_transposed_windows():
    task = get_task("music", transpose=2, window=16)
    b = task.train_batch(7, 8)
    again = task.train_batch(7, 8)
    assert np.array_equal(b.x, again.x) and np.array_equal(b.y, again.y)
    assert b.x.shape[0] <= 16 and np.all(b.lengths <= 16)
    V = task.vocab
    m = b.mask > 0
    assert np.array_equal(b.x[1:][m[1:]], b.y[:-1][m[1:]])      # y is x one step ahead
    assert np.all(b.y[m] != V.bos) and np.all(b.x[m] < V.size)
    p = V.pitch_of(b.y[m])
    assert p.max() > 0 and np.all(p < V.n_pitches)
    assert not np.array_equal(task.train_batch(8, 8).x, b.x)


@pytest.mark.parametrize("opts, expect", [
    ({"transpose": -1}, "transpose must be an integer between 0 and 12"),
    ({"window": "long"}, "window must be an integer"),
    ({"min_count": 0}, "min_count must be an integer at least 1"),
    ({"mood": "sad"}, "has no option"),
])
def test_option_mistakes(opts, expect):
    with pytest.raises(ValueError, match=expect):
        get_task("music", **opts)


def test_a_bad_folder_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        get_task("music", folder=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("C D E")
    with pytest.raises(ValueError, match="holds no .mxl, .musicxml or .xml files"):
        get_task("music", folder=str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mxl").write_bytes(b"\xff\xfe not a zip")
    (bad / "b.xml").write_bytes(b"<score-partwise><part")       # cut off
    (bad / "c.musicxml").write_text(_score({"Soprano": SOPRANO}))
    with pytest.raises(ValueError, match=r"1 of 3 files gave a melody \(2 unreadable"):
        get_task("music", folder=str(bad))


def _small_folder(folder, n=14):
    """n chorales copied from the built-in corpus: a user's folder."""
    src = M.builtin_folder()
    folder.mkdir()
    for name in sorted(p.name for p in src.glob("bwv2*.mxl"))[:n]:
        shutil.copy(src / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A short NumPy run on 14 chorales given as the user's folder."""
    tmp = tmp_path_factory.mktemp("music-small")
    task = get_task("music", folder=str(_small_folder(tmp / "chorales")), window=24, transpose=0)
    r = fit(task, task.model_config(hidden_size=16),
            TrainConfig(steps=100, batch_size=8, lr=2e-2, eval_every=25), tmp / "np",
            engine="numpy")
    return task, tmp / "np", r


def test_numpy_engine_learns_a_few_chorales(small_run):
    task, out, r = small_run
    assert len(task.index["train"]) == 12 and task.corpus.source.endswith("chorales")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [row["loss"] for row in rows if row["split"] == "train"]
    assert train[-1] < train[0] - 0.5                              # from ~ln 150 down
    assert r["metrics"]["test"]["nll"] < r["baselines"]["bigram"]["nll"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short torch run on the whole corpus."""
    out = tmp_path_factory.mktemp("music") / "run"
    task = get_task("music", window=32)
    r = fit(task, task.model_config(hidden_size=64),
            TrainConfig(steps=250, batch_size=32, lr=1e-2, eval_every=125), out, engine="torch")
    return out, r


def test_a_short_torch_run_beats_the_baselines_and_draws(trained):
    out, r = trained
    test, base = r["metrics"]["test"], r["baselines"]
    assert test["nll"] < base["bigram"]["nll"] - 0.2
    assert test["accuracy"] > base["bigram"]["accuracy"]
    assert test["pitch_accuracy"] > base["unigram"]["pitch_accuracy"]
    img = matplotlib.image.imread(out / "figures" / "piano_roll.png")
    assert img.shape[1] > 1000 and img[..., :3].std() > 0.05


def _midi_events(path):
    """(pitch or None, quarters) from a one-track MIDI file, rests from the gaps."""
    import mido

    mid = mido.MidiFile(path)
    events, on = [], None
    for msg in mid.tracks[0]:
        gap = F(msg.time, mid.ticks_per_beat)
        if msg.type == "note_on" and msg.velocity > 0:
            if gap:
                events.append((None, gap))
            on = msg.note
        elif msg.type in ("note_off", "note_on") and on is not None:
            events.append((on, gap))
            on = None
        elif msg.type == "end_of_track" and gap:
            events.append((None, gap))
    return events


def _merge_rests(events):
    out = []
    for p, d in events:
        if out and p is None and out[-1][0] is None:
            out[-1] = (None, out[-1][1] + d)
        else:
            out.append((p, d))
    return out


def test_generate_writes_a_midi_file_that_reads_back(trained, tmp_path):
    out, _ = trained
    task, predictor, _ = load_run(out)
    g = task.generate(predictor, tmp_path / "g", length=40, temperature=1.0, top_k=0,
                      prompt="A4:1 B4:0.5 C#5:0.5 R:1", seed=3)
    assert g["events"] == 40 and g["prompt_events"] == 4
    sampled = M.parse_prompt(g["notes"])
    assert len(sampled) == 40 and g["quarters"] == pytest.approx(float(sum(d for _, d in sampled)))
    assert _midi_events(g["midi"]) == _merge_rests(M.parse_prompt("A4:1 B4:0.5 C#5:0.5 R:1")
                                                   + sampled)
    img = matplotlib.image.imread(g["figure"])
    assert img.shape[1] > 1000
    again = task.generate(predictor, tmp_path / "h", length=40, temperature=1.0, top_k=0,
                          prompt="A4:1 B4:0.5 C#5:0.5 R:1", seed=3)
    assert again["notes"] == g["notes"]                            # the seed decides
    greedy = task.generate(predictor, tmp_path / "k", length=10, temperature=1e-3, top_k=1,
                           prompt=None, seed=0)
    other = task.generate(predictor, tmp_path / "l", length=10, temperature=1e-3, top_k=1,
                          prompt=None, seed=1)
    assert greedy["notes"] == other["notes"]                       # top 1: no chance left
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        task.generate(predictor, tmp_path / "m", length=5, temperature=1.0, top_k=0,
                      prompt="C1:1", seed=0)


def test_the_cli_generates_and_rejects_a_bad_prompt(small_run, tmp_path):
    _, out, _ = small_run
    run = [sys.executable, "-m", "lstmlab", "generate", str(out), "--length", "12",
           "--out", str(tmp_path / "cli"), "--json"]
    ok = subprocess.run(run, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    g = json.loads(ok.stdout)
    assert g["events"] == 12 and (tmp_path / "cli" / "generated.mid").is_file()
    bad = subprocess.run(run + ["--prompt", "C4:1 X9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "X9" in bad.stdout + bad.stderr


def test_the_task_is_registered():
    assert TASKS["music"] is M.Music and M.Music.defaults.engine == "torch"
