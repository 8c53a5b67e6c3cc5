"""`dlkit device`: build, check and list the emulated devices (a thin shell over `dlkit.device.setup`)."""

from __future__ import annotations

import click

from dlkit.commands import _render
from dlkit.core import catalogue

_NAMES = click.Choice(catalogue.emulated_names())


@click.group("device")
def command() -> None:
    """Emulated devices: a Raspberry Pi's own kernels on this machine, for verify, run, quantize and bundle --device.

    \b
    A device is its OS's aarch64 Python (Raspberry Pi OS trixie's Python 3.13 by default; NAME-bookworm for
    bookworm's 3.11) with the wheels a bundle installs (numpy, onnxruntime, Pillow, and the server's: uvicorn,
    starlette, httptools, uvloop, orjson), run by qemu user-mode as the device's CPU (Cortex-A72 for rpi4,
    Cortex-A76 for rpi5, Cortex-A53 for rpi-zero2, Neoverse N1 for aarch64). Integer and float arithmetic are
    emulated exactly: the figures are the device's.
    Emulation is about 100x slower than the device: emulated timings mean nothing and dlkit never reports them.
    Needs qemu-user-static (sudo apt-get install qemu-user-static); no root rights, no change to the system.
    """


@command.command("setup")
@click.argument("name", type=_NAMES)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def setup(name, as_json):
    """Build (the first time) or check the emulated device NAME, then start it once.

    The first time downloads about 30 MB of Debian arm64 packages (deb.debian.org) and 40 MB of aarch64 wheels
    (pypi.org) into ~/.cache/dlkit/device ($DLKIT_DEVICE_CACHE); later runs reuse them offline.
    """
    from dlkit.device import setup as setup_device

    log = None if as_json else (lambda line: click.echo(line, err=True))
    result = setup_device(name, log=log)
    if as_json:
        _render.emit_json(result)
        return
    on = result.computed_on
    click.echo(f"{result.device['name']}: {result.device['description']} "
               f"{'ready (reused)' if result.reused else 'built'} in {result.seconds:.1f} s")
    for key, value in [
        ("qemu CPU", result.device["cpu"]),
        ("OS", on["os"]),
        ("CPU kind", f"{on['cpu']['family']} ({', '.join(on['cpu']['features']) or 'no int8 features'})"),
        ("Python", on["python"]),
        ("onnxruntime", f"{on['onnxruntime']['version']} ({', '.join(on['onnxruntime']['providers'])})"),
        ("wheels", " ".join(result.requirements)),
        ("cache", f"{result.cache} ({_render.size(result.size_bytes)})"),
    ]:
        click.echo(f"  {key + ':':<13} {value}")


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def list_devices(as_json):
    """The devices dlkit emulates and whether each is set up here."""
    from dlkit.device import DEVICES, environment, requirements

    ready = {os: environment.built(requirements(), system=os) for os in {d.os for d in DEVICES.values()}}
    rows = [{**d.to_dict(), "ready": ready[d.os]} for d in DEVICES.values()]
    if as_json:
        click.echo(_render.dumps({"devices": rows, "cache": str(environment.cache_dir())}))
        return
    click.echo(_render.table(["device", "qemu CPU", "OS", "Python", "description", "set up"],
                             [[r["name"], r["cpu"], r["os"]["description"], r["os"]["python"], r["description"],
                               "yes" if r["ready"] else "no"] for r in rows]))
