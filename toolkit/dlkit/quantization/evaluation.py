"""The figures a quantization is judged by: check samples, the comparison with the float model, top-1 accuracy,
the bound and the collapse check."""

from __future__ import annotations

import math

import numpy as np

from dlkit.core import parity
from dlkit.core import sessions
from dlkit.core.datasources import DataSource
from dlkit.core.figures import relative_error
from dlkit.core.parity import OutputParity

_HOLD_BACK = 256  # at most this many calibration samples are held back for the final comparison
_CHECK_RANDOM = 16


def check_samples(calib, evaluation, inputs, calib_stop, seed) -> tuple[dict[str, np.ndarray], str]:
    if evaluation is not None:
        return evaluation.take(0, min(evaluation.count, 1000)), f"{evaluation.path} (eval data)"
    if calib is not None and calib.count > 1:
        hold = max(1, min(_HOLD_BACK, calib.count // 10))
        return calib.take(calib.count - hold, calib.count), f"{calib.path} (last {hold} samples, held back)"
    return parity.random_inputs(inputs, _CHECK_RANDOM, seed=seed), "random"


def compare(reference, got) -> tuple[tuple[OutputParity, ...], float]:
    figures = parity.compare(reference, {k: v.astype(np.float32) for k, v in got.items()})
    return figures, relative_error(reference, got)


def accuracy(float_model, candidate, evaluation: DataSource, float_accuracy: float | None = None, *,
             batch: int = 256, device=None) -> tuple[float, float]:
    """Top-1 accuracy of the float model and of the candidate, the candidate run `batch` samples at a time (on
    `device`, a `dlkit.device.Emulator`, when given)."""
    def on_device(model, size) -> float:
        with sessions.on_device(model, device) as remote:
            name = remote.outputs[0].name
            correct = 0
            for start, chunk in zip(range(0, evaluation.count, 256), evaluation.batches(256)):
                scores = sessions.predict(remote, chunk, size)[name]
                correct += int((scores.argmax(-1) == evaluation.labels[start:start + len(scores)]).sum())
            return correct / evaluation.count

    def top1(model, size) -> float:
        session = sessions.session(model)
        name = session.get_outputs()[0].name
        fixed = sessions.fixed_batch(sessions.graph_inputs(model))  # a fixed batch axis: batches of its size
        size = fixed or size

        def scores_of(part):
            feed, real = sessions.padded(part, fixed) if fixed else (part, None)
            return session.run([name], feed)[0][:real]

        correct = 0
        for start, chunk in zip(range(0, evaluation.count, 256), evaluation.batches(256)):
            scores = np.concatenate([scores_of(part) for part in sessions.batches(chunk, size)])
            correct += int((scores.argmax(-1) == evaluation.labels[start:start + len(scores)]).sum())
        return correct / evaluation.count

    quantized = top1(candidate, batch) if device is None else on_device(candidate, batch)
    return (top1(float_model, 256) if float_accuracy is None else float_accuracy), quantized


def bound(max_accuracy_drop, max_output_error, accuracy, error) -> tuple[float | None, float | None]:
    """The bound in force and a candidate's figure for it: its accuracy drop (None when its `accuracy`, a (float,
    quantized) pair, was not measured), else its relative output `error`; (None, 0.0) without a bound."""
    if max_accuracy_drop is not None:
        return max_accuracy_drop, None if accuracy is None else accuracy[0] - accuracy[1]
    if max_output_error is not None:
        return max_output_error, error
    return None, 0.0


def collapse(reference, figures, error) -> str | None:
    """What is broken when outputs are constant, all-zero, far off or not finite, else None."""
    for figure in figures:
        ref = reference[figure.name]
        if not np.isfinite(figure.max_abs_error):
            return (f"quantized output '{figure.name}' holds NaN or inf; keep more nodes in float "
                    "(--exclude-op-type) or use --mode fp16")
        if figure.cosine_similarity < 0.5 and float(np.std(ref)) > 0:
            return (f"quantized output '{figure.name}' collapsed (cosine similarity {figure.cosine_similarity:.3f} "
                    f"with the float model; relative error {error:.3g}); calibrate on real data, keep sensitive nodes "
                    "in float or use --mode fp16")
    return None


def weight_bytes(model) -> int:
    """Bytes of a model's initializers as arrays (after Constant and ConstantOfShape nodes were folded into them)."""
    from onnx import helper

    return sum(math.prod(t.dims) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in model.graph.initializer if t.data_type)
