"""Minimal ctypes wrapper over the libespeak-ng shipped by ``espeakng-loader``.

Only what the synthetic corpus generator needs is exposed: synthesise a text
with a voice (``"en-us+m3"``: language voice + variant), speaking rate, pitch,
pitch range and volume, and get the waveform back as a float32 numpy array at
espeak's native sample rate (22050 Hz).

The library is initialised once per process, in synchronous mode, with a synth
callback that collects the samples. espeak-ng keeps hidden synthesis state
between calls (pitch-flutter phase, automatic gain control, glottal cycle
counter, random generators), so the same call made twice in one process does
not give the same samples. To make the output a pure function of the
arguments, each synthesis runs by default in a short-lived ``fork()`` of the
calling process, whose espeak state is the pristine post-initialisation one;
the samples come back through a pipe (about 15 ms per call in all).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["EspeakError", "available_variants", "synthesize", "sample_rate"]

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flags from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_ESPEAK_WORDGAP = 7
_EE_OK = 0

_FIX = "pip install espeakng-loader"

# int (t_espeak_callback)(short *wav, int numsamples, espeak_EVENT *events)
_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(RuntimeError):
    """Raised when libespeak-ng cannot be loaded or fails to synthesise."""


@dataclass
class _State:
    lib: ctypes.CDLL
    libc: Optional[ctypes.CDLL]
    data_path: str
    sample_rate: int
    callback: object  # keeps the ctypes callback alive
    chunks: List[np.ndarray]


_STATE: Optional[_State] = None
_LOCK = threading.RLock()


def _load() -> _State:
    """Load and initialise libespeak-ng (once per process)."""
    global _STATE
    with _LOCK:
        if _STATE is None:
            _STATE = _init()
        return _STATE


def _init() -> _State:
    """Load libespeak-ng, declare the prototypes used and initialise it."""
    try:
        import espeakng_loader  # type: ignore
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise EspeakError(
            f"espeakng_loader is not installed; fix: `{_FIX}`"
        ) from e
    try:
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(lib_path)
    except (OSError, RuntimeError) as e:  # pragma: no cover
        raise EspeakError(
            f"cannot load libespeak-ng from espeakng_loader ({e}); "
            f"fix: `{_FIX}` (or reinstall it)"
        ) from e

    lib.espeak_Initialize.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
    ]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0
    )
    if rate <= 0:
        raise EspeakError(
            f"espeak_Initialize failed (data path {data_path}); fix: `{_FIX}`"
        )

    chunks: List[np.ndarray] = []

    def _on_samples(wav, numsamples, events):  # noqa: ANN001
        if wav and numsamples > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = continue synthesis

    callback = _CALLBACK_TYPE(_on_samples)
    lib.espeak_SetSynthCallback(callback)
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name) if libc_name else None
    return _State(lib, libc, data_path, int(rate), callback, chunks)


def sample_rate() -> int:
    """espeak's native output sample rate (22050 Hz)."""
    return _load().sample_rate


def available_variants() -> List[str]:
    """Names of the voice variants (``m1``, ``f2``, ...) in espeak-ng-data."""
    import os

    vdir = os.path.join(_load().data_path, "voices", "!v")
    return sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    word_gap: int = 0,
    rand_seed: int = 0,
    isolated: bool = True,
) -> Tuple[np.ndarray, int]:
    """Synthesise ``text`` and return ``(waveform, sample_rate)``.

    Args:
        text: text to speak (plain text, UTF-8).
        voice: espeak voice name, optionally with a variant (``"en-gb+f2"``).
        rate: speaking rate in words per minute (espeak accepts 80..450).
        pitch: base pitch, 0..100 (50 = the voice's default).
        pitch_range: pitch range, 0..100 (0 = monotone, 50 = default).
        volume: amplitude, 0..200 (100 = default).
        word_gap: extra pause between words, in units of 10 ms.
        rand_seed: seed for espeak's internal random generators.
        isolated: synthesise in a forked child so that the result does not
            depend on earlier calls (reproducible). ``False`` is faster but
            the samples then depend on the history of the process; never mix
            the two modes if reproducibility matters.

    Returns:
        float32 waveform in [-1, 1] and espeak's sample rate (22050 Hz).
    """
    args = (text, voice, rate, pitch, pitch_range, volume, word_gap, rand_seed)
    st = _load()
    if isolated and hasattr(os, "fork"):
        samples = _synth_forked(args)
    else:
        samples = _synth_here(*args)
    return samples.astype(np.float32) / 32768.0, st.sample_rate


def _synth_here(
    text: str,
    voice: str,
    rate: int,
    pitch: int,
    pitch_range: int,
    volume: int,
    word_gap: int,
    rand_seed: int,
) -> np.ndarray:
    """Synthesise in this process; returns int16 samples."""
    with _LOCK:
        st = _load()
        lib = st.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise EspeakError(f"espeak: unknown voice {voice!r}")
        for param, value in (
            (_ESPEAK_RATE, rate),
            (_ESPEAK_PITCH, pitch),
            (_ESPEAK_RANGE, pitch_range),
            (_ESPEAK_VOLUME, volume),
            (_ESPEAK_WORDGAP, word_gap),
        ):
            if lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
                raise EspeakError(f"espeak: cannot set parameter {param}={value}")
        seed = int(rand_seed) & 0x7FFFFFFF
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed(seed)
        if st.libc is not None:
            st.libc.srand(ctypes.c_uint(seed))
        st.chunks.clear()
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = lib.espeak_Synth(
            buf, len(buf), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with code {err}")
        lib.espeak_Synchronize()
        samples = (
            np.concatenate(st.chunks) if st.chunks else np.zeros(0, np.int16)
        )
        st.chunks.clear()
    return samples.astype(np.int16)


def _synth_forked(args: tuple) -> np.ndarray:
    """Run :func:`_synth_here` in a forked child; returns int16 samples.

    The child gets a copy of this process's (never-used) espeak state, writes
    ``status (1 byte) + payload`` to a pipe and exits with ``os._exit``.
    """
    with _LOCK:  # no other thread may be inside espeak while we fork
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(rfd)
                try:
                    payload = b"\x00" + _synth_here(*args).tobytes()
                except BaseException as e:  # noqa: BLE001 - report to parent
                    msg = str(e) if isinstance(e, EspeakError) else repr(e)
                    payload = b"\x01" + msg.encode("utf-8", "replace")
                view = memoryview(payload)
                while view:
                    view = view[os.write(wfd, view):]
                code = 0
            finally:
                os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise EspeakError(f"espeak child process failed (status {status})")
    if data[:1] != b"\x00":
        raise EspeakError(data[1:].decode("utf-8", "replace"))
    return np.frombuffer(data[1:], dtype=np.int16).copy()
