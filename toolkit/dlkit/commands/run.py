"""`dlkit run`: a thin shell over `dlkit_runtime.Model`."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.core import catalogue


@click.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_text", required=True, type=click.Path(),
              help="Inputs: .npy (one input) or .npz keyed by input name, batch axis first; or an image (JPEG, PNG, "
                   "BMP, GIF, WebP, TIFF: Pillow; 8-bit PNG without it); or a folder of images, run in batches with "
                   "one JSON line per file; or a .wav for an audio model (its sample rate, padded or cut to its length). "
                   "For a text model: the text itself, or a .txt file (one sentence a line).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Save all outputs to this .npz file.")
@click.option("-f", "--force", is_flag=True, help="Replace the --output file if it exists.")
@click.option("--top-k", type=click.IntRange(min=1), help="Print each sample's top K classes (labels from the metadata).")
@click.option("--softmax", is_flag=True,
              help="Give the top classes' probabilities (softmax of logits) instead of the output's own values.")
@click.option("--providers", help="Execution providers in order, e.g. 'cuda,cpu'. [default: all available]")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads. [default: physical cores]")
@click.option("--cast", is_flag=True, help="Cast inputs to the model's dtypes even when it loses precision.")
@click.option("--strict", is_flag=True, help="Fail instead of falling back when a provider is missing.")
@click.option("--device", type=click.Choice(catalogue.emulated_names()),
              help="Compute the outputs on this emulated device, as its own kernels do (see 'dlkit device setup'). "
                   "Emulation is about 100x slower than the device: its timings mean nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, input_text, output, force, top_k, softmax, providers, threads, cast, strict, device, as_json):
    """Run MODEL (.onnx) on the arrays in --input and print what it returns.

    An image is decoded, resized, laid out and scaled as the model's metadata says (dlkit export --preprocessing).
    A folder of images is run in batches: one JSON line per file, {"path": ..., "top_k": [...]} (the best class
    unless --top-k says more), in sorted path order. Each class's value is named for what it is: "logit",
    "probability" (a softmax output, or --softmax) or "log_probability"; "score" for a model exported elsewhere.
    With --device rpi4|rpi5|rpi-zero2|aarch64 the outputs are the ones that device computes (emulated here, on
    Raspberry Pi OS trixie's Python 3.13; rpi5-bookworm and the like on bookworm's 3.11).
    """
    from dlkit_runtime import Model
    from dlkit_runtime.classes import ranked
    from dlkit_runtime.datafiles import read_inputs, write_outputs
    from dlkit_runtime.errors import InvalidInputError

    input_path = Path(input_text)  # a text model reads the string itself when it is no file: keep it as typed
    if output is not None and any(output.resolve() == p.resolve() for p in (model, input_path)):
        raise InvalidInputError(f"output '{output}' is an input file; choose another path (inputs are never overwritten)")
    if output is not None and output.exists() and not force:
        raise InvalidInputError(f"output '{output}' exists; pass --force to replace it")

    if input_text and input_path.is_dir():  # "" is Path("."), but for a text model the empty sentence
        _run_folder(model, input_path, output, force, top_k, softmax, providers, threads, cast, strict, device)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        onnx_model = Model(model, providers=providers, threads=threads, strict=strict)
        x = read_inputs(input_text, onnx_model)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if isinstance(x, dict) and len(x) == 1 and len(onnx_model.inputs) == 1:
        x = next(iter(x.values()))  # one array in an .npz: the only input, whatever its name
    if device is not None:
        if providers or strict:
            raise InvalidInputError("--device runs on the emulated device's CPU; leave out --providers and --strict")
        from dlkit.device import Emulator

        with Emulator(device, threads=threads) as emulator:
            remote = emulator.load(model)
            outputs = remote.predict(x, cast=cast)
            ran_on = (f"{', '.join(remote.providers)} of the emulated {device} ({emulator.device.cpu}, "
                      f"{emulator.computed_on()['os']}, Python {emulator.info['python']})")
            providers_used = list(remote.providers)
    else:
        outputs = onnx_model.predict(x, cast=cast)
        ran_on, providers_used = ", ".join(onnx_model.providers), list(onnx_model.providers)
    first = onnx_model.outputs[0].name
    classes = (ranked(outputs[first], top_k, onnx_model.labels, first, onnx_model.output_kind(first), softmax)
               if top_k else None)
    if output is not None:
        output = write_outputs(output, outputs, force=force)
    if as_json:
        click.echo(_render.dumps({
            "providers": providers_used, "device": device,
            "outputs": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in outputs.items()},
            "top_k": [[p.to_dict() for p in row] for row in classes] if classes else None,
            "saved": str(output) if output else None,
        }))
        return
    click.echo(f"Ran {onnx_model.path.name} on {ran_on}")
    click.echo(_render.table(["output", "dtype", "shape", "min", "max"],
                             [[k, str(v.dtype), str(tuple(v.shape)), *_range(v)] for k, v in outputs.items()]))
    if classes:
        click.echo("")
        click.echo(_render.table(["sample", *[f"top {i + 1}" for i in range(len(classes[0]))]],
                                 [[n, *[_described(p) for p in row]] for n, row in enumerate(classes)]))
    if output is not None:
        click.echo(f"saved {len(outputs)} output(s) to {output}")


def _run_folder(model, folder, output, force, top_k, softmax, providers, threads, cast, strict, device) -> None:
    """One JSON line per image of `folder` (the host's kernels, or the emulated device's)."""
    import contextlib

    from dlkit_runtime import Model
    from dlkit_runtime.datafiles import write_outputs
    from dlkit.running.folder import run_folder

    with warnings.catch_warnings(record=True) as caught, contextlib.ExitStack() as stack:
        warnings.simplefilter("always")
        onnx_model = Model(model, providers=providers, threads=threads, strict=strict)
        predict = lambda x: onnx_model.predict(x, cast=cast)  # noqa: E731
        if device is not None:
            from dlkit.device import Emulator

            remote = stack.enter_context(Emulator(device, threads=threads)).load(model)
            predict = lambda x: remote.predict(x, cast=cast)  # noqa: E731
        outputs = run_folder(folder, onnx_model, predict, top_k, softmax,
                             lambda record: click.echo(_render.dumps_line(record)))
    for message in dict.fromkeys(str(w.message) for w in caught):  # once each, not once per image
        click.echo(f"warning: {message}", err=True)
    if output is not None:
        write_outputs(output, outputs, force=force)


def _described(prediction) -> str:
    """"cat (logit 2.21)", "cat (probability 0.873)", or "cat (2.21)" when the model does not say."""
    kind = "" if prediction.kind == "score" else f"{prediction.kind.replace('_', '-')} "
    return f"{prediction.label} ({kind}{prediction.score:.3g})"


def _range(array):
    if array.size == 0 or array.dtype.kind not in "biuf":
        return ["", ""]
    return [float(array.min()), float(array.max())]
