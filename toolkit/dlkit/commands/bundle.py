"""`dlkit bundle`: a thin shell over `dlkit.bundle`."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.core import catalogue


@click.command("bundle")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Bundle folder to write, or a .tar.gz path for an archive of it.")
@click.option("--target", type=click.Choice(catalogue.device_names()), default=catalogue.BUNDLE_DEFAULT, show_default=True,
              help="Device the bundle is for: sets thread defaults, advice and the memory budget.")
@click.option("--float-model", type=click.Path(path_type=Path),
              help="The float model an int8 MODEL came from, bundled beside it for the on-device benchmark.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads on the device. [default: the target's]")
@click.option("--serve", is_flag=True, help="Add serve.py (the model over HTTP, Open Inference Protocol) and its unit.")
@click.option("--check-on-device", is_flag=True,
              help="Then run the bundle's predict.py on a few inputs on the target's emulated CPU and OS (trixie; "
                   "see 'dlkit device setup') and compare with this host.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing non-empty folder or archive.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, output, target, float_model, threads, serve, check_on_device, force, as_json):
    """Bundle MODEL (.onnx) with the runtime, an install script and a predict entry point for a device.

    On the device: ./install.sh, then .venv/bin/python predict.py INPUT (the bundle's README says more).
    """
    from dlkit.bundling.pipeline import bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the result's warnings are printed below
        result = bundle(model, output, target=target, float_model=float_model, threads=threads, force=force,
                        serve=serve, check_on_device=check_on_device,
                        stage=None if as_json else _render.status_line("bundle"))
    for note in result.warnings:
        click.echo(f"warning: {note}", err=True)
    if as_json:
        _render.emit_json(result)
        return
    click.echo(f"Bundled {result.models[0]['file']} for {result.target} -> {result.path} "
               f"({_render.size(result.size_bytes)}, {len(result.files)} files, threads {result.threads or 'auto'})")
    click.echo(_render.table(["model", "precision", "size", "sha256"],
                             [[m["file"], m["precision"], _render.size(m["size_bytes"]), m["sha256"][:16]]
                              for m in result.models]))
    memory = result.memory
    budget = (f", {'OVER' if memory['over_budget'] else 'within'} the {result.target}'s "
              f"{_render.size(memory['budget_bytes'])} budget") if memory["budget_bytes"] else ""
    click.echo(f"run-time memory: {_render.size(memory['peak_rss_bytes'])} peak resident (the model loaded and one "
               f"inference: {_render.size(memory['model_rss_bytes'])}; measured on this host){budget}")
    check = result.device_check
    if check:
        worst = max(check["outputs"], key=lambda o: o["relative_error"])
        click.echo(f"checked on the emulated {check['device']} ({check['cpu_model']}, {check['os']}): predict.py on "
                   f"{check['samples']} "
                   f"random inputs is {worst['relative_error']:.3g} (relative) from this host on '{worst['name']}', "
                   f"within {check['bound']:g}")
    click.echo("On the device: ./install.sh, then .venv/bin/python predict.py INPUT")
