"""`.wav` files as a model's input (dlkit_runtime.audio through `read_inputs`): PCM of every width the standard
library's `wave` writes, mono or the first channel, padded or cut to the model's length, a sample rate the model does
not take refused in one line. The model here is a graph built with onnx.helper that hands its input back, so the
figures are the samples themselves; tests/toolkit/exporting/test_audio_export.py runs a trained keyword spotter."""

from __future__ import annotations

import json
import re
import struct
import wave

import numpy as np
import pytest
from click.testing import CliRunner

from dlkit.cli import cli
from dlkit_runtime import Model
from dlkit_runtime.audio import audio_input, read_wav
from dlkit_runtime.datafiles import read_inputs
from dlkit_runtime.errors import InvalidInputError
from dlkit_runtime.tensors import TensorInfo

RATE = 16000


def write_wav(path, samples: np.ndarray, rate: int = RATE, bits: int = 16, channels: int = 1):
    """Writes float samples in [-1, 1] as PCM of `bits` bits (8-bit unsigned, as WAV has it); a second channel, when
    asked for, holds the samples negated. Returns the path."""
    full = 2.0 ** (bits - 1)
    ints = np.clip(np.round(np.asarray(samples, np.float64) * full), -full, full - 1).astype(np.int64)
    frames = np.stack([ints, -ints][:channels] + [ints] * max(0, channels - 2), axis=1)  # (frames, channels)
    if bits == 8:
        frames = frames + 128
    raw = ((frames[..., None] >> (8 * np.arange(bits // 8))) & 0xFF).astype(np.uint8)  # little-endian bytes
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(bits // 8)
        f.setframerate(rate)
        f.writeframes(raw.tobytes())
    return path


def _tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.6 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t)


@pytest.fixture(scope="module")
def echo_onnx(tmp_path_factory):
    """audio float32 (N, 16000) -> samples float32 (N, 16000), the input handed back; `dlkit.audio` says 16 kHz."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["audio"], ["samples"])], "echo",
                              [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", RATE])],
                              [helper.make_tensor_value_info("samples", TensorProto.FLOAT, ["N", RATE])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"dlkit.audio": json.dumps({"sample_rate": RATE, "samples": RATE})})
    path = tmp_path_factory.mktemp("echo") / "echo.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
def test_read_wav_every_width_first_channel(tmp_path, bits, channels):
    """Each width decodes to the written samples within half a step of its own quantization (1 / 2 ** bits); a
    stereo file gives its first channel (the second holds the samples negated)."""
    tone = _tone(0.25)
    samples, rate = read_wav(write_wav(tmp_path / "a.wav", tone, rate=22050, bits=bits, channels=channels))
    assert rate == 22050 and samples.dtype == np.float32 and samples.shape == tone.shape
    assert np.abs(samples - tone).max() <= 1 / 2 ** bits + 1e-7  # + float32 round-off of values below 1


def test_audio_input_pads_cuts_and_lays_out(tmp_path):
    """Short words are zero-padded at the end; long files cut there, with one warning; (N, S, 1) inputs get the
    channel axis; a dynamic length takes the metadata's, else the file's own."""
    short = write_wav(tmp_path / "short.wav", _tone(0.5))
    long = write_wav(tmp_path / "long.wav", _tone(1.5))
    flat = TensorInfo("audio", "float32", (None, RATE))
    x = audio_input(short, flat, {"audio": {"sample_rate": RATE}})
    assert x.shape == (1, RATE) and x.dtype == np.float32
    assert np.abs(x[0, :8000]).max() > 0.5 and not x[0, 8000:].any()
    with pytest.warns(UserWarning, match=r"^'long.wav' holds 24000 samples and the model takes 16000: the rest is cut$"):
        y = audio_input(long, TensorInfo("audio", "float32", (None, RATE, 1)), None)
    assert y.shape == (1, RATE, 1)
    np.testing.assert_allclose(y[0, :, 0], _tone(1.5)[:RATE], atol=1 / 2 ** 16)
    dynamic = TensorInfo("audio", "float32", (None, None))
    assert audio_input(short, dynamic, {"audio": json.dumps({"samples": 12000})}).shape == (1, 12000)  # raw metadata
    assert audio_input(short, dynamic, {}).shape == (1, 8000)


def test_audio_errors(tmp_path):
    """A rate the model does not take, a file that is not PCM WAV, and an input that is not audio: one line each,
    naming the fix."""
    info = TensorInfo("audio", "float32", (None, RATE))
    slow = write_wav(tmp_path / "word.wav", _tone(1.0, 8000), rate=8000)
    with pytest.raises(InvalidInputError, match=r"is sampled at 8000 Hz but input 'audio' takes 16000 Hz audio; "
                                                r"resample it to 16000 Hz first") as err:
        audio_input(slow, info, {"audio": {"sample_rate": RATE, "samples": RATE}})
    assert "\n" not in str(err.value)
    (tmp_path / "text.wav").write_text("not a wave file")
    with pytest.raises(InvalidInputError, match=r"is not a PCM \.wav file \(file does not start with RIFF id\)"):
        read_wav(tmp_path / "text.wav")
    data = np.zeros(16, np.float32).tobytes()  # IEEE float WAV (format 3), which `wave` does not read
    fmt = struct.pack("<HHIIHH", 3, 1, RATE, RATE * 4, 4, 32)
    (tmp_path / "float.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                                         + b"fmt " + struct.pack("<I", len(fmt)) + fmt
                                         + b"data" + struct.pack("<I", len(data)) + data)
    with pytest.raises(InvalidInputError, match=r"is not a PCM \.wav file \(unknown format: 3\); save it as 16-bit"):
        read_wav(tmp_path / "float.wav")
    with pytest.raises(InvalidInputError, match=re.escape("input 'pixels' takes float32 (N, 28, 28, 1)")):
        audio_input(slow, TensorInfo("pixels", "float32", (None, 28, 28, 1)))


def test_read_inputs_and_model_metadata(echo_onnx, tmp_path):
    """`read_inputs` hands a .wav to dlkit_runtime.audio with the model's input and metadata."""
    model = Model(echo_onnx)
    x = read_inputs(write_wav(tmp_path / "w.wav", _tone(0.75)), model)
    assert x.shape == (1, RATE)
    out = model.predict(x)["samples"]
    np.testing.assert_allclose(out[0, :12000], _tone(0.75), atol=1 / 2 ** 16)
    with pytest.raises(InvalidInputError, match="can feed only a model with one input"):
        read_inputs(tmp_path / "w.wav")


def test_dlkit_run_on_a_wav(echo_onnx, tmp_path):
    """`dlkit run model.onnx --input word.wav`: the samples reach the model; a file at 44.1 kHz for a 16 kHz model
    is refused with exit code 2 and one line on stderr."""
    wav = write_wav(tmp_path / "word.wav", _tone(0.5), bits=8)
    result = CliRunner().invoke(cli, ["run", str(echo_onnx), "--input", str(wav), "-o", str(tmp_path / "out.npz")])
    assert result.exit_code == 0, result.output
    samples = np.load(tmp_path / "out.npz")["samples"]
    assert samples.shape == (1, RATE) and not samples[0, 8000:].any()
    np.testing.assert_allclose(samples[0, :8000], _tone(0.5), atol=1 / 2 ** 8)
    cd = write_wav(tmp_path / "cd.wav", _tone(1.0, 44100), rate=44100)
    result = CliRunner().invoke(cli, ["run", str(echo_onnx), "--input", str(cd)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "sampled at 44100 Hz" in lines[0], result.stderr
    assert "Traceback" not in result.output
