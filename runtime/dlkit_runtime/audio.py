"""Sound as a model input: a `.wav` file (PCM, 8-, 16-, 24- or 32-bit; mono, or the first channel of more) for a
model that takes raw audio samples, such as a keyword spotter that starts with `keras.layers.MelSpectrogram`.

The samples are scaled to [-1, 1) as `tf.audio.decode_wav` and `keras.utils.audio_dataset_from_directory` give them
(8-bit PCM is unsigned: 128 is silence), then zero-padded or cut at the end to the model's length. A file whose
sample rate is not the model's is refused: resampling changes what the model hears, so it is left to the caller.
The model's rate and length come from `dlkit.audio` in its metadata (`{"sample_rate": 16000, "samples": 16000}`,
written by `dlkit export` from the MelSpectrogram layer), its length from the input's shape first.
"""

from __future__ import annotations

import json
import os
import warnings
import wave
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dlkit_runtime.errors import InvalidInputError
from dlkit_runtime.tensors import TensorInfo

SUFFIXES = (".wav",)  # what `read_wav` reads
_FULL_SCALE = {1: 128.0, 2: 32768.0, 3: 8388608.0, 4: 2147483648.0}  # bytes per sample -> 2 ** (bits - 1)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Reads a PCM `.wav` file's first channel.

    Args:
        path: the `.wav` file.

    Returns:
        The samples as float32 in [-1, 1), shape (frames,), and the sample rate in Hz.

    Raises:
        InvalidInputError: not a RIFF/WAVE file, not PCM (IEEE float, compressed), or cut short.

    Example:
        >>> samples, rate = read_wav("word.wav")
        >>> rate, samples.dtype
        (16000, dtype('float32'))
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            data = f.readframes(frames)
    except (wave.Error, EOFError) as err:
        raise InvalidInputError(f"'{path}' is not a PCM .wav file ({err}); save it as 16-bit PCM WAV (e.g. sox "
                                f"{path.name} -b 16 -e signed-integer out.wav)") from err
    if width not in _FULL_SCALE or channels < 1:
        raise InvalidInputError(f"'{path}' has {8 * width}-bit samples; save it as 16-bit PCM WAV")
    usable = len(data) - len(data) % (width * channels)
    raw = np.frombuffer(data[:usable], np.uint8).reshape(-1, channels, width)[:, 0]  # (frames, width): channel 0
    return (_integers(raw) / _FULL_SCALE[width]).astype(np.float32), rate


def _integers(raw: np.ndarray) -> np.ndarray:
    """Little-endian PCM samples of 1 to 4 bytes, (frames, width) uint8, as signed integers (8-bit is unsigned)."""
    width = raw.shape[1]
    if width == 1:
        return raw[:, 0].astype(np.int64) - 128
    value = sum(raw[:, k].astype(np.int64) << (8 * k) for k in range(width))
    sign = 1 << (8 * width - 1)
    return (value ^ sign) - sign  # two's complement of `width` bytes


def audio_spec(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model's `dlkit.audio` metadata (`sample_rate`, `samples`), decoded; {} when it has none."""
    spec = (metadata or {}).get("audio")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            spec = None
    return spec if isinstance(spec, dict) else {}


def audio_input(path: str | os.PathLike, info: TensorInfo, metadata: Mapping[str, Any] | None = None) -> np.ndarray:
    """A `.wav` file as one sample of the input `info`: (1, samples) or (1, samples, 1), zero-padded or cut.

    Args:
        path: the `.wav` file.
        info: the model's input: float, (N, samples) or (N, samples, 1).
        metadata: the model's metadata, whose `audio` entry gives the sample rate (and the length, when the input's
            shape does not). Defaults to None (any rate, the file's own length).

    Returns:
        The samples, shaped and typed for `info`, with a batch axis of 1.

    Raises:
        InvalidInputError: an input that does not take audio, a file sampled at another rate, or a bad file.
    """
    path = Path(path)
    shape = tuple(info.shape)
    if np.dtype(info.dtype).kind != "f" or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 1):
        raise InvalidInputError(f"a sound file ('{path}') can feed only an input of audio samples, float (N, samples) "
                                f"or (N, samples, 1); input '{info.name}' takes {info.dtype} {info.shape_text()}; give "
                                "a .npy or .npz file")
    spec = audio_spec(metadata)
    samples, rate = read_wav(path)
    wanted = spec.get("sample_rate")
    if isinstance(wanted, int) and rate != wanted:
        raise InvalidInputError(f"'{path}' is sampled at {rate} Hz but input '{info.name}' takes {wanted} Hz audio; "
                                f"resample it to {wanted} Hz first (e.g. sox {path.name} -r {wanted} out.wav)")
    length = shape[1] if isinstance(shape[1], int) else spec.get("samples")
    if isinstance(length, int):
        if len(samples) > length:
            warnings.warn(f"'{path.name}' holds {len(samples)} samples and the model takes {length}: the rest is cut",
                          stacklevel=2)
        samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    return samples.astype(info.dtype).reshape((1, -1) if len(shape) == 2 else (1, -1, 1))
