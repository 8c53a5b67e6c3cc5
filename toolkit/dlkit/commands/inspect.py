"""`dlkit inspect`: a thin shell over `dlkit.inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.core import catalogue


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--providers", help="Execution providers to place the ops on, e.g. 'cuda,cpu'. [default: all available]")
@click.option("--no-placement", is_flag=True, help="Skip the profiled run that shows which provider runs each op.")
@click.option("--target", type=click.Choice(catalogue.device_names()),
              help="Judge the run-time memory against this device's budget (and run with its threads).")
@click.option("--no-memory", is_flag=True, help="Skip measuring the run-time memory (a fresh process runs it once).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, providers, no_placement, target, no_memory, as_json):
    """Describe MODEL (.onnx): tensors, opsets, ops, parameters, metadata, quantization, op placement and the
    memory it needs at run time."""
    from dlkit.running.inspection import inspect

    result = inspect(model, providers=providers, placement=not no_placement, memory=not no_memory, target=target)
    if as_json:
        _render.emit_json(result)
        return
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in result.opsets.items())
    click.echo(f"{Path(result.path).name}: {_render.size(result.size_bytes)}, IR {result.ir_version}, opset {opsets}"
               + (f", by {result.producer}" if result.producer else ""))
    click.echo(_render.table(["", "name", "dtype", "shape"],
                             [["in", t.name, t.dtype, str(list(t.shape))] for t in result.inputs]
                             + [["out", t.name, t.dtype, str(list(t.shape))] for t in result.outputs]))
    weights = ", ".join(f"{k} {_render.size(v)}" for k, v in result.parameter_bytes.items())
    click.echo(f"\nparameters: {result.parameters:,} ({weights or 'none'})")
    click.echo(f"quantization: {result.quantization or 'none'}")
    click.echo(f"nodes: {sum(result.op_counts.values())} ({', '.join(f'{k} {v}' for k, v in result.op_counts.items())})")
    click.echo(f"providers: {', '.join(result.providers)}")
    for provider, ops in result.placement.items():
        click.echo(f"  {provider} runs: {', '.join(f'{k} {v}' for k, v in ops.items())}")
    if result.memory:
        memory = result.memory
        budget = (f", {'OVER' if memory['over_budget'] else 'within'} the {target}'s "
                  f"{_render.size(memory['budget_bytes'])} budget") if memory["budget_bytes"] else ""
        click.echo(f"run-time memory: {_render.size(memory['peak_rss_bytes'])} peak resident (the model loaded and "
                   f"one inference: {_render.size(memory['model_rss_bytes'])}; measured on this host){budget}")
        if memory["over_budget"]:
            click.echo(f"warning: over the {target}'s memory budget: quantize to int8 or choose a smaller model",
                       err=True)
    if result.metadata:
        click.echo("\nmetadata:")
        for key, value in result.metadata.items():
            text = value if isinstance(value, str) else json.dumps(value)
            click.echo(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
