"""`dlkit verify`: a thin shell over `dlkit.verify`."""

from __future__ import annotations

from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.core import catalogue, judging
from dlkit.errors import ToleranceError


@click.command("verify")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidates", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path),
              help="Inputs (.npy, .npz keyed by input name with optional labels 'y', or class sub-folders of images).")
@click.option("--random", "random_samples", type=int, metavar="N", help="Compare on N random samples instead of data.")
@click.option("--atol", type=float, help="Largest absolute error allowed on any output. [default: not checked]")
@click.option("--min-agreement", type=float, default=judging.MIN_AGREEMENT, show_default=True,
              help="Smallest top-1 agreement with the reference allowed (classifier outputs).")
@click.option("--max-accuracy-drop", type=float, default=judging.MAX_ACCURACY_DROP, show_default=True,
              metavar="FRACTION",
              help="Largest top-1 accuracy drop allowed with labelled data (0.01 = 1 point).")
@click.option("--max-samples", type=int, help="Compare at most this many samples. [default: all]")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Samples per run.")
@click.option("--deploy-batch-size", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="The batch size the candidates will run at when deployed: a dynamic int8 candidate runs in batches "
                   "of N (its scales come from the batch); the others do not depend on it.")
@click.option("--regression-output", "regression_outputs", multiple=True, metavar="NAME",
              help="An output of shape (batch, n) that is not class scores (a box, an embedding): judged by its errors "
                   "alone, without top-1 agreement. Repeatable.")
@click.option("--device", type=click.Choice(catalogue.emulated_names()),
              help="Run the candidates on this emulated device (its own kernels, the wheels its bundle installs; "
                   "see 'dlkit device setup'); the reference stays here and thresholds are judged on the device's "
                   "figures. Emulation is about 100x slower than the device: its timings mean nothing.")
@click.option("--also-host", is_flag=True, help="With --device, also show this host's figures beside the device's.")
@click.option("--report", type=click.Path(path_type=Path), help="Write an HTML report here.")
@click.option("--custom-objects", type=click.Path(path_type=Path),
              help="A Python file that registers the custom classes a Keras reference needs.")
@click.option("--no-safe-mode", is_flag=True, help="Allow a Keras reference's Lambda layers to load (trusted files).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(reference, candidates, data, random_samples, atol, min_agreement, max_accuracy_drop, max_samples,
            batch_size, deploy_batch_size, regression_outputs, device, also_host, report, custom_objects, no_safe_mode,
            as_json):
    """Compare CANDIDATE ONNX models (float, int8, fp16) with REFERENCE (Keras or ONNX) on the same data.

    Prints the figures per candidate and output; a figure outside a threshold exits with code 4 and names it.
    With --device rpi4|rpi5|rpi-zero2|aarch64 the candidates run on that device's kernels and Raspberry Pi OS
    trixie's Python 3.13, emulated here (rpi5-bookworm and the like: bookworm's Python 3.11; the first use
    downloads its Python and wheels: 'dlkit device setup').
    """
    from dlkit.commands._options import load_custom_objects
    from dlkit.verification.pipeline import verify

    with _render.Progress("verifying", enabled=not as_json) as progress:
        result = verify(
            reference, list(candidates), data, random=random_samples, atol=atol, min_agreement=min_agreement,
            max_accuracy_drop=max_accuracy_drop, max_samples=max_samples, batch_size=batch_size,
            deploy_batch_size=deploy_batch_size, report=report,
            safe_mode=not no_safe_mode, custom_objects=load_custom_objects(custom_objects), progress=progress,
            regression_outputs=regression_outputs, device=device, also_host=also_host,
        )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _render.emit_json(result)
    else:
        _print(result)
    if not result.passed:
        breaches = result.breaches
        hint = ""
        if any(b.figure == "top1_agreement" for b in breaches):
            hint = " (an output that is not class scores is judged by its errors alone with --regression-output NAME)"
        raise ToleranceError(f"{len(breaches)} figure(s) outside the thresholds: "
                             + "; ".join(b.message for b in breaches) + hint)


def _print(result) -> None:
    click.echo(f"Verified against {result.reference} on {result.num_samples} samples ({result.data})"
               + ("" if result.device else f", {result.seconds:.1f} s"))  # emulated seconds mean nothing
    rows = []
    for c in result.candidates:
        for o in c.outputs:
            rows.append([Path(c.path).name, c.kind, c.where + ("" if c.judged else " *"), o.name, o.max_abs_error,
                         o.mean_abs_error, o.relative_error, o.cosine_similarity, _pct(o.top1_agreement),
                         _pct(o.top5_agreement), _pct(o.candidate_accuracy),
                         "-" if o.accuracy_drop is None else f"{100 * o.accuracy_drop:+.2f}"])
    click.echo(_render.table(["candidate", "kind", "computed on", "output", "max abs error", "mean abs error",
                              "rel error", "cosine", "top-1 agree", "top-5 agree", "accuracy", "drop (pts)"], rows))
    if any(not c.judged for c in result.candidates):
        click.echo("* this host's figures, for comparison: the thresholds are judged on the device's")
    accuracy = next((o.reference_accuracy for c in result.candidates for o in c.outputs
                     if o.reference_accuracy is not None), None)
    if accuracy is not None:
        click.echo(f"reference accuracy {_pct(accuracy)}")
    for c in result.candidates:
        for task in c.tasks:
            click.echo(f"{Path(c.path).name}{'' if c.judged else ' *'}: {task.summary}")
    if result.decoding is not None:
        click.echo(f"decoding: {result.decoding.summary}")
    host = result.host_cpu
    click.echo(f"{'reference ' if result.device else ''}computed on this host: {host.get('family')} CPU "
               f"({', '.join(host.get('features') or ['-'])}{'; ' + host['model'] if host.get('model') else ''}), "
               f"onnxruntime {result.onnxruntime.get('version')} ({', '.join(result.onnxruntime.get('providers') or [])})")
    if result.device:
        device = result.device
        click.echo(f"candidates computed on {device['device']}, emulated ({device['description']}; qemu "
                   f"{device['cpu_model']}, {device['cpu']['family']} CPU, onnxruntime "
                   f"{device['onnxruntime']['version']}, {device['os']}, Python {device['python']})")
    once = list({c.path: c for c in result.candidates if c.judged}.values())  # a file's facts, not a row's
    for c in once:
        if c.kind == "int8":
            made = f"quantized for {c.target}" if c.target else "target unknown (not made by dlkit quantize)"
            how = f"dynamic, run at batch {c.batch_size}" if c.dynamic else "static"
            click.echo(f"{Path(c.path).name}: int8 ({how}), {made}")
    for c in once:
        if c.nodes:
            worst = ", ".join(f"{n.name} ({n.sqnr_db:.1f} dB)" for n in c.nodes[:3])
            click.echo(f"{Path(c.path).name}: lowest-SQNR quantized nodes: {worst}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.report:
        click.echo(f"report: {result.report}")
    click.echo("PASSED" if result.passed else "FAILED")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
