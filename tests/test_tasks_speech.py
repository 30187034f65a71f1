"""The speech task: eSpeak NG through ctypes, the corpus (deterministic, split by speaker),
CTC decoding and error rates against hand computation, both engines on the CTC loss, a
short run that learns, transcribe and its mistakes."""

import json
import shutil

import numpy as np
import pytest

from lstmlab.config import ModelConfig, TrainConfig
from lstmlab.tasks import espeak, get_task, speechdata
from lstmlab.tasks.speech import (
    ALPHABET,
    Lexicon,
    align,
    beam_search,
    encode_text,
    error_rates,
    greedy,
    spec_augment,
    stack_frames,
)
from lstmlab.train import fit

from .conftest import lstmlab, one_line_error

TINY = 24                                                       # training utterances


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return speechdata.prepare(tmp_path_factory.mktemp("speech") / "corpus", size=TINY, seed=0)


def test_espeak_speaks_every_english_accent_and_refuses_an_unknown_voice():
    accents = espeak.english_voices()
    assert set(speechdata.ACCENTS) <= set(accents) and "en-us" in accents
    a = espeak.say("seven three nine", "en-us")
    b = espeak.say("seven three nine", "en-us", "f3")
    assert a.dtype == np.float32 and 0.6 < a.size / espeak.SAMPLE_RATE < 3.0
    assert np.abs(a).max() <= 1.0 and np.sqrt((a ** 2).mean()) > 0.01   # sound, not silence
    assert a.size != b.size or not np.array_equal(a, b)         # another speaker
    again = espeak.say("seven three nine", "en-us")             # eSpeak's pitch flutter runs on
    assert abs(again.size - a.size) < 0.01 * a.size              # from call to call: nearly the same
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        espeak.say("one", "xx-nowhere")
    with pytest.raises(ValueError, match="give a text"):
        espeak.say("  ")


def test_speakers_are_split_and_never_shared():
    s = speechdata.speakers()
    assert len(s["test"]) == speechdata.TEST_SPEAKERS and len(s["valid"]) == speechdata.VALID_SPEAKERS
    assert not set(s["test"]) & set(s["train"]) and not set(s["valid"]) & set(s["train"])
    assert not set(s["test"]) & set(s["valid"])
    assert len(s["train"]) + len(s["valid"]) + len(s["test"]) == len(espeak.variants()) + 1


def test_the_corpus_is_a_function_of_size_and_seed(corpus, tmp_path):
    c = speechdata.Corpus.read(corpus)
    us = c.info["utterances"]
    assert [len(c.split(s)) for s in speechdata.SPLITS] == [TINY, 8, 16]
    speakers = speechdata.speakers()
    assert all(u["speaker"] in speakers[u["split"]] for u in us)
    assert {u["level"] for u in us} == {"digits", "phrases"}
    assert all(set(u["text"]) <= set(ALPHABET) for u in us)
    assert sum(u["frames"] for u in us) == c.frames.shape[0] and c.frames.shape[1] == speechdata.N_MELS
    # found made: not made again
    stamp = (corpus / "logmel.npy").stat().st_mtime_ns
    speechdata.prepare(corpus, size=TINY, seed=0)
    assert (corpus / "logmel.npy").stat().st_mtime_ns == stamp


def test_a_fresh_process_makes_the_same_corpus(tmp_path):
    """The same utterances, spoken and degraded alike; bit for bit except where eSpeak NG
    mixes in breath noise (whisper, f2, ...), which it draws from a source no seed reaches."""
    made = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        r = lstmlab("prepare", "speech", "--size", 16, "--seed", seed, "--out", tmp_path / name, "--json")
        assert r.returncode == 0, r.stderr
        made.append((np.load(tmp_path / name / "logmel.npy"),
                     json.loads((tmp_path / name / "corpus.json").read_text())["utterances"]))
    (a, ua), (b, ub), (_, uc) = made
    assert ua == ub and uc != ua                                 # another seed: other utterances
    same = [np.array_equal(a[u["offset"]:u["offset"] + u["frames"]], b[u["offset"]:u["offset"] + u["frames"]])
            for u in ua]
    assert np.mean(same) >= 0.75, same


def test_noise_sets_the_signal_to_noise_ratio():
    wave = np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.3
    u = speechdata.Utterance("train", "digits", "one", "en", "f1", 160, 50, 50, "white", 10.0, 0.0)
    noisy = speechdata.degrade(wave, u, np.random.default_rng(0), [])
    snr = 10 * np.log10((wave.astype(np.float64) ** 2).sum() / ((noisy - wave) ** 2).sum())
    assert snr == pytest.approx(10.0, abs=0.05)


def test_greedy_and_beam_decoding_by_hand():
    V = len(ALPHABET) + 1
    a, b = ALPHABET.index("a") + 1, ALPHABET.index("b") + 1

    def scores(path):
        lp = np.full((len(path), V), np.log(0.01 / (V - 1)))
        lp[np.arange(len(path)), path] = np.log(0.99)
        return lp

    text, steps = greedy(scores([a, a, 0, a, b, b, 0]))
    assert (text, steps) == ("aab", [0, 3, 4])
    assert align(scores([a, a, 0, a, b, b, 0]), "aab") == [0, 3, 4]   # the best path's own
    first, second = align(scores([a, a, 0, a, b, b, 0]), "ab")   # one step must disagree: a tie
    assert first == 0 and second in (3, 4)
    assert align(scores([a, 0]), "aaa") == []                   # a a a needs 5 steps
    assert beam_search(scores([a, a, 0, a, b, b, 0]), 4) == "aab"
    # two frames: the best single path is blank-blank (0.36) but "a" has 0.64 over its paths
    lp = np.log(np.full((2, V), 1e-9))
    lp[:, 0], lp[:, a] = np.log(0.6), np.log(0.4)
    assert greedy(lp)[0] == "" and beam_search(lp, 4) == "a"


def test_a_lexicon_keeps_the_beam_to_its_words():
    V = len(ALPHABET) + 1
    ids = {ch: ALPHABET.index(ch) + 1 for ch in ALPHABET}
    lp = np.log(np.full((3, V), 1e-6))                           # "t", then "a" or "o", then "p"
    lp[0, ids["t"]] = np.log(0.9)
    lp[1, ids["a"]], lp[1, ids["o"]] = np.log(0.6), np.log(0.3)
    lp[2, ids["p"]] = np.log(0.9)
    assert greedy(lp)[0] == "tap" and beam_search(lp, 8) == "tap"
    words = Lexicon(["top", "tip", "to"])
    assert beam_search(lp, 8, lexicon=words) == "top"            # "tap" is no word: not spelt
    assert words.allows((ids["t"],), ids["o"]) and not words.allows((ids["t"],), ids["a"])
    assert words.allows((ids["t"], ids["o"]), ids[" "]) and not words.allows((ids["t"],), ids[" "])
    assert words.complete(()) and not words.complete((ids["t"], ids["w"]))
    assert Lexicon.of(["call bob", "stop"]).words == {"call", "bob", "stop"}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lexicon", [None, ("ab", "b", "ba", "bab")], ids=["free", "lexicon"])
def test_a_beam_wide_enough_finds_the_most_probable_text(seed, lexicon):
    """Keeping every prefix, the beam search is exact: the text whose alignments (all 4^6
    paths, each collapsed) add up to the most probability, among the texts the lexicon spells."""
    import itertools

    rng = np.random.default_rng(seed)
    logp = np.log(rng.dirichlet(np.full(4, 0.7), size=6))       # blank, " ", "a", "b"
    words = Lexicon(lexicon) if lexicon else None
    total: dict[str, float] = {}
    for path in itertools.product(range(4), repeat=6):
        labels = [k for j, k in enumerate(path) if k and (j == 0 or k != path[j - 1])]
        text = "".join(ALPHABET[k - 1] for k in labels)
        if words is None or all(w in words.words for w in text.split(" ")) or not text:
            total[text] = total.get(text, 0.0) + float(np.exp(logp[np.arange(6), path].sum()))
    assert beam_search(logp, 4**6, lexicon=words) == max(total, key=total.__getitem__)


def test_error_rates_by_hand():
    r = error_rates(["one two", "three"], ["one too", "three"])
    assert r["cer"] == pytest.approx(1 / 12) and r["wer"] == pytest.approx(1 / 3)
    assert encode_text("ab ").tolist() == [2, 3, 1]
    with pytest.raises(ValueError, match="transcript holds only"):
        encode_text("A1")


def test_stacked_frames():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    s = stack_frames(x, 2)
    assert s.shape == (3, 4) and s[0].tolist() == [0, 1, 2, 3] and s[2].tolist() == [8, 9, 0, 0]


def test_spec_augment_masks_bands_and_spans_in_both_halves():
    f = np.ones((100, 80), np.float32)
    spec_augment(f, np.random.default_rng(3), bands=1, band_width=6, spans=1, span_width=15)
    bands = np.nonzero((f[:, :40] == 0).all(0))[0]
    frames = np.nonzero((f == 0).all(1))[0]
    assert np.array_equal(np.nonzero((f[:, 40:] == 0).all(0))[0], bands)   # the band's deltas too
    assert len(bands) <= 6 and len(frames) <= 15 and (f == 0).any()
    assert np.all(np.diff(bands) == 1) and np.all(np.diff(frames) == 1)    # runs, not scatter
    assert set(np.unique(f)) <= {0.0, 1.0}


def test_batches_fit_their_labels(corpus):
    task = get_task("speech", corpus=str(corpus), size=TINY)
    b = task.train_batch(1, 6)
    T, B, F = b.x.shape
    assert (B, F) == (6, 80 * 3) and b.y.shape[0] == 6 and T == b.lengths.max()
    assert np.all(b.target_lengths <= b.lengths)                 # CTC can align every target
    assert np.all(b.y[np.arange(b.y.shape[1])[None, :] < b.target_lengths[:, None]] > 0)
    assert np.array_equal(b.x, task.train_batch(1, 6).x)        # a pure function of the step
    every = np.concatenate([task.standardised(f) for f in task._frames("train")]).astype(np.float64)
    assert np.allclose(every.mean(0), 0, atol=1e-3) and np.allclose(every.std(0), 1, atol=1e-3)
    quiet = get_task("speech", corpus=str(corpus), size=TINY, specaugment=False)
    assert not np.array_equal(b.x, quiet.train_batch(1, 6).x)    # masked
    assert np.array_equal(quiet.train_batch(2, 6).x, quiet._batch("train", _batch_of(quiet, 2, 6))[0])


def test_batches_hold_utterances_of_similar_length(corpus):
    """Each pass reads every training utterance once; bucketed by length, a batch's padding
    is a fraction of random batches' (bucket=1)."""
    def padding(task):
        pads = []
        for step in range(1, 5):                                 # one pass: 4 batches of 6
            b = task.train_batch(step, 6)
            pads.append(1 - b.lengths.sum() / b.lengths.size / b.x.shape[0])
        return np.mean(pads)

    bucketed, random = (get_task("speech", corpus=str(corpus), size=TINY, bucket=k) for k in (50, 1))
    for task in (bucketed, random):
        seen = np.concatenate([_batch_of(task, step, 6) for step in range(1, 5)])
        assert sorted(seen.tolist()) == list(range(TINY))
        assert not np.array_equal(seen, np.concatenate([_batch_of(task, s, 6) for s in range(5, 9)]))
    assert padding(bucketed) < 0.5 * padding(random)
    with pytest.raises(ValueError, match="bucket must be an integer at least 1"):
        get_task("speech", corpus=str(corpus), size=TINY, bucket=0)


def test_both_engines_take_the_same_ctc_steps(corpus):
    from lstmlab.train.engines import make_engine

    task = get_task("speech", corpus=str(corpus), size=TINY, stack=4)
    cfg = ModelConfig(**{**task.model_config(hidden_size=8, bidirectional=True).__dict__, "dtype": "float64"})
    train = TrainConfig(steps=3, batch_size=4, lr=1e-2, clip=5.0)
    engines = [make_engine(e, cfg, train, "ctc") for e in ("numpy", "torch")]
    for step in (1, 2, 3):
        batch = task.train_batch(step, 4)
        losses = [eng.train_step(batch, 1e-2, None, step)[0] for eng in engines]
        assert losses[0] == pytest.approx(losses[1], rel=1e-9)
    assert 0 < losses[0] < 20


def test_a_short_run_learns_and_transcribes(corpus, tmp_path):
    task = get_task("speech", corpus=str(corpus), size=TINY)
    r = fit(task, task.model_config(hidden_size=32, num_layers=1, bidirectional=True),
            TrainConfig(steps=60, batch_size=8, lr=5e-3, eval_every=20, clip=5.0), tmp_path / "run",
            engine="torch")
    train = [m["loss"] for m in _metrics(tmp_path / "run") if m.get("split") == "train"]
    valid = [m["loss"] for m in _metrics(tmp_path / "run") if m.get("split") == "valid"]
    assert len(train) == 3 and train[-1] < 0.8 * train[0]        # the CTC loss falls
    assert valid[-1] < valid[0]
    test, base = r["metrics"]["test"], r["baselines"]
    assert {"cer", "wer", "cer_digits", "wer_phrases", "cer_greedy", "wer_phrases_greedy"} <= set(test)
    assert set(base) == {"majority", "frames_ctc"} and 0 < base["majority"]["cer"] <= 1.5

    wav = tmp_path / "stereo.wav"                                # 44.1 kHz, two channels
    import librosa
    import soundfile

    mono = librosa.resample(espeak.say("four two", "en-us"), orig_sr=espeak.SAMPLE_RATE, target_sr=44100)
    soundfile.write(wav, np.stack([mono, mono * 0.5], axis=1), 44100)
    r = lstmlab("transcribe", tmp_path / "run", "--wav", wav, "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and 0.4 < out["seconds"] < 3 and set(out["text"]) <= set(ALPHABET)
    lexicon = json.loads((tmp_path / "run" / "preprocessing.json").read_text())["lexicon"]
    assert set(out["text"].split()) <= set(lexicon)              # the beam spells the lexicon's words
    assert [w["word"] for w in out["words"]] == out["text"].split()
    assert all(0 <= w["start"] < w["end"] <= out["seconds"] + 0.1 for w in out["words"])

    (tmp_path / "empty.wav").write_bytes(b"")
    soundfile.write(tmp_path / "silent.wav", np.zeros(0, np.float32), 16000)
    for bad, said in [(tmp_path / "empty.wav", "not a sound file"), (tmp_path / "silent.wav", "no samples"),
                      (tmp_path / "missing.wav", "does not exist")]:
        assert said in one_line_error(lstmlab("transcribe", tmp_path / "run", "--wav", bad))


def test_prepare_and_transcribe_mistakes_are_one_line(corpus, tmp_path):
    assert "nothing to prepare" in one_line_error(lstmlab("prepare", "sine"))
    assert "unknown task" in one_line_error(lstmlab("prepare", "speach"))
    assert "--size must be" in one_line_error(lstmlab("prepare", "speech", "--size", "3", "--out", tmp_path))
    broken = tmp_path / "broken"
    shutil.copytree(corpus, broken)
    (broken / "logmel.npy").write_bytes(b"not an array")
    assert "lstmlab prepare speech" in one_line_error(
        lstmlab("train", "speech", "-o", f"corpus={broken}", "--out", tmp_path / "run"))


@pytest.fixture(scope="module")
def heard(corpus, tmp_path_factory):
    """A short one-directional run (a model that can hear a stream) in a runs folder."""
    runs = tmp_path_factory.mktemp("runs")
    task = get_task("speech", corpus=str(corpus), size=TINY)
    fit(task, task.model_config(hidden_size=16, num_layers=1, bidirectional=False),
        TrainConfig(steps=20, batch_size=8, lr=5e-3, eval_every=20, clip=5.0), runs / "heard",
        engine="torch")
    return runs / "heard"


def test_inspect_draws_the_gates_over_the_spectrogram(heard, corpus, tmp_path):
    from lstmlab import inspect as ins

    r = lstmlab("inspect", heard, "--example", 1, "--out", tmp_path / "ins", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    drawn = {"gates_l0", "saturation", "timescales", "gradient_flow", "connectivity"}
    assert drawn <= set(summary["figures"])
    assert "text" not in summary["figures"]                      # audio is not a text to colour
    assert summary["numbers"]["top_units"]["position"]           # units that follow time
    subject = ins.open_subject(heard)
    task = subject.task
    x = ins.inputs_of(subject, 1)
    image, per_step, label = task.input_picture(x.x[:, 0])
    u = speechdata.Corpus.read(corpus).split("test")[1]
    frames = task.standardised(speechdata.with_deltas(speechdata.Corpus.read(corpus).logmel(u)))
    assert per_step == 3 and label == "log-mel band" and image.shape == (40, 3 * x.length())
    assert np.allclose(image[:, :frames.shape[0]], frames[:, :40].T, atol=1e-6)   # the bands heard
    sat = ins.saturation(subject)
    assert set(sat.to_json()["groups"]["l0"]) == {"i", "f", "o"}


def test_a_one_directional_model_hears_an_utterance_step_by_step(heard, tmp_path):
    from lstmlab import inspect as ins
    from lstmlab.inspect.stream import Stream

    subject = ins.open_subject(heard)
    frames, said = subject.task.stream_frames(2)
    assert said == subject.task.corpus.split("test")[2]["text"] and frames[0].shape == (240,)
    steps = Stream(subject).step_many(frames)
    whole = ins.activations(subject, 2)
    for name in ("f", "c", "h"):                                 # the stream is the whole read
        assert np.allclose([s.groups["l0"][name] for s in steps], whole.groups["l0"][name][:len(frames), 0],
                           atol=1e-5)
    p = steps[-1].prediction
    assert len(p) == 3 and {"char", "p"} <= set(p[0]) and p[0]["p"] >= p[1]["p"] >= p[2]["p"]
    with pytest.raises(ValueError, match="past the test split"):
        subject.task.stream_frames(10**6)
    with pytest.raises(ValueError, match="numbers, the model reads 240"):
        Stream(subject).step([0.5])


def test_the_lab_hears_a_test_utterance_and_shows_its_spectrogram(heard):
    from starlette.testclient import TestClient

    from lstmlab.serve.app import create_app

    client = TestClient(create_app(heard.parent))
    r = client.post("/api/inspect", json={"run": "heard", "analysis": "activations", "input": 0, "steps": 20})
    assert r.status_code == 200, r.text
    pic = r.json()["picture"]
    assert len(pic["image"]) == 40 and len(pic["image"][0]) == 3 * len(r.json()["steps"]) == 60
    with client.websocket_connect("/ws/stream?run=heard") as ws:
        layout = ws.receive_json()
        assert layout["kind"] == "audio" and layout["head"][1] == "loudness"
        ws.send_json({"type": "config", "example": 0, "speed": 120})
        assert ws.receive_json() == {"type": "reset"}
        utterance = ws.receive_json()
        frames, said = [], ""
        while len(frames) < utterance["steps"]:
            msg = ws.receive()
            if msg.get("bytes") is not None:
                frames.append(np.frombuffer(msg["bytes"], "<f4"))
            else:
                m = json.loads(msg["text"])
                assert m["type"] == "heard" and m["text"] == said + m["char"]
                said = m["text"]
        assert utterance["type"] == "utterance" and utterance["text"]
        assert [int(f[0]) for f in frames] == list(range(len(frames)))
        assert all(0 <= f[2] <= 1 for f in frames)               # P(a character this step)
        ws.send_json({"type": "config", "example": 10**6})
        msg = ws.receive_json()
        if msg["type"] == "heard":          # the last frame's character follows its frame
            assert msg["t"] == utterance["steps"] - 1
            msg = ws.receive_json()
        assert msg["type"] == "error" and "past the test split" in msg["error"]


def test_transcribe_reads_every_sample_format_and_refuses_what_it_cannot(heard, tmp_path):
    import soundfile

    from lstmlab import inspect as ins

    subject = ins.open_subject(heard)
    wave = espeak.say("nine one two", "en-us")                  # float32 at 22,050 Hz
    texts = {}
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        path = tmp_path / f"{subtype}.wav"
        soundfile.write(path, wave, espeak.SAMPLE_RATE, subtype=subtype)
        out = subject.task.predict_file(subject.predictor, path)
        assert out["seconds"] == pytest.approx(wave.size / espeak.SAMPLE_RATE, abs=0.04), subtype
        texts[subtype] = out["text"]
    assert texts["PCM_24"] == texts["PCM_32"] == texts["FLOAT"] == texts["DOUBLE"]   # the same sound
    soundfile.write(tmp_path / "quiet.wav", np.zeros(8000, np.float32), 16000)
    quiet = subject.task.predict_file(subject.predictor, tmp_path / "quiet.wav")
    assert quiet["seconds"] == pytest.approx(0.5, abs=0.04) and set(quiet["text"]) <= set(ALPHABET)
    soundfile.write(tmp_path / "slow.wav", wave[:2000], 2000)   # a rate speech is not heard at
    bad = wave.copy()
    bad[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", bad, espeak.SAMPLE_RATE, subtype="FLOAT")
    (tmp_path / "text.wav").write_text("RIFF, but a letter, not a recording")
    for name, said in [("slow.wav", "2000 Hz, which cannot be resampled"), ("nan.wav", "not numbers"),
                       ("text.wav", "not a sound file")]:
        assert said in one_line_error(lstmlab("transcribe", heard, "--wav", tmp_path / name)), name


def test_the_missing_speech_extra_names_its_pip_command(tmp_path):
    """As on a core install: the audio library is missing; the command names the extra."""
    import os
    import subprocess
    import sys

    missing = "raise ModuleNotFoundError(\"No module named 'librosa'\", name='librosa')"
    (tmp_path / "librosa.py").write_text(missing)
    r = subprocess.run([sys.executable, "-m", "lstmlab", "prepare", "speech", "--size", "16", "--out",
                        str(tmp_path / "corpus")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert "pip install 'lstmlab[speech]'" in one_line_error(r)


def _batch_of(task, step, n) -> np.ndarray:
    """The training utterances of step's batch."""
    return np.asarray(task.epochs.batch(step, n))


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
