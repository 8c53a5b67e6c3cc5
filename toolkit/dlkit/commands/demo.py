"""`dlkit demo`: a thin shell over `dlkit.demo`."""

from __future__ import annotations

from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.core import catalogue
from dlkit.errors import ToleranceError


@click.command("demo")
@click.option("--model", type=click.Choice(["cnn", "mlp", "gru", "mobilenet"]), default="cnn", show_default=True,
              help="The sample model to take through every stage.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out/demo"), show_default=True,
              help="Folder for the files the demo writes.")
@click.option("--target", type=click.Choice(catalogue.device_names()), default=catalogue.DEMO_DEFAULT,
              show_default=True, help="The device to bundle for.")
@click.option("--samples", type=click.Path(path_type=Path), help="The repository's sample_models/ folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, out, target, samples, as_json):
    """Run the main job on a sample model: export, quantize, verify, bench and bundle, then summarize."""
    from dlkit.demonstration import demo

    result = demo(model, out, samples=samples, target=target,
                  progress=None if as_json else lambda line: click.echo(line, err=True))
    if as_json:
        _render.emit_json(result)
    else:
        click.echo(f"\n{result.model}: {result.seconds:.0f} s, files in {result.out_dir}")
        click.echo(_render.table(
            ["model", "accuracy", "file size", "latency (batch 1)", "speed-up over Keras"],
            [[r.name, f"{100 * r.accuracy:.2f}%", _render.size(r.size_bytes), f"{r.latency_ms:.3f} ms",
              f"{r.speedup:.1f}x"] for r in result.rows]))
        for note in result.notes:
            click.echo(f"note: {note}")
        if result.report:
            click.echo(f"report: {result.report}")
        click.echo(f"bundle: {result.bundle}")
    if not result.passed:
        raise ToleranceError("a check of the demo failed (see the figures above)")
