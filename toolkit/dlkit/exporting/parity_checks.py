"""The gate of `dlkit.export`: the ONNX model runs in onnxruntime within `atol` of Keras, after the conversion and
after the graph cleanup (which is undone rather than kept when it breaks that)."""

from __future__ import annotations

from typing import Any, NamedTuple

from dlkit.core import parity
from dlkit.core import sessions
from dlkit.core.parity import OutputParity
from dlkit.errors import ConversionError, InvalidInputError, MissingDependencyError, ToleranceError
from dlkit.exporting.memory import release as release_memory
from dlkit.exporting.options import ExportPlan
from dlkit.exporting.samples import Samples


class Checked(NamedTuple):
    """An ONNX model within `atol` of Keras. parity: its figures. cleanup: the cleanup steps applied.
    notes: why a cleanup was undone."""

    model: Any
    parity: tuple[OutputParity, ...]
    cleanup: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def check_conversion(model: Any, samples: Samples, plan: ExportPlan) -> Checked:
    """The converted model, checked against Keras.

    Raises:
        ConversionError: it does not run in onnxruntime. ToleranceError: it differs from Keras beyond `atol`.
    """
    return Checked(model, parity_or_raise(model, samples.feeds, samples.reference, plan.atol, stage="conversion",
                                          batch=plan.chunk))


def clean_within_atol(checked: Checked, samples: Samples, plan: ExportPlan) -> Checked:
    """The model cleaned by onnxslim and dlkit's folds if it stays within `atol`; else `checked` with a note."""
    from dlkit.core import graph_cleanup as cleanup

    try:
        model, steps = cleanup.simplify(_copy(checked.model))
        release_memory()
        figures = parity_or_raise(model, samples.feeds, samples.reference, plan.atol, stage="cleanup",
                                  batch=plan.chunk)
        return Checked(model, figures, tuple(steps))
    except ToleranceError as err:
        return checked._replace(notes=(f"graph cleanup was undone: {err}",))
    except MissingDependencyError:
        raise
    except Exception as err:  # a fold meeting a graph it does not know costs speed, never the export
        return checked._replace(notes=(
            f"graph cleanup was undone: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}",))


def parity_or_raise(model, feeds, reference, atol, *, stage, batch=sessions.BATCH) -> tuple[OutputParity, ...]:
    """The figures of `model` against Keras's `reference` outputs on `feeds`, each within `atol`."""
    extra = [i.name for i in sessions.graph_inputs(model) if i.name not in feeds]
    if extra:
        raise ConversionError(f"after {stage}, the ONNX graph wants inputs the model does not have ({extra}): tf2onnx "
                              "made tensors captured by a layer into inputs (a Normalization layer's mean and variance,"
                              " for one); fold them into weights, or export the model without that layer")
    try:
        got = sessions.run(model, feeds, batch=batch)
    except InvalidInputError as err:
        raise ConversionError(f"after {stage}, the ONNX model does not run in onnxruntime: {err}") from err
    figures = parity.compare(reference, got)
    worst = max(figures, key=lambda p: p.max_abs_error)
    if not worst.max_abs_error <= atol:  # also catches NaN
        raise ToleranceError(
            f"after {stage}, output '{worst.name}' differs from Keras by {worst.max_abs_error:.3g} "
            f"(max abs error) > atol {atol:g}; no file was written"
        )
    return figures


def _copy(model: Any) -> Any:
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone
