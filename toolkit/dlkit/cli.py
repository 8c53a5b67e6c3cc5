"""The `dlkit` command: one group, one module per verb under `dlkit.commands`, errors mapped in one place."""

from __future__ import annotations

import importlib
import importlib.util
import json
import warnings
from pathlib import Path

import click

from dlkit import __version__
from dlkit.errors import DlkitError

# verb -> module in dlkit.commands; each module defines `command`, imported only when the verb runs or is listed
_COMMANDS = {
    "demo": "Run the main job on a sample model: export, quantize, verify, bench, bundle.",
    "export": "Export a Keras model to ONNX, checked against Keras on sample inputs.",
    "quantize": "Quantize an ONNX model to int8 or fp16, with the accuracy cost measured.",
    "run": "Run an ONNX model on a .npy, .npz or image input.",
    "bench": "Time an ONNX model: cold start, latency percentiles, throughput, peak memory.",
    "inspect": "Describe an ONNX model: tensors, ops, parameters, metadata, quantization, placement.",
    "bundle": "Bundle an ONNX model with the runtime for a Raspberry Pi or another device.",
    "serve": "Serve ONNX models over HTTP (Open Inference Protocol, KServe v2), batching concurrent requests.",
    "device": "Set up an emulated Raspberry Pi (qemu) for verify, run, quantize and bundle --device.",
    "verify": "Compare ONNX candidates with a Keras or ONNX reference on data: figures, thresholds, a report.",
}


class _LazyGroup(click.Group):
    """Lists verbs without importing them and maps DlkitError to one stderr line and its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        return importlib.import_module(f"dlkit.commands.{name}").command

    def invoke(self, ctx: click.Context):
        wants_json = "--json" in [*getattr(ctx, "_protected_args", ()), *ctx.args]  # before click consumes them
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _OneLineWarnings(warnings.showwarning)
                return super().invoke(ctx)
        except DlkitError as err:
            click.echo(f"Error: {err}", err=True)
            if wants_json and not ctx.meta.get("dlkit.json_emitted"):  # scripts read stdout: the error as JSON too
                click.echo(json.dumps({"error": str(err), "error_type": type(err).__name__, "exit_code": err.exit_code}))
            ctx.exit(err.exit_code)


class _OneLineWarnings:
    """dlkit's own warnings as `warning: MESSAGE` on one stderr line, each message once per run, without the
    Python source line; other libraries' warnings go to the usual handler."""

    def __init__(self, fallback):
        runtime = importlib.util.find_spec("dlkit_runtime").origin  # found, not imported: --help stays light
        self.fallback, self.seen = fallback, set()
        self.ours = tuple(str(Path(p).resolve().parent) for p in (__file__, runtime))

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if not str(Path(filename).resolve()).startswith(self.ours):
            return self.fallback(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split())
        if text not in self.seen:
            self.seen.add(text)
            click.echo(f"warning: {text}", err=True)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="dlkit")
def cli() -> None:
    """dlkit: Keras models to ONNX, quantized, verified and run on small devices.

    \b
    Start with 'dlkit demo': the whole job on a sample model.

    \b
    Stages:
      export    Keras (.keras, .h5, SavedModel) -> ONNX, with a parity check
      quantize  ONNX -> int8 (dynamic or static QDQ) or fp16, with the accuracy cost measured
      verify    accuracy parity of Keras, ONNX and quantized models on real data, with an HTML report
      run       ONNX model + .npy/.npz/.png input -> outputs (and top-k classes)
      bench     latency, throughput, cold start and memory of an ONNX model here
      inspect   what an ONNX file holds and where its ops run
      bundle    ONNX -> a folder (or .tar.gz) to copy to a Raspberry Pi: install, then predict
      serve     ONNX models over HTTP (Open Inference Protocol), with dynamic batching
      device    an emulated Raspberry Pi here: verify/run/quantize --device rpi4 give the Pi's own figures
    Run 'dlkit COMMAND --help' for a command's options.
    """


def main() -> None:
    cli(prog_name="dlkit")
