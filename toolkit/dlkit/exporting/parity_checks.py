"""The gate of `dlkit.export`: the ONNX model runs in onnxruntime within `atol + rtol * |keras|` of Keras, element by
element (numpy's `allclose` rule), after the conversion and after the graph cleanup (which is undone rather than kept
when it breaks that)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from dlkit.core import parity
from dlkit.core import sessions
from dlkit.core.figures import relative_error
from dlkit.core.parity import OutputParity
from dlkit.errors import ConversionError, InvalidInputError, MissingDependencyError, ToleranceError
from dlkit.exporting.memory import release as release_memory
from dlkit.exporting.options import ExportPlan
from dlkit.exporting.samples import Samples


class Checked(NamedTuple):
    """An ONNX model within tolerance of Keras. parity: its figures. cleanup: the cleanup steps applied.
    notes: why a cleanup was undone."""

    model: Any
    parity: tuple[OutputParity, ...]
    cleanup: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def check_conversion(model: Any, samples: Samples, plan: ExportPlan) -> Checked:
    """The converted model, checked against Keras.

    Raises:
        ConversionError: it does not run in onnxruntime. ToleranceError: it differs from Keras beyond tolerance.
    """
    return Checked(model, parity_or_raise(model, samples.feeds, samples.reference, plan.atol, plan.rtol,
                                          stage="conversion", batch=plan.chunk))


def clean_within_atol(checked: Checked, samples: Samples, plan: ExportPlan) -> Checked:
    """The model cleaned by onnxslim and dlkit's folds if it stays within tolerance; else `checked` with a note."""
    from dlkit.core import graph_cleanup as cleanup

    try:
        model, steps = cleanup.simplify(_copy(checked.model))
        release_memory()
        figures = parity_or_raise(model, samples.feeds, samples.reference, plan.atol, plan.rtol, stage="cleanup",
                                  batch=plan.chunk)
        return Checked(model, figures, tuple(steps))
    except ToleranceError as err:
        return checked._replace(notes=(f"graph cleanup was undone: {err}",))
    except MissingDependencyError:
        raise
    except Exception as err:  # a fold meeting a graph it does not know costs speed, never the export
        return checked._replace(notes=(
            f"graph cleanup was undone: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}",))


def parity_or_raise(model, feeds, reference, atol, rtol, *, stage, batch=sessions.BATCH) -> tuple[OutputParity, ...]:
    """The figures of `model` against Keras's `reference` outputs on `feeds`, each element within
    `atol + rtol * |keras|`."""
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
    for name in reference:
        excess = within_tolerance(np.asarray(reference[name]), np.asarray(got[name]), atol, rtol)
        if not excess <= 1:  # also catches NaN
            figure = next(p for p in figures if p.name == name)
            raise ToleranceError(
                f"after {stage}, output '{name}' differs from Keras beyond atol + rtol x |keras| (atol {atol:g}, "
                f"rtol {rtol:g}; {excess:.3g}x that at the worst element): max abs error {figure.max_abs_error:.3g}, "
                f"relative error {relative_error(reference[name], got[name]):.3g} (||onnx - keras|| / "
                "||keras||); no file was written (a looser --rtol or --atol accepts it)")
    return figures


def within_tolerance(reference: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> float:
    """The largest `|got - reference| / (atol + rtol * |reference|)`: at most 1 when every element is within.

    The defaults (atol 1e-4, rtol 1e-4): one float32 graph run by two runtimes differs by summation order only,
    about 1e-7 of each sum per layer. Measured on the 15 keras.applications families at their smallest inputs
    (random weights, 8 images of 0-255 pixels): 14 stayed within 2.4e-5 absolute, NASNetMobile (outputs up to
    1,600) differed by 1.2e-3, which needs rtol 2.3e-5 beside atol 1e-4: the defaults pass all 15 with a margin of
    four, where an absolute bound of 1e-4 alone failed NASNetMobile. A conversion bug is off by far more: one
    classifier weight changed by 1% moves its logit by ~1e-3 of its value (tests/toolkit/exporting).
    """
    reference = reference.astype(np.float64)
    diff = np.abs(got.astype(np.float64) - reference)
    if diff.size == 0:
        return 0.0
    return float(np.max(diff / (atol + rtol * np.abs(reference))))


def _copy(model: Any) -> Any:
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone
