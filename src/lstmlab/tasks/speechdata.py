"""A speech corpus made offline (`lstmlab prepare speech`): spoken digit strings and short
command phrases, synthesized by eSpeak NG (tasks.espeak) across English accents and speaker
variants, rates and pitches, with white or babble noise and a little reverberation, as
40 log-mel bands every 10 ms (librosa).

Train, validation and test are split by speaker: each speaker variant of eSpeak NG
(voices/!v: "f3", "m7", "klatt2", ...) belongs to one split, so the test speakers are never
heard in training; accents are shared. What each utterance says and how it is spoken and
degraded draws from its own random stream of (seed, split, index). eSpeak NG itself carries
state from one utterance to the next (its pitch flutter runs on), so a corpus is made in one
pass, in order, in a process that has synthesized nothing before (as `lstmlab prepare speech`
and `lstmlab train speech` do): then the same (size, seed) gives the same utterances, bit
for bit except those of speakers with breath noise (whisper, f2, ...), which eSpeak NG draws
from a source no seed reaches (measured: 6 of 40 utterances differ between two makings).
It is made once and cached in its folder:

    FOLDER/corpus.json   what each utterance says and how it was made (voice, rate, pitch,
                         noise, SNR, reverberation), its split, and where its frames lie
    FOLDER/logmel.npy    (frames, 40) float16: every utterance's log-mel frames, one after
                         another (np.load(..., mmap_mode="r") reads it without loading it)
    FOLDER/examples/     a few test utterances as WAV files, to try `lstmlab transcribe`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

VERSION = 1
SAMPLE_RATE = 16_000                   # what the features are computed at
HOP = 160                              # 10 ms
WINDOW = 400                           # 25 ms
N_FFT = 512
N_MELS = 40
ALPHABET = " abcdefghijklmnopqrstuvwxyz"   # what a transcript holds; CTC's blank is id 0

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NAMES = ("alice", "bob", "carol", "david", "emma", "frank", "grace", "henry", "olivia", "sophia")
THINGS = ("lights", "kitchen light", "heating", "radio", "television", "fan")
OPENABLE = ("door", "window", "garage", "curtains")
CITIES = ("london", "paris", "berlin", "madrid", "boston", "tokyo")
DIRECTIONS = ("left", "right", "forward", "back", "up", "down")
NUMBERS = DIGITS[1:] + ("ten", "eleven", "twelve", "fifteen", "twenty", "thirty", "forty", "fifty")
TEMPLATES = (
    "turn on the {thing}", "turn off the {thing}", "open the {openable}", "close the {openable}",
    "call {name}", "send a message to {name}", "play some music", "stop", "pause", "next song",
    "set a timer for {number} minutes", "wake me up at {digit}", "what is the weather in {city}",
    "go {direction}", "move {direction} {number} steps", "remind {name} at {digit}",
)
LEVELS = ("digits", "phrases")

# the splits' speakers: a fixed shuffle of eSpeak NG's variants (not the seed's: every corpus
# holds out the same speakers), then the first TEST_SPEAKERS test, the next VALID_SPEAKERS
# validate, the rest (and each accent's own voice, "default") train
TEST_SPEAKERS, VALID_SPEAKERS = 20, 10
ACCENTS = ("en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-gb-x-rp", "en-us", "en-us-nyc")
SPLITS = ("train", "valid", "test")


def speakers() -> dict[str, list[str]]:
    """{"train": [...], "valid": [...], "test": [...]}: eSpeak NG's speaker variants by split."""
    from .espeak import variants

    names = variants()
    order = np.random.default_rng(20_241_201).permutation(len(names))
    shuffled = [names[k] for k in order]
    test, valid = shuffled[:TEST_SPEAKERS], shuffled[TEST_SPEAKERS:TEST_SPEAKERS + VALID_SPEAKERS]
    train = ["default"] + shuffled[TEST_SPEAKERS + VALID_SPEAKERS:]
    return {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}


def utterance_text(rng: np.random.Generator, level: str) -> str:
    """A digit string of 1 to 7 digits (0 said "zero" or "oh") or a command phrase."""
    if level == "digits":
        n = int(rng.integers(1, 8))
        words = [DIGITS[d] if d or rng.random() < 0.5 else "oh" for d in rng.integers(0, 10, n)]
        return " ".join(words)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    pick = {k: v[int(rng.integers(len(v)))] for k, v in (
        ("thing", THINGS), ("openable", OPENABLE), ("name", NAMES), ("number", NUMBERS),
        ("digit", DIGITS[1:]), ("city", CITIES), ("direction", DIRECTIONS))}
    return template.format(**pick)


@dataclass(frozen=True)
class Utterance:
    """How one utterance is made: all drawn from its own stream (see draw)."""
    split: str
    level: str
    text: str
    accent: str
    speaker: str
    rate: int              # words per minute
    pitch: int             # 0-100
    pitch_range: int       # 0-100
    noise: str             # "none", "white" or "babble"
    snr: float             # dB, for noise
    reverb: float          # seconds to fall 60 dB (0: dry)


def draw(seed: int, split: str, index: int, voices: list[str]) -> Utterance:
    """Utterance `index` of `split`: a pure function of its arguments."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    level = LEVELS[index % 2]
    noise = ("none", "white", "babble")[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
    return Utterance(
        split=split, level=level, text=utterance_text(rng, level),
        accent=ACCENTS[int(rng.integers(len(ACCENTS)))], speaker=voices[int(rng.integers(len(voices)))],
        rate=int(rng.integers(120, 261)), pitch=int(rng.integers(20, 81)),
        pitch_range=int(rng.integers(20, 81)), noise=noise,
        snr=float(rng.uniform(10, 30) if noise == "white" else rng.uniform(5, 20)),
        reverb=float(rng.uniform(0.1, 0.4)) if rng.random() < 0.3 else 0.0)


def speak(u: Utterance, seed: int = 1) -> np.ndarray:
    """The clean utterance at SAMPLE_RATE, float32 (seed: eSpeak NG's noise sources')."""
    import librosa

    from .espeak import SAMPLE_RATE as ESPEAK_RATE
    from .espeak import say

    wave = say(u.text, u.accent, None if u.speaker == "default" else u.speaker, u.rate, u.pitch,
               u.pitch_range, seed)
    return librosa.resample(wave, orig_sr=ESPEAK_RATE, target_sr=SAMPLE_RATE, res_type="soxr_hq")


def degrade(wave: np.ndarray, u: Utterance, rng: np.random.Generator, babble: list[np.ndarray]) -> np.ndarray:
    """The utterance as a microphone in a room would take it: reverberation (an exponentially
    decaying noise impulse response), then white noise or babble (other speakers) at u.snr."""
    from scipy.signal import fftconvolve

    out = wave.astype(np.float64)
    if u.reverb > 0:
        n = int(u.reverb * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        ir = rng.normal(size=n) * np.exp(-6.9 * t / u.reverb)      # -60 dB at t = reverb
        ir[0] = 1.0 / 0.3                                            # the direct sound leads
        out = fftconvolve(out, ir)[:out.size]
        out *= np.sqrt((wave.astype(np.float64) ** 2).sum() / max((out ** 2).sum(), 1e-12))
    if u.noise != "none":
        if u.noise == "white":
            noise = rng.normal(size=out.size)
        else:
            noise = np.zeros(out.size)
            for _ in range(3):
                src = babble[int(rng.integers(len(babble)))]
                start = int(rng.integers(max(1, src.size - out.size)))
                piece = src[start:start + out.size]
                noise[:piece.size] += piece
        power = (out ** 2).mean()
        noise *= np.sqrt(power / max((noise ** 2).mean(), 1e-12) / 10 ** (u.snr / 10))
        out = out + noise
    return np.clip(out, -1.0, 1.0).astype(np.float32)


@cache
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=20, fmax=7600)


def logmel(wave: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) float32: the natural log of a 40-band mel power spectrogram, a 25 ms
    window every 10 ms (librosa's STFT and mel filters)."""
    import librosa

    spec = np.abs(librosa.stft(wave.astype(np.float32), n_fft=N_FFT, hop_length=HOP, win_length=WINDOW))
    return np.log(_mel_basis() @ (spec * spec) + 1e-6).T.astype(np.float32)


def with_deltas(frames: np.ndarray) -> np.ndarray:
    """(T, 40) log-mel frames with their first differences over time (librosa's delta,
    Savitzky-Golay over 9 frames): (T, 80)."""
    import librosa

    if frames.shape[0] < 3:
        return np.concatenate([frames, np.zeros_like(frames)], axis=1)
    width = min(9, frames.shape[0] - (1 - frames.shape[0] % 2))
    d = librosa.feature.delta(frames.T, width=width, mode="nearest").T
    return np.concatenate([frames, d], axis=1).astype(np.float32)


def _babble(seed: int, split: str, voices: list[str], n: int = 12) -> list[np.ndarray]:
    """Sentences spoken by the split's own speakers, the babble mixed under its utterances."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 10**9])
    out = []
    for k in range(n):
        words = [utterance_text(rng, LEVELS[k % 2]) for _ in range(3)]
        u = Utterance(split, "phrases", " ".join(words), ACCENTS[k % len(ACCENTS)],
                      voices[int(rng.integers(len(voices)))], int(rng.integers(140, 220)), 50, 50,
                      "none", 0.0, 0.0)
        out.append(speak(u, seed * 1000 + k))
    return out


def sizes(size: int) -> dict[str, int]:
    """Utterances per split for a corpus of `size` training utterances."""
    return {"train": size, "valid": max(8, size // 16), "test": max(16, size // 8)}


def prepare(folder, size: int = 16000, seed: int = 0, examples: int = 6, progress=None) -> Path:
    """Make the corpus in `folder` (see the module's doc), or find it made: the same version,
    size and seed already there are read, not made again. progress(done, total) is called
    as utterances are made. Returns the folder."""
    folder = Path(folder)
    meta = folder / "corpus.json"
    if meta.exists():
        try:
            have = json.loads(meta.read_text())
        except (OSError, ValueError):
            have = {}
        if (have.get("version"), have.get("size"), have.get("seed")) == (VERSION, size, seed) \
                and (folder / "logmel.npy").exists():
            return folder
    import soundfile

    voices = speakers()
    counts = sizes(size)
    total = sum(counts.values())
    rows, blocks, offset, done = [], [], 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "examples").mkdir(exist_ok=True)
    for split in SPLITS:
        babble = _babble(seed, split, voices[split])
        for index in range(counts[split]):
            u = draw(seed, split, index, voices[split])
            rng = np.random.default_rng([seed, SPLITS.index(split), index, 1])
            wave = degrade(speak(u, int(rng.integers(2**31))), u, rng, babble)
            frames = logmel(wave)
            blocks.append(frames.astype(np.float16))
            rows.append({**u.__dict__, "offset": offset, "frames": frames.shape[0],
                         "seconds": round(wave.size / SAMPLE_RATE, 3)})
            offset += frames.shape[0]
            if split == "test" and index < examples:
                soundfile.write(folder / "examples" / f"test-{index}.wav", wave, SAMPLE_RATE)
            done += 1
            if progress is not None:
                progress(done, total)
    tmp = folder / "logmel.npy.part"
    with open(tmp, "wb") as f:
        np.save(f, np.concatenate(blocks), allow_pickle=False)
    tmp.replace(folder / "logmel.npy")
    info = {"version": VERSION, "size": size, "seed": seed, "sample_rate": SAMPLE_RATE, "hop": HOP,
            "window": WINDOW, "n_mels": N_MELS, "speakers": voices, "utterances": rows}
    part = folder / "corpus.json.part"
    part.write_text(json.dumps(info))
    part.replace(meta)                                          # last: a corpus.json means complete
    return folder


@dataclass
class Corpus:
    """A prepared corpus, read: its utterances (dicts, as corpus.json) and their frames."""
    folder: Path
    info: dict
    frames: np.ndarray                 # (all frames, N_MELS) float16, memory-mapped

    @classmethod
    def read(cls, folder) -> Corpus:
        folder = Path(folder)
        try:
            info = json.loads((folder / "corpus.json").read_text())
            frames = np.load(folder / "logmel.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{folder} holds no complete speech corpus ({e}); make it with "
                             f"lstmlab prepare speech --out {folder}") from None
        if info.get("version") != VERSION:
            raise ValueError(f"{folder} holds a speech corpus of another version; make it again with "
                             f"lstmlab prepare speech --out {folder}")
        return cls(folder, info, frames)

    def split(self, name: str) -> list[dict]:
        return [u for u in self.info["utterances"] if u["split"] == name]

    def logmel(self, u: dict) -> np.ndarray:
        """(frames, N_MELS) float32 of one utterance."""
        return np.asarray(self.frames[u["offset"]:u["offset"] + u["frames"]], np.float32)
