"""How far dlkit's pixels are from the ones a Keras model was trained on, for `dlkit.verify` with a Keras
reference and a folder of images.

`keras.utils.image_dataset_from_directory` reads a picture with `tf.io.decode_image` (libjpeg's fast IDCT for a
JPEG) and `tf.image.resize` (bilinear, no antialiasing); dlkit reads it with Pillow (`dlkit_runtime.images.decode`:
TensorFlow's JPEG values where `dlkit_runtime.jpeg` covers the file, EXIF orientation applied, Pillow's bilinear
resize). On a sample of the folder this measures how many pixel values differ, by how many levels, and what that
does to the Keras reference: its top-1 accuracy on dlkit's pixels and on TensorFlow's, and how often its top-1
class changes between them.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

SAMPLES = 128  # images compared: a Keras run and a decode of each twice, about a second for the photo model
PIPELINE = "tf.io.decode_image, bilinear tf.image.resize: keras.utils.image_dataset_from_directory"


@dataclass(frozen=True)
class DecodingCheck:
    """dlkit's pixels against TensorFlow's on `samples` images of the folder.

    Attributes:
        samples: images compared. skipped: images TensorFlow could not read, or read at another size.
        max_abs_level, mean_abs_level: the largest and the mean absolute difference of a pixel value (0-255 levels).
        fraction_differing: the fraction of pixel values that differ.
        output: the reference output the figures below are on (a classifier's, else the first batched one).
        max_abs_output_difference: the largest difference of that output between the two decodings.
        top1_agreement: how often the reference's top-1 class is the same on both (a classifier output).
        accuracy_dlkit, accuracy_tensorflow: the reference's top-1 accuracy on each (labelled folders).
        pipeline: what the TensorFlow side ran.
    """

    samples: int
    skipped: int
    max_abs_level: float
    mean_abs_level: float
    fraction_differing: float
    output: str | None
    max_abs_output_difference: float | None
    top1_agreement: float | None
    accuracy_dlkit: float | None
    accuracy_tensorflow: float | None
    pipeline: str = PIPELINE

    @property
    def identical(self) -> bool:
        """Every pixel value compared is the same."""
        return self.fraction_differing == 0.0

    @property
    def summary(self) -> str:
        """One line: the pixels, then the reference's figures both ways."""
        line = f"dlkit's pixels vs TensorFlow's ({self.pipeline}) on {self.samples} images"
        line += ": identical" if self.identical else (
            f": {100 * self.fraction_differing:.2f}% of values differ, by at most {self.max_abs_level:.4g} levels "
            f"(mean {self.mean_abs_level:.4g})")
        if self.accuracy_dlkit is not None:
            line += (f"; reference top-1 accuracy {100 * self.accuracy_dlkit:.2f}% (dlkit) vs "
                     f"{100 * self.accuracy_tensorflow:.2f}% (TensorFlow)")
        if self.top1_agreement is not None:
            line += f", top-1 agreement {100 * self.top1_agreement:.2f}%"
        if self.skipped:
            line += f" ({self.skipped} image(s) TensorFlow reads differently skipped)"
        return line

    def to_dict(self) -> dict:
        return {**asdict(self), "identical": self.identical, "summary": self.summary}


def check_decoding(source: Any, info: Any, metadata: Mapping[str, Any], run_reference: Callable[[dict], dict],
                   roles: Any, samples: int = SAMPLES, batch_size: int = 64) -> DecodingCheck | None:
    """Compares dlkit's decoding of the first `samples` images of `source` with TensorFlow's.

    Args:
        source: the `DataSource` of an image folder (others give None).
        info, metadata: the model input the images feed, and the model's dlkit metadata.
        run_reference: the Keras reference, from a feed dict to named outputs.
        roles: `evaluation.OutputRoles` of the reference's outputs.
        samples: at most this many images. Defaults to 128.
        batch_size: images per reference run. Defaults to 64.

    Returns:
        A `DecodingCheck`, or None when `source` is not a folder of images or the input is not an RGB or gray image.
    """
    from dlkit_runtime.images import geometry

    files = tuple(getattr(source, "files", ()) or ())[:min(samples, source.count)]
    if not files or len(info.shape) not in (3, 4):
        return None
    _, height, width, channels = geometry(info, metadata)
    if channels not in (1, 3):
        return None
    size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
    pairs = [(i, pair) for i, f in enumerate(files) if (pair := _both(f, info, metadata, channels, size)) is not None]
    if not pairs:
        return None
    kept = [i for i, _ in pairs]
    ours = np.stack([p[0] for _, p in pairs])
    theirs = np.stack([p[1] for _, p in pairs])
    diff = np.abs(ours.astype(np.float32) - theirs)
    from dlkit_runtime.images import image_input

    with warnings.catch_warnings():  # a missing preprocessing hint was said once, when the folder was opened
        warnings.simplefilter("ignore")
        feeds = [np.stack([image_input(levels, info, metadata)[0] for levels in side]) for side in (ours, theirs)]
    outputs = [_run(run_reference, info.name, feed, batch_size, roles.batched) for feed in feeds]
    name = roles.primary if roles.primary in outputs[0] else None
    labels = source.labels[np.array(kept)] if roles.labelled and source.labels is not None else None
    figures = _figures(outputs, name, name in roles.classifiers, labels)
    return DecodingCheck(len(pairs), len(files) - len(pairs), float(diff.max()), float(diff.mean()),
                         float((diff > 0).mean()), name, *figures)


def _both(path: Path, info, metadata, channels: int, size) -> tuple[np.ndarray, np.ndarray] | None:
    """One image as dlkit decodes it (uint8) and as TensorFlow does (float32 after its resize), both (H, W, C);
    None when TensorFlow cannot read it or the two differ in shape (an EXIF-rotated picture of a dynamic size)."""
    import tensorflow as tf

    from dlkit_runtime.images import decode

    pixels = decode(path, info, metadata)
    ours = pixels[..., None] if pixels.ndim == 2 else pixels
    ours = np.repeat(ours, 3, axis=-1) if ours.shape[-1] == 1 and channels == 3 else ours
    if ours.shape[-1] != channels:  # colour for a gray model: the model input's own conversion
        from dlkit_runtime.images import image_input
        from dlkit_runtime.tensors import TensorInfo

        ours = image_input(pixels, TensorInfo(info.name, "uint8", (None, None, None, channels)), {})[0]
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), channels=channels, expand_animations=False)
        theirs = (tf.image.resize(image, size, method="bilinear") if size else tf.cast(image, tf.float32)).numpy()
    except (tf.errors.OpError, ValueError):
        return None
    return (ours, theirs) if ours.shape == theirs.shape else None


def _run(run_reference, name: str, feed: np.ndarray, batch_size: int, batched) -> dict[str, np.ndarray]:
    """The reference's batched outputs on `feed`, each as (samples, values)."""
    parts = [run_reference({name: feed[i:i + batch_size]}) for i in range(0, len(feed), batch_size)]
    return {k: np.concatenate([p[k].reshape(len(p[k]), -1) for p in parts]) for k in parts[0] if k in batched}


def _figures(outputs, name: str | None, classifier: bool, labels) -> tuple:
    """(max abs output difference, top-1 agreement, accuracy on dlkit's, accuracy on TensorFlow's)."""
    if name is None:
        return None, None, None, None
    ours, theirs = outputs[0][name], outputs[1][name]
    largest = float(np.abs(ours.astype(np.float64) - theirs).max())
    if not classifier:
        return largest, None, None, None
    top_ours, top_theirs = ours.argmax(axis=1), theirs.argmax(axis=1)
    agreement = float((top_ours == top_theirs).mean())
    if labels is None:
        return largest, agreement, None, None
    return largest, agreement, float((top_ours == labels).mean()), float((top_theirs == labels).mean())
