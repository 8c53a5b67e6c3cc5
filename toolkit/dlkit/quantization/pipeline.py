"""`dlkit.quantize`: int8 (dynamic, or static QDQ calibrated on real data) or fp16, with the cost measured.

Every quantization ends by comparing the quantized model with the float one on samples held back from
calibration (or the evaluation data, or random ones); outputs that collapse are an error, never a file.
With a bound (`max_accuracy_drop`, `max_output_error`) the most sensitive nodes are kept in float until it holds.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

from dlkit.core import files as _files
from dlkit.core import targets as targets_
from dlkit.quantization.candidate import Candidates, quantize_first
from dlkit.quantization.evaluation import weight_bytes
from dlkit.quantization.judgement import THRESHOLDS, judge
from dlkit.quantization.measurement import Measurement
from dlkit.quantization.metadata import stamp_metadata
from dlkit.quantization.payoff import Payoff
from dlkit.quantization.payoff import measure as measure_payoff
from dlkit.quantization.quantizers import count_quantized, float_compute_nodes
from dlkit.quantization.recipe import Recipe, check_options, choose_recipe
from dlkit.quantization.results import QuantizeResult, SearchStep
from dlkit.quantization.sensitivity import cure_collapse, keep_sensitive_in_float
from dlkit.quantization.sources import CheckSamples, Source, choose_check_samples, load_source, open_data_sets
from dlkit_runtime import cpu


def quantize(
    model: str | os.PathLike, output: str | os.PathLike | None = None, *, mode: str = "auto",
    calibration: str | os.PathLike | None = None, eval_data: str | os.PathLike | None = None,
    target: str | None = None, per_channel: bool = True, method: str = "minmax",
    activation_type: str | None = None, weight_type: str | None = None,
    exclude_nodes: Sequence[str] = (), exclude_op_types: Sequence[str] = (),
    max_accuracy_drop: float | None = None, max_output_error: float | None = None,
    calibration_samples: int = 1000, deploy_batch_size: int | None = None, force: bool = False,
    progress: Callable[[int, int], None] | None = None, seed: int = 0, device: str | None = None,
    max_seconds: float | None = None, search_progress: Callable[[SearchStep], None] | None = None,
    payoff: bool = True,
) -> QuantizeResult:
    """Quantizes an ONNX model to int8 or fp16 and measures what it cost.

    Args:
        model: any valid `.onnx` file (dlkit's exports or others').
        output: where to write. Defaults to MODEL.int8.onnx (or .fp16.onnx).
        mode: "auto" (the default: static for convolutional models, dynamic for MLPs and recurrent models
            without calibration data, static with it), "dynamic", "static" or "fp16".
        calibration: `.npy`, `.npz` or an image folder for static calibration, its first `calibration_samples`.
        eval_data: `.npz` with inputs and labels `y` (or a labelled image folder) for accuracy figures.
        target: where the int8 model will run, for onnxruntime's type pairs that keep its int8 arithmetic exact
            there: "host" (the default: this CPU, detected), "x86-vnni", "x86-avx2", "arm64", "gpu", or a bundle's
            device ("rpi4", "rpi5", "aarch64": arm64; "x86_64": x86-avx2, exact on every x86 CPU).
        per_channel: per-channel weight scales (default). method: "minmax" (default), "entropy" or "percentile".
        activation_type, weight_type: "int8" or "uint8" (default: the target's). exclude_nodes, exclude_op_types:
            nodes to keep in float, by name or op type.
        max_accuracy_drop, max_output_error: a bound on the top-1 accuracy drop (0.01 = one point; labelled
            eval_data) or the relative output error: sensitive nodes are kept in float until it holds, one stays int8.
        deploy_batch_size: the batch size the model will run at when deployed; a dynamic int8 model's figures are
            computed at it, since its activation scales come from the batch. Defaults to None: 1 for dynamic int8
            (a device answering one request at a time), 64 otherwise (the figures do not depend on it).
        force: replace an existing output. progress: called with (done, total) during calibration. seed: of random
            check samples.
        device: compute the quantized model's figures (the check samples, eval_data's accuracy, the collapse check
            and the bound) on this emulated device ("rpi4", "rpi5", "aarch64"; `dlkit.device`), with its own int8
            kernels. The float model's figures stay on this host. Defaults to None: this host.
        max_seconds: the bound search's time budget from its start. Defaults to None: each ranked node tried once.
        search_progress: called with a `SearchStep` as the bound search starts and after each node it keeps.
        payoff: measure whether int8 pays where it will run (`quantization.payoff`; a warning when it costs more).

    Returns:
        A `QuantizeResult`; below `dlkit verify`'s default thresholds (`dlkit.core.judging`) a warning, not an error.

    Raises:
        InvalidInputError: a bad path, option or data (before any work). QuantizationError: the quantizers failed.
        ToleranceError: collapsed outputs; a bound not met with a node left in int8 (or within max_seconds).

    Example:
        >>> r = dlkit.quantize("cnn.onnx", calibration="mnist.npz", eval_data="mnist_test.npz")
        >>> r.mode, r.accuracy_drop < 0.005
        ('static', True)
    """
    started = time.perf_counter()
    int8_target = check_options(mode, method, activation_type, weight_type, max_accuracy_drop, max_output_error,
                                deploy_batch_size, target, device, max_seconds)
    source = load_source(model, output, mode=mode, force=force)
    calib, evaluation = open_data_sets(source, calibration, eval_data, max_accuracy_drop)
    recipe = choose_recipe(source.model, calib, mode, int8_target, per_channel=per_channel, method=method,
                           activation_type=activation_type, weight_type=weight_type,
                           deploy_batch_size=deploy_batch_size)
    check = choose_check_samples(source, calib, evaluation, calibration_samples, seed)
    with _evaluator(device) as emulator:  # the candidates' figures: this host, or the emulated device
        candidates, measured = quantize_first(
            source, recipe, calib, check, evaluation, exclude_nodes=exclude_nodes, exclude_op_types=exclude_op_types,
            progress=progress, device=emulator, max_accuracy_drop=max_accuracy_drop, max_output_error=max_output_error)
        measured = keep_sensitive_in_float(candidates, measured, max_seconds=max_seconds, on_step=search_progress)
        measured = cure_collapse(candidates, measured, recipe.steps)
        cost = _payoff(source, recipe, check, measured, emulator, deploy_batch_size) if payoff else (None, "")
    return _write_result(source, recipe, check, candidates, measured, emulator, started, cost)


def _evaluator(device: str | None):
    """The emulated device's process for the figures, or a stand-in for this host (None)."""
    import contextlib

    if device is None:
        return contextlib.nullcontext()
    from dlkit.device import Emulator

    return Emulator(device)


def _payoff(source: Source, recipe: Recipe, check: CheckSamples, measured: Measurement, emulator,
            deploy_batch_size: int | None) -> tuple[Payoff | None, str]:
    """Whether the int8 candidate costs less than the float model where it will run (fp16: not measured)."""
    if recipe.mode == "fp16":
        return None, ""
    device = None if emulator is None else emulator.device.name
    return measure_payoff(source.model, measured.model, check.feeds, target=recipe.target,
                          batch=deploy_batch_size or 1, device=device)


def _write_result(source: Source, recipe: Recipe, check: CheckSamples, candidates: Candidates, measured: Measurement,
                  emulator, started: float, cost: tuple[Payoff | None, str]) -> QuantizeResult:
    """Stamps the chosen candidate's metadata, writes it and says what it cost."""
    mode, settings, candidate, accuracy = recipe.mode, recipe.settings, measured.model, measured.accuracy
    int8 = mode != "fp16"
    int8_target = recipe.target
    payoff, payoff_note = cost
    stamp_metadata(source.model, candidate, mode, settings, measured.parity, int8_target if int8 else None,
                   recipe.eval_batch, payoff)
    computed_on = {"where": "host", "emulated": False, "cpu": dict(int8_target.host)} if emulator is None \
        else emulator.computed_on()
    kernels = None if emulator is None else cpu.CpuKind.from_dict(computed_on["cpu"])
    warning = targets_.mismatch(int8_target.name, settings, kernels) if int8 else None
    judgement = judge(measured, check)
    data = candidate.SerializeToString()
    _files.write_atomic(source.out_path, data)
    return QuantizeResult(
        path=str(source.out_path), mode=mode, reason=recipe.reason, target=int8_target.name if int8 else None,
        settings=settings, nodes_quantized=count_quantized(candidate, mode),
        nodes_float=tuple(float_compute_nodes(candidate, mode)), kept_in_float=tuple(candidates.kept),
        size_before_bytes=sum(f.stat().st_size for f in source.files), size_after_bytes=len(data),
        parity=measured.parity, num_samples=check.count, check_source=check.source, output_error=measured.output_error,
        float_accuracy=None if accuracy is None else accuracy.float_accuracy,
        quantized_accuracy=None if accuracy is None else accuracy.quantized_accuracy,
        accuracy_drop=None if accuracy is None else accuracy.drop,
        preparation=tuple(recipe.steps), seconds=round(time.perf_counter() - started, 3),
        target_reason=int8_target.reason if int8 else "", host_cpu=int8_target.host, eval_batch_size=recipe.eval_batch,
        warnings=((warning,) if warning else ()) + judgement.warnings + _payoff_warnings(payoff, source),
        float_weights_bytes=weight_bytes(recipe.prepared), computed_on=computed_on,
        top1_agreement=measured.agreement, accuracy_samples=None if accuracy is None else accuracy.count,
        accuracy_drop_interval=None if accuracy is None else accuracy.interval, thresholds=dict(THRESHOLDS),
        passed=judgement.passed, payoff=None if payoff is None else payoff.to_dict(), payoff_note=payoff_note,
    )


def _payoff_warnings(payoff: Payoff | None, source: Source) -> tuple[str, ...]:
    if payoff is None or payoff.pays is not False:
        return ()
    return (f"{payoff.describe()}: deploy the float model ({source.path.name}); a bundle of this file with "
            f"--float-model {source.path.name} runs the float one by default",)
