"""The samples `dlkit.export` compares on, and Keras's outputs on them: the reference the ONNX file must match."""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from dlkit.core import parity
from dlkit.core import sessions
from dlkit.errors import InvalidInputError
from dlkit.exporting.conversion import one_line
from dlkit.exporting.options import ExportPlan, check_renames


class Samples(NamedTuple):
    """feeds: the samples by ONNX input name. reference: Keras's outputs on them, by ONNX output name.
    count: how many samples. source: "random", "sample_data" or the data file."""

    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    count: int
    source: str


def reference_run(source, inputs, plan: ExportPlan) -> Samples:
    """The samples (drawn or read, cut to whole batches) and Keras's outputs on them, renamed as the ONNX file's."""
    samples, sample_source = _samples(plan.sample_data, source.inputs, plan.num_samples, source, plan.seed,
                                      plan.preprocessing)
    samples = _whole_batches(samples, plan.batch_size)
    count = len(next(iter(samples.values())))
    reference = _run_reference(source, inputs, samples, plan.chunk, sample_source)
    renames = plan.renames
    check_renames(renames, inputs, list(reference))
    return Samples(feeds={renames.get(k, k): v for k, v in samples.items()},
                   reference={renames.get(k, k): v for k, v in reference.items()},
                   count=count, source=sample_source)


def _samples(sample_data, inputs, num_samples, source, seed, hints) -> tuple[dict[str, np.ndarray], str]:
    if num_samples < 1:
        raise InvalidInputError(f"num_samples must be >= 1, got {num_samples}")
    if getattr(source, "text", None) is not None:  # a text model: check sentences, fed as Keras' token ids
        return source.text.check_feeds(sample_data, num_samples, seed)
    from dlkit.exporting.metadata import in_model_preprocessing

    in_model = in_model_preprocessing(source.keras_model) if source.keras_model is not None else None
    if sample_data is None:
        drawn = parity.random_inputs(inputs, num_samples, int_high=_token_range(source), seed=seed)
        if in_model:  # the model prepares raw pixels itself: draw them as a camera gives them, 0-255
            drawn = {k: v * np.asarray(255, v.dtype) if v.dtype.kind == "f" else v for k, v in drawn.items()}
        return drawn, "random" if not in_model else "random pixels 0-255"
    if isinstance(sample_data, Mapping):
        if len(inputs) == 1 and len(sample_data) == 1:  # one array for one input: the name need not match
            sample_data = {inputs[0].name: next(iter(sample_data.values()))}
        arrays = {i.name: parity.fit_array(np.asarray(sample_data[i.name]), i, source="sample_data")[:num_samples]
                  for i in inputs if i.name in sample_data}
        missing = [i.name for i in inputs if i.name not in arrays]
        if missing:
            raise InvalidInputError(f"sample_data has no array for inputs {missing}; key it by input name")
        return arrays, "sample_data"
    from dlkit.core.datasources import open_data

    # an image folder is fed as the export will say to feed it: by the hints given, else raw for in-model steps
    metadata = {"preprocessing": hints or in_model} if (hints or in_model) else {}
    return open_data(sample_data, inputs, metadata=metadata, what="sample data").take(0, num_samples), \
        str(sample_data)


def _token_range(source) -> int:
    """Random token ids stay below the smallest Embedding's vocabulary."""
    if source.keras_model is None:
        return 10
    import keras

    sizes = [layer.input_dim for layer in source.keras_model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.Embedding)]
    return min(sizes, default=10)


def _whole_batches(samples: dict[str, np.ndarray], batch_size: int | None) -> dict[str, np.ndarray]:
    """With a fixed batch, the samples cut (or repeated) to a whole number of batches."""
    if not batch_size:
        return samples
    count = len(next(iter(samples.values())))
    keep = max(batch_size, count - count % batch_size)
    return {k: np.resize(v, (keep, *v.shape[1:])) if keep > count else v[:keep] for k, v in samples.items()}


def _run_reference(source, inputs, samples, chunk, sample_source) -> dict[str, np.ndarray]:
    import tensorflow as tf

    parts: dict[str, list] = {}
    for batch in sessions.batches(samples, chunk):
        try:
            out = source.call(*[tf.constant(batch[i.name]) for i in inputs])
        except Exception as err:  # Keras' own verdict on the sample's shapes or values
            raise InvalidInputError(
                f"Keras could not run {source.description} on the {sample_source} samples of shape(s) "
                f"{[tuple(batch[i.name].shape) for i in inputs]} ({type(err).__name__}: {one_line(err)}); give "
                "--input with the sizes the model takes, or --sample-data") from err
        for name, value in out.items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in parts.items()}
