"""Shared fixtures: the sample-model registry, real MNIST and text samples, exports built once per session."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "sample_models" / "trained"
ARCHITECTURES = ROOT / "sample_models" / "architectures.py"
GRU_UNITS = 256


@dataclass(frozen=True)
class Sample:
    """One reference model of sample_models/ and how the tests feed it."""

    name: str
    kind: str  # "mlp", "cnn" or "gru": which real data it takes
    formats: tuple[str, ...]  # file formats it is saved in ("object" is the Keras model in memory)
    input_specs: tuple[str, ...] = ()
    rename: tuple[str, ...] = ()
    outputs: tuple[str, ...] = field(default=("digit",))
    subclassed: bool = False


SAMPLES = {
    s.name: s
    for s in [
        Sample("mlp_parity", "mlp", ("object", "keras", "h5", "savedmodel"), outputs=("parity",)),
        Sample("mlp_digits", "mlp", ("object", "keras", "h5", "savedmodel")),
        Sample("cnn", "cnn", ("object", "keras", "h5", "savedmodel")),
        Sample("subclassed_mlp", "mlp", ("object", "keras", "savedmodel"), subclassed=True,
               rename=("output_0=digit",)),
        Sample("subclassed_cnn", "cnn", ("object", "keras", "savedmodel"), subclassed=True,
               rename=("output_0=digit",)),
        Sample("char_gru", "gru", ("object", "keras", "savedmodel"), subclassed=True,
               input_specs=("x:int32[N,T]", f"hidden:float32[N,{GRU_UNITS}]"),
               rename=("output_0=logits", "output_1=state"), outputs=("logits", "state")),
    ]
}


# trained models proven by a test module of their own instead of the registry's parametrized tests
OWN_TESTS = {"mobilenet": "tests/toolkit/test_photo_model.py"}


def sample_cases():
    """(sample name, format) pairs: every sample model from each file format it is saved in."""
    return [pytest.param(name, fmt, id=f"{name}-{fmt}") for name, s in SAMPLES.items() for fmt in s.formats]


@pytest.fixture(scope="session")
def architectures():
    """Imports sample_models.architectures, which registers the subclassed models with Keras."""
    from sample_models import architectures

    return architectures


@pytest.fixture(scope="session")
def mnist_test():
    """The shipped MNIST test set: uint8 images (10000, 28, 28) and labels."""
    from sample_models import datasets

    return datasets.load_mnist("test", shipped_only=True)


@pytest.fixture(scope="session")
def text_ids():
    """Token ids of the shipped Tiny Shakespeare slice."""
    from sample_models import datasets

    return datasets.encode(datasets.load_text(shipped_only=True))


def real_inputs(sample: Sample, mnist_test, text_ids, count: int) -> dict[str, np.ndarray]:
    """Real inputs for a sample model, keyed by its Keras input names."""
    from sample_models import datasets

    images = mnist_test[0][:count]
    if sample.kind == "mlp":
        key = "inputs" if sample.subclassed else "pixels"
        return {key: datasets.as_mlp_input(images)}
    if sample.kind == "cnn":
        key = "inputs" if sample.subclassed else "pixels"
        return {key: datasets.as_cnn_input(images)}
    steps = 100
    starts = np.linspace(0, len(text_ids) - steps - 1, count).astype(int)
    x = np.stack([text_ids[s:s + steps] for s in starts]).astype(np.int32)
    hidden = np.random.default_rng(0).uniform(-1, 1, (count, GRU_UNITS)).astype(np.float32)
    return {"x": x, "hidden": hidden}


class _Lazy(dict):
    """A dict that builds each entry on first use, so a test loads only the models it needs."""

    def __init__(self, build):
        super().__init__()
        self._build = build

    def __missing__(self, key):
        self[key] = value = self._build(key)
        return value


@pytest.fixture(scope="session")
def keras_models(architectures):
    """Each sample model loaded once from its committed .keras file (safe mode)."""
    import keras

    return _Lazy(lambda name: keras.saving.load_model(TRAINED / f"{name}.keras", compile=False, safe_mode=True))


@pytest.fixture(scope="session")
def model_files(keras_models, tmp_path_factory):
    """Path (or object) of a sample model in a format, keyed (name, format); SavedModels are made once."""
    folder = tmp_path_factory.mktemp("savedmodels")

    def build(key):
        name, fmt = key
        if fmt == "object":
            return keras_models[name]
        if fmt == "savedmodel":
            path = folder / name
            _save_savedmodel(keras_models[name], SAMPLES[name], path)
            return path
        return TRAINED / f"{name}.{fmt}"

    return _Lazy(build)


def _save_savedmodel(model, sample: Sample, path: Path) -> None:
    """A SavedModel folder as Keras writes it; the GRU's endpoint takes both call arguments by name."""
    if sample.kind != "gru":
        model.export(path, format="tf_saved_model", verbose=False)
        return
    import tensorflow as tf

    # Keras's exporter traces a default signature from the first call argument alone, which fails here.
    module = tf.Module()
    module.model_variables = list(model.variables)

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32, name="x"),
                                  tf.TensorSpec((None, GRU_UNITS), tf.float32, name="hidden")])
    def serve(x, hidden):
        logits, state = model(x, hidden, training=False)
        return {"output_0": logits, "output_1": state}

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})


@pytest.fixture(scope="session")
def onnx_exports(model_files, tmp_path_factory):
    """Each sample model exported once per session from its .keras file, keyed by name
    ("char_gru_loop" is the GRU exported as tf2onnx's generic Loop)."""
    import dlkit

    prebuilt = os.environ.get("DLKIT_TEST_EXPORTS")  # the emulated-CPU run (tests/cpu_kinds): exported by the host
    if prebuilt:
        return _Lazy(lambda name: _prebuilt(Path(prebuilt), name))
    folder = tmp_path_factory.mktemp("exports")

    def build(name):
        sample = SAMPLES[name.removesuffix("_loop")]
        return Path(dlkit.export(model_files[sample.name, "keras"], folder / f"{name}.onnx",
                                 input_specs=sample.input_specs, rename=sample.rename,
                                 native_rnn=not name.endswith("_loop")).path)

    return _Lazy(build)


def _prebuilt(folder: Path, name: str) -> Path:
    path = folder / f"{name}.onnx"
    if not path.is_file():
        pytest.fail(f"{path} was not exported by the host run; add {name!r} to tests/cpu_kinds' EXPORTS", pytrace=False)
    return path


@pytest.fixture(scope="session")
def mnist_npz(mnist_test, tmp_path_factory):
    """Real MNIST as .npz files per input kind: calibration from the training subset, eval from the test set."""
    from sample_models import datasets

    folder = tmp_path_factory.mktemp("mnist_npz")
    train_images, _ = datasets.load_mnist("train", shipped_only=True)
    images, labels = mnist_test

    def build(key):
        kind, role = key  # ("cnn" | "mlp" | "parity", "calib" | "eval")
        to_input = datasets.as_cnn_input if kind == "cnn" else datasets.as_mlp_input
        path = folder / f"{kind}_{role}.npz"
        if role == "calib":
            np.savez(path, pixels=to_input(train_images[:1000]))
        else:
            np.savez(path, pixels=to_input(images), y=labels % 2 if kind == "parity" else labels)
        return path

    return _Lazy(build)


@pytest.fixture(scope="session")
def cnn_int8(onnx_exports, mnist_npz, tmp_path_factory):
    """The sample CNN's export quantized once to static int8, calibrated on 1000 real MNIST training images."""
    import dlkit

    path = tmp_path_factory.mktemp("int8") / "cnn.int8.onnx"
    return Path(dlkit.quantize(onnx_exports["cnn"], path, calibration=mnist_npz["cnn", "calib"]).path)


@pytest.fixture(scope="session")
def cnn_damaged(onnx_exports, tmp_path_factory):
    """The sample CNN's float export with noise added to its last layer's weights (seeded): a broken candidate."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_exports["cnn"]))
    weights = {t.name: t for t in model.graph.initializer}
    last = next(n for n in reversed(model.graph.node) if n.op_type in ("Gemm", "MatMul") and n.input[1] in weights)
    tensor = weights[last.input[1]]
    array = numpy_helper.to_array(tensor)
    noisy = array + np.random.default_rng(0).normal(0, 1.0 * float(array.std()), array.shape).astype(array.dtype)
    tensor.CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    path = tmp_path_factory.mktemp("damaged") / "cnn.damaged.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def cnn_verification(onnx_exports, cnn_int8, cnn_damaged, mnist_npz, tmp_path_factory):
    """`dlkit.verify` of the trained Keras CNN against its float, int8 and damaged ONNX files on the 10k MNIST
    test images, once per session (default thresholds), with its HTML report."""
    import dlkit

    report = tmp_path_factory.mktemp("verify") / "report.html"
    return dlkit.verify(TRAINED / "cnn.keras", [onnx_exports["cnn"], cnn_int8, cnn_damaged],
                        mnist_npz["cnn", "eval"], report=report)


PHOTO_KERAS = TRAINED / "mobilenet.keras"
PHOTO_LABELS = TRAINED / "labels_photos.txt"
PHOTOS = ROOT / "sample_models" / "data" / "photos"


@pytest.fixture(scope="session")
def photo_onnx_file(tmp_path_factory) -> Path:
    """The reference photo model (MobileNetV2, raw 0-255 RGB pixels in, 4 logits out) exported once per session with
    default options and its labels: what a user's `dlkit export mobilenet.keras --labels labels.txt` writes."""
    import dlkit

    folder = tmp_path_factory.mktemp("photo_export")
    return Path(dlkit.export(PHOTO_KERAS, folder / "mobilenet.onnx", labels=PHOTO_LABELS).path)
