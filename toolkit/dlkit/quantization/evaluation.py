"""The figures a quantization is judged by: check samples, the comparison with the float model, top-1 accuracy,
the bound and the collapse check."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlkit.core import parity
from dlkit.core import sessions
from dlkit.core.datasources import DataSource
from dlkit.core.figures import relative_error, top1_agreement
from dlkit.core.judging import paired_drop_interval
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


def compare(reference, got) -> tuple[tuple[OutputParity, ...], float, float | None]:
    """The figures per output, the relative error over all outputs, and the lowest top-1 agreement of the
    classifier outputs ((batch, classes) with 2 or more classes; None without one), as `dlkit verify` judges."""
    figures = parity.compare(reference, {k: v.astype(np.float32) for k, v in got.items()})
    agreements = [a for a in (top1_agreement(reference[k], got[k]) for k in reference) if a is not None]
    return figures, relative_error(reference, got), min(agreements, default=None)


@dataclass(frozen=True)
class Top1:
    """Top-1 figures of the float model and a candidate on the same labelled eval samples.

    Attributes:
        float_accuracy, quantized_accuracy: the share of samples each classifies right. count: the samples.
        interval: the 95% interval of the drop (`core.judging.paired_drop_interval`: both models on the same
        samples). agreement: the share of samples both models put in the same class.
    """

    float_accuracy: float
    quantized_accuracy: float
    count: int
    interval: tuple[float, float]
    agreement: float = 1.0

    @property
    def drop(self) -> float:
        return self.float_accuracy - self.quantized_accuracy

    @classmethod
    def of(cls, float_classes: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> "Top1":
        """The figures from both models' top-1 classes and the labels."""
        right_f, right_q = float_classes == labels, classes == labels
        counts = [int(np.sum(a & b)) for a, b in ((right_f, right_q), (right_f, ~right_q), (~right_f, right_q),
                                                   (~right_f, ~right_q))]
        return cls(float(np.mean(right_f)), float(np.mean(right_q)), len(labels), paired_drop_interval(*counts),
                   float(np.mean(float_classes == classes)))


def top1_classes(model, evaluation: DataSource, *, batch: int = 256, device=None) -> np.ndarray:
    """The top-1 class `model` gives each sample of `evaluation`, run `batch` samples at a time (on `device`, a
    `dlkit.device.Emulator`, when given)."""
    def on_device(size) -> list[np.ndarray]:
        with sessions.on_device(model, device) as remote:
            name = remote.outputs[0].name
            return [sessions.predict(remote, chunk, size)[name].argmax(-1) for chunk in evaluation.batches(256)]

    def here(size) -> list[np.ndarray]:
        session = sessions.session(model)
        name = session.get_outputs()[0].name
        fixed = sessions.fixed_batch(sessions.graph_inputs(model))  # a fixed batch axis: batches of its size
        size = fixed or size

        def scores_of(part):
            feed, real = sessions.padded(part, fixed) if fixed else (part, None)
            return session.run([name], feed)[0][:real]

        return [np.concatenate([scores_of(part) for part in sessions.batches(chunk, size)]).argmax(-1)
                for chunk in evaluation.batches(256)]

    parts = here(batch) if device is None else on_device(batch)
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def bound(max_accuracy_drop, max_output_error, accuracy: Top1 | None, error) -> tuple[float | None, float | None]:
    """The bound in force and a candidate's figure for it: its accuracy drop (None when its `accuracy` was not
    measured), else its relative output `error`; (None, 0.0) without a bound."""
    if max_accuracy_drop is not None:
        return max_accuracy_drop, None if accuracy is None else accuracy.drop
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
