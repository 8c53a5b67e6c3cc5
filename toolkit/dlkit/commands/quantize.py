"""`dlkit quantize`: a thin shell over `dlkit.quantize`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.core import catalogue
from dlkit.core import judging
from dlkit.core.targets import NAMES


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File to write. [default: MODEL.int8.onnx]")
@click.option("--mode", type=click.Choice(["auto", "dynamic", "static", "fp16"]), default="auto", show_default=True,
              help="auto: static for CNNs, dynamic for MLPs/RNNs without calibration data, static with it.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Calibration data for static int8: .npy, .npz keyed by input name, or a folder of images.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=1000, show_default=True, help="Calibration samples to use.")
@click.option("--eval-data", type=click.Path(path_type=Path),
              help="Inputs and labels (.npz with 'y', or class sub-folders of images) for accuracy figures.")
@click.option("--target", type=click.Choice(list(NAMES)), default="host", show_default=True,
              help="Where the int8 model will run: its type pairs keep the int8 arithmetic exact there. host: this "
                   "CPU, detected; rpi4/rpi5/aarch64 are arm64; x86_64 (any x86) is x86-avx2.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
              help="Calibration method.")
@click.option("--per-tensor", is_flag=True, help="One scale per weight tensor instead of per channel.")
@click.option("--activation-type", type=click.Choice(["int8", "uint8"]), help="[default: the target's, else int8]")
@click.option("--weight-type", type=click.Choice(["int8", "uint8"]), help="[default: the target's, else int8]")
@click.option("--exclude-node", "exclude_nodes", multiple=True, metavar="NAME", help="Keep this node in float.")
@click.option("--exclude-op-type", "exclude_op_types", multiple=True, metavar="OP", help="Keep this op type in float.")
@click.option("--max-accuracy-drop", type=float, metavar="FRACTION",
              help="Keep sensitive nodes in float until top-1 accuracy drops by at most this (0.01 = 1 point).")
@click.option("--max-output-error", type=float, metavar="FRACTION",
              help="Without labels: keep nodes in float until the outputs' relative error is at most this.")
@click.option("--max-seconds", type=float, metavar="SECONDS",
              help="Time budget of the --max-accuracy-drop/--max-output-error search: spent before the bound holds, "
                   "exit 4 and no file. [default: none; the search tries each ranked node once]")
@click.option("--deploy-batch-size", type=click.IntRange(min=1), metavar="N",
              help="The batch size the model will run at: dynamic int8 figures are computed at it (its scales come "
                   "from the batch). [default: 1 for dynamic, else 64]")
@click.option("--device", type=click.Choice(catalogue.emulated_names()),
              help="Compute the quantized model's figures (check samples, --eval-data accuracy, the collapse check "
                   "and the bound) on this emulated device's own kernels (see 'dlkit device setup'). Emulation is "
                   "about 100x slower than the device: its timings mean nothing.")
@click.option("--payoff/--no-payoff", default=True, show_default=True,
              help="Measure whether int8 pays where it will run: timed against the float model on this host when "
                   "the target is its CPU, counted in instructions on the emulated core with --device; a warning "
                   "when int8 costs more.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, output, mode, calibration, calibration_samples, eval_data, target, method, per_tensor,
            activation_type, weight_type, exclude_nodes, exclude_op_types, max_accuracy_drop, max_output_error,
            max_seconds, deploy_batch_size, device, payoff, force, as_json):
    """Quantize MODEL (any valid .onnx) to int8 or fp16 and measure what it costs.

    The quantized model is compared with the float one on samples held back from calibration (or the eval data,
    or random inputs) and judged by dlkit verify's default thresholds (a warning below them); collapsed outputs, or
    a bound that cannot be met with a node left in int8 (or within --max-seconds), exit with code 4 and write no file.
    """
    from dlkit.quantization.pipeline import quantize

    with _render.Progress("calibrating", enabled=not as_json) as progress:
        result = quantize(
            model, output, mode=mode, calibration=calibration, calibration_samples=calibration_samples,
            eval_data=eval_data, target=target, method=method, per_channel=not per_tensor,
            activation_type=activation_type, weight_type=weight_type, exclude_nodes=exclude_nodes,
            exclude_op_types=exclude_op_types, max_accuracy_drop=max_accuracy_drop,
            max_output_error=max_output_error, deploy_batch_size=deploy_batch_size, force=force, progress=progress,
            device=device, max_seconds=max_seconds, search_progress=_SearchLines(progress), payoff=payoff,
        )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _render.emit_json(result)
        return
    click.echo(f"Quantized {model} -> {result.path} ({result.mode}: {result.reason})")
    if result.float_weights_bytes > 1.5 * result.size_before_bytes:  # weights made by nodes: say both sizes
        click.echo(f"size {_render.size(result.size_before_bytes)} on disk, {_render.size(result.float_weights_bytes)} "
                   f"of float weights once generated -> {_render.size(result.size_after_bytes)} "
                   f"({result.size_after_bytes / result.float_weights_bytes:.0%} of the weights); "
                   f"{result.nodes_quantized} nodes quantized; {result.seconds:.1f} s")
    else:
        click.echo(f"size {_render.size(result.size_before_bytes)} -> {_render.size(result.size_after_bytes)} "
                   f"({result.size_ratio:.0%}); {result.nodes_quantized} nodes quantized; {result.seconds:.1f} s")
    if result.target:
        click.echo(f"int8 for {result.target}: {result.target_reason}")
    batch = f" at batch {result.eval_batch_size} (dynamic int8 depends on its batch)" if result.mode == "dynamic" else ""
    on = result.computed_on
    where = (f"the emulated {on['device']} ({on['cpu_model']}, {on['cpu']['family']} CPU, onnxruntime "
             f"{on['onnxruntime']['version']}, {on['os']}, Python {on['python']})" if on.get("where") == "device"
             else f"this host's CPU ({result.host_cpu.get('family', '?')})")
    click.echo(f"figures computed on {where}{batch}")
    _figures(result)
    if result.kept_in_float:
        click.echo("\nKept in float by the bound or the collapse retry (figure after each):")
        click.echo(_render.table(["node", "op", "SQNR dB", "figure after"],
                                 [[k.name, k.op_type, round(k.sqnr_db, 1), k.metric_after] for k in result.kept_in_float]))
    if result.nodes_float:
        click.echo(f"float compute nodes: {', '.join(result.nodes_float)}")
    if result.payoff is not None and result.payoff["pays"] is not False:  # a loss is a warning already
        from dlkit.quantization.payoff import Payoff

        fields = {k: v for k, v in result.payoff.items() if k != "ratio"}
        click.echo(f"speed: {Payoff(**fields).describe()}")
    elif result.payoff_note:
        click.echo(f"speed: {result.payoff_note}")


def _figures(result) -> None:
    """The accuracy (with its 95% interval on a small sample), the agreement and error, and verify's verdict."""
    if result.float_accuracy is not None:
        interval = ""
        if result.accuracy_samples < judging.SMALL_SAMPLE:
            low, high = result.accuracy_drop_interval
            interval = f" (95% interval {100 * low:+.2f} to {100 * high:+.2f}, {result.accuracy_samples} samples)"
        click.echo(f"top-1 accuracy: float {result.float_accuracy:.4f}, quantized {result.quantized_accuracy:.4f}, "
                   f"drop {100 * result.accuracy_drop:.2f} points{interval}")
    agreement = "" if result.top1_agreement is None else f", top-1 agreement {result.top1_agreement:.4f}"
    if agreement and result.float_accuracy is not None and result.accuracy_samples != result.num_samples:
        agreement += f" (on all {result.accuracy_samples} eval samples, as verify counts it)"
    click.echo(f"\nAgainst the float model on {result.num_samples} samples ({result.check_source}); "
               f"relative output error {result.output_error:.3g}{agreement}:")
    click.echo(_render.table(["output", "max abs error", "mean abs error", "cosine"],
                             [[p.name, p.max_abs_error, p.mean_abs_error, p.cosine_similarity] for p in result.parity]))
    if result.passed is not None:  # the figures against verify's default thresholds
        limits, judged = result.thresholds, []
        if result.top1_agreement is not None:
            judged.append(f"top-1 agreement {result.top1_agreement:.4f} "
                          f"{'>=' if result.top1_agreement >= limits['min_agreement'] else '<'} "
                          f"{limits['min_agreement']:g}")
        if result.accuracy_drop is not None:
            judged.append(f"accuracy drop {result.accuracy_drop:.4f} "
                          f"{'<=' if result.accuracy_drop <= limits['max_accuracy_drop'] else '>'} "
                          f"{limits['max_accuracy_drop']:g}")
        click.echo(f"judged as dlkit verify judges: {', '.join(judged)}: "
                   f"{'passed' if result.passed else 'FAILED (see the warning)'}")


class _SearchLines:
    """One stderr line per step of the bound search, terminal or not; a calibration bar in progress ends first."""

    def __init__(self, progress):
        self.progress = progress

    def __call__(self, step) -> None:
        bar = None if self.progress is None else self.progress.bar
        if bar is not None and sys.stderr.isatty():  # a terminal's bar ends its line; the next calibration opens one
            bar.__exit__(None, None, None)
            self.progress.bar = None
        figure = f"{step.figure_name} {step.figure:.4g}"
        if step.node is None:
            click.echo(f"bound search: {figure} is above the bound {step.bound:g}; keeping up to {step.total} "
                       "nodes in float, most sensitive first", err=True)
            return
        verdict = f"<= bound {step.bound:g}: met" if step.met else f"> bound {step.bound:g}"
        eta = "" if step.met or step.eta_seconds is None else f", ETA {step.eta_seconds:.1f} s"
        click.echo(f"bound search: node {step.done} of {step.total} kept in float ({step.node}, {step.op_type}, "
                   f"SQNR {step.sqnr_db:.1f} dB): {figure} {verdict}; {step.seconds:.1f} s{eta}", err=True)
