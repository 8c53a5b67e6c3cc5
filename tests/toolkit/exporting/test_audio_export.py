"""Audio front-ends (issue: audio front-ends): a keyword spotter that starts with `keras.layers.MelSpectrogram`
takes raw 16 kHz samples; tf2onnx cannot convert the `RFFT` under it (read through `Real` / `Imag`), so dlkit's
`_tf2onnx_compat.spectral` turns it into a DFT-matrix product. The spotter is trained here for a few seconds on
synthesized words (rising and falling chirps, a double beep, background noise; no speech synthesizer needed),
exported with parity at the default tolerance, written to `.wav` files, and run by `dlkit run` and a bundle's
predict.py, which must name Keras's class for each word.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import dlkit
from dlkit.cli import cli
from dlkit.exporting._tf2onnx_compat.spectral import dft_matrix
from dlkit.exporting.options import DEFAULT_ATOL, DEFAULT_RTOL
from tests.runtime.test_audio import write_wav

RATE = 16000
WORDS = ("up", "down", "beep", "noise")


def word(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One second of a synthesized word at 16 kHz: a chirp up or down from about 500 Hz, two beeps, or noise alone,
    at a random time, pitch and loudness over background noise."""
    t = np.arange(RATE) / RATE
    x = rng.normal(0, rng.uniform(0.003, 0.03), RATE)
    if kind == "noise":
        return x.astype(np.float32)
    start, length = rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.5)
    u = np.clip((t - start) / length, 0, 1)
    on = (t >= start) & (t < start + length)
    base = 500 * rng.uniform(0.85, 1.15)
    pitch = {"up": base * (1 + 1.5 * u), "down": base * (2.5 - 1.5 * u), "beep": np.full_like(t, 2 * base)}[kind]
    if kind == "beep":
        on &= (u < 0.35) | (u > 0.65)
    voice = np.sin(np.pi * u) ** 0.5 * np.sin(2 * np.pi * np.cumsum(pitch) / RATE)
    return (x + rng.uniform(0.2, 0.7) * on * voice).astype(np.float32)


def words(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` words, the classes in turn: samples (n, 16000) float32 and class ids (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(WORDS)
    return np.stack([word(WORDS[k], rng) for k in labels]), labels


def _spotter():
    import keras

    keras.utils.set_random_seed(0)
    audio = keras.Input((RATE,), name="audio")
    x = keras.layers.MelSpectrogram(fft_length=512, sequence_stride=256, num_mel_bins=32, sampling_rate=RATE,
                                    name="mel")(audio)  # (N, 32 mel bins, 63 frames), in dB
    x = keras.layers.Rescaling(1 / 40)(keras.layers.Reshape((32, -1, 1))(x))
    for filters in (8, 16, 16):
        x = keras.layers.Conv2D(filters, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(audio, keras.layers.Dense(len(WORDS), activation="softmax", name="word")(x))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def spotter(tmp_path_factory):
    """The keyword spotter trained on 320 words (about 6 s on 2 cores), its accuracy on 64 others, and its export."""
    model = _spotter()
    x, y = words(320, seed=0)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    held_x, held_y = words(64, seed=1)
    accuracy = float(np.mean(model.predict(held_x, verbose=0).argmax(1) == held_y))
    result = dlkit.export(model, tmp_path_factory.mktemp("kws") / "kws.onnx", sample_data={"audio": held_x[:16]},
                          labels=list(WORDS))
    return model, accuracy, result, (held_x, held_y)


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_dft_matrix_is_numpys_rfft():
    """`frame @ dft_matrix` is np.fft.rfft's real then imaginary parts, for a frame as long as the FFT, shorter
    (zero-padded) and longer (cut), within float32 round-off of sums of about 512 terms of size 1."""
    frame = np.random.default_rng(0).uniform(-1, 1, 512).astype(np.float32)
    for frame_length, fft_length in ((512, 512), (400, 512), (512, 400), (480, 480)):
        matrix = dft_matrix(frame_length, fft_length)
        x = frame[:min(frame_length, fft_length)]
        bins = fft_length // 2 + 1
        assert matrix.shape == (min(frame_length, fft_length), 2 * bins)
        expected = np.fft.rfft(frame[:frame_length].astype(np.float64), fft_length)
        got = x @ matrix
        np.testing.assert_allclose(got[:bins], expected.real, atol=2e-4)
        np.testing.assert_allclose(got[bins:], expected.imag, atol=2e-4)


def test_keyword_spotter_exports_with_parity(spotter):
    """The trained spotter is right on held-out words, and its ONNX file matches Keras within dlkit's default
    tolerance, with no TensorFlow signal op left and the sample rate recorded for the runtime."""
    _, accuracy, result, _ = spotter
    assert accuracy >= 0.9  # the classes are learnt, so agreeing on them below means something
    assert result.atol == DEFAULT_ATOL and result.rtol == DEFAULT_RTOL
    assert result.max_abs_error <= DEFAULT_ATOL and result.parity[0].cosine_similarity > 0.99999
    ops = _ops(result.path)
    assert "MatMul" in ops and not ops & {"RFFT", "Real", "Imag", "DFT"}
    props = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert json.loads(props["dlkit.audio"]) == {"sample_rate": RATE, "samples": RATE}
    assert json.loads(props["dlkit.labels"]) == list(WORDS)


def test_dlkit_run_and_predict_py_name_keras_class_on_each_wav(spotter, tmp_path):
    """Each word as a 16-bit .wav (one shortened to 0.6 s, padded back by the runtime): `dlkit run --top-k 1` and
    the bundle's predict.py name the class Keras gives the same samples, with its probability within 1e-4."""
    model, _, result, (held_x, held_y) = spotter
    picks = [int(np.flatnonzero(held_y == k)[0]) for k in range(len(WORDS))]
    predict_py = Path(dlkit.bundle(result.path, tmp_path / "bundle", target="x86_64").path) / "predict.py"
    for n, i in enumerate(picks):
        samples = held_x[i][: int(0.6 * RATE)] if n == 0 else held_x[i]
        wav = write_wav(tmp_path / f"{WORDS[held_y[i]]}.wav", samples)
        heard = np.round(np.pad(samples, (0, RATE - len(samples))) * 32768) / 32768  # what the file holds
        keras_probs = model.predict(heard[None].astype(np.float32), verbose=0)[0]
        run = CliRunner().invoke(cli, ["run", result.path, "--input", str(wav), "--top-k", "1", "--json"])
        assert run.exit_code == 0, run.output
        best = json.loads(run.stdout)["top_k"][0][0]
        assert best["label"] == WORDS[int(keras_probs.argmax())] == WORDS[held_y[i]]
        assert abs(best["probability"] - float(keras_probs.max())) <= 1e-4
        shown = subprocess.run([sys.executable, str(predict_py), str(wav), "--top-k", "1"], capture_output=True,
                               text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["top_k"][0][0]["label"] == best["label"]


def test_wav_at_another_rate_is_one_line_error(spotter, tmp_path):
    """An 8 kHz recording for the 16 kHz spotter: exit code 2, one line naming both rates and the fix."""
    _, _, result, (held_x, _) = spotter
    wav = write_wav(tmp_path / "phone.wav", held_x[0][::2], rate=8000)
    run = CliRunner().invoke(cli, ["run", result.path, "--input", str(wav)])
    assert run.exit_code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.output, run.stderr
    assert lines[0] == (f"Error: '{wav}' is sampled at 8000 Hz but input 'audio' takes 16000 Hz audio; resample it "
                        "to 16000 Hz first (e.g. sox phone.wav -r 16000 out.wav)")


def test_log_mel_spectrogram_itself_exports_with_parity(tmp_path):
    """The log-mel spectrogram as the output, on words with silence and noise (the hard case: log10 of the quietest
    bins magnifies round-off, see README 'Audio models'): within the default tolerance, elementwise."""
    import keras

    audio = keras.Input((RATE,), name="audio")
    mel = keras.layers.MelSpectrogram(fft_length=512, sequence_stride=160, sequence_length=400, num_mel_bins=40,
                                      sampling_rate=RATE, name="mel")(audio)
    x, _ = words(12, seed=2)
    x[0] = 0  # silence
    x[1, RATE // 2:] = 0  # a word padded with zeros
    result = dlkit.export(keras.Model(audio, mel), tmp_path / "mel.onnx", sample_data={"audio": x})
    assert result.parity[0].max_abs_error <= DEFAULT_ATOL + DEFAULT_RTOL * 100  # dB values stay within +-100
    assert not _ops(result.path) & {"RFFT", "Real", "Imag"}


@pytest.mark.parametrize("fft_length", [256, 300])
def test_rfft_of_other_lengths_in_a_layer(tmp_path, fft_length):
    """`keras.ops.rfft` in a layer of one's own, with an FFT longer than the frame (zero-padded) or shorter (cut):
    the same conversion, within the default tolerance."""
    import keras

    class Spectrum(keras.layers.Layer):
        def call(self, x):
            real, imag = keras.ops.rfft(x, fft_length=fft_length)
            return keras.ops.concatenate([real, imag], axis=-1)

    frames = keras.Input((10, 280), name="frames")
    model = keras.Model(frames, Spectrum()(frames))
    result = dlkit.export(model, tmp_path / "spectrum.onnx")
    assert result.outputs[0].shape[-1] == 2 * (fft_length // 2 + 1)
    assert result.max_abs_error <= DEFAULT_ATOL


def test_tf_abs_of_stft_in_a_layer(tmp_path):
    """TensorFlow's audio tutorial's spectrogram, `tf.abs(tf.signal.stft(x, frame_length=255, frame_step=128))` (an
    FFT of 256, one longer than the frame), whose `ComplexAbs` tf2onnx fails on for more than 2 dimensions: the
    same conversion, within the default tolerance of magnitudes up to about 100."""
    import keras
    import tensorflow as tf

    class Spectrogram(keras.layers.Layer):
        def call(self, x):
            return tf.abs(tf.signal.stft(x, frame_length=255, frame_step=128))

    audio = keras.Input((RATE,), name="audio")
    samples, _ = words(8, seed=4)
    result = dlkit.export(keras.Model(audio, Spectrogram()(audio)), tmp_path / "tutorial.onnx",
                          sample_data={"audio": samples})
    assert result.outputs[0].shape[1:] == (124, 129)
    assert result.parity[0].max_abs_error <= DEFAULT_ATOL + DEFAULT_RTOL * 100
    assert not _ops(result.path) & {"RFFT", "ComplexAbs"}


def test_stft_spectrogram_exports_with_parity(tmp_path):
    """`keras.layers.STFTSpectrogram` computes its STFT as convolutions with DFT kernels, which tf2onnx converts
    as they are: parity within the default tolerance in log mode, and `dlkit.audio` records the length (the layer
    has no sample rate)."""
    import keras

    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)).astype(np.float32)  # an array: no scipy needed
    audio = keras.Input((RATE,), name="audio")
    x = keras.layers.Reshape((RATE, 1))(audio)
    x = keras.layers.STFTSpectrogram(mode="log", frame_length=256, frame_step=128, fft_length=256, window=hann)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(audio, keras.layers.Dense(len(WORDS), activation="softmax", name="word")(x))
    samples, _ = words(8, seed=3)
    result = dlkit.export(model, tmp_path / "stft.onnx", sample_data={"audio": samples})
    assert result.max_abs_error <= DEFAULT_ATOL
    props = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert json.loads(props["dlkit.audio"]) == {"samples": RATE}
