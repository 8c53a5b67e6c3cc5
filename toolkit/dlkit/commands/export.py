"""`dlkit export`: a thin shell over `dlkit.export`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.commands._options import load_custom_objects
from dlkit.errors import InvalidInputError


@click.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="ONNX file to write. [default: MODEL with .onnx]")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Absolute part of the tolerance: every output element within atol + rtol x |keras| of Keras's.")
@click.option("--rtol", type=float, default=1e-4, show_default=True,
              help="Relative part of the tolerance (a fraction of each Keras output element).")
@click.option("--sample-data", type=click.Path(path_type=Path),
              help="Inputs to compare on: .npy (one input), .npz keyed by input name, or a folder of images. "
                   "[default: random, in the model's own input range]")
@click.option("--num-samples", type=click.IntRange(min=1), default=16, show_default=True, help="Samples to compare.")
@click.option("--input", "input_specs", multiple=True, metavar="NAME:DTYPE[D0,...]",
              help="Input signature, e.g. 'tokens:int32[N,100]'; fixes shapes or adds a subclassed model's inputs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Fix the batch axis to this size. [default: dynamic]")
@click.option("--rename", multiple=True, metavar="OLD=NEW", help="Rename an input or output.")
@click.option("--labels", type=click.Path(path_type=Path), help="Class labels, one per line, stored in the metadata.")
@click.option("--preprocessing", metavar="JSON", help="Preprocessing hints stored in the metadata, e.g. '{\"scale\": 0.00392}'.")
@click.option("--custom-objects", type=click.Path(path_type=Path),
              help="A Python file that registers the custom classes the Keras file needs.")
@click.option("--no-simplify", is_flag=True, help="Skip graph cleanup (onnxslim and dlkit's folds).")
@click.option("--generic-rnn", is_flag=True, help="Keep GRU/LSTM as tf2onnx's generic Loop instead of native ops.")
@click.option("--no-safe-mode", is_flag=True, help="Allow Lambda layers' code to load. Only for files you trust.")
@click.option("--with-decoding/--no-decoding", "with_decoding", default=None,
              help="For an object detector (KerasHub's RetinaNet): put its box decoding and NonMaxSuppression in the "
                   "graph, giving boxes, scores, classes and num_detections as predict() does. [default: on for "
                   "detectors, whose raw heads need the anchors and decoder of Python; --no-decoding: the raw heads]")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, output, opset, atol, rtol, sample_data, num_samples, input_specs, batch_size, rename, labels,
            preprocessing, custom_objects, no_simplify, generic_rnn, no_safe_mode, with_decoding, force, as_json):
    """Export MODEL (.keras, .h5 or a SavedModel folder) to ONNX.

    The export is run by Keras and onnxruntime on the same inputs; if any output element differs by more than
    --atol + --rtol x |keras|, no file is written and the exit code is 4.
    """
    from dlkit.exporting.pipeline import export

    result = export(
        model, output, opset=opset, atol=atol, rtol=rtol, sample_data=sample_data, num_samples=num_samples,
        input_specs=input_specs, batch_size=batch_size, rename=rename, labels=labels,
        preprocessing=_json_option(preprocessing), simplify=not no_simplify, native_rnn=not generic_rnn,
        safe_mode=not no_safe_mode, custom_objects=load_custom_objects(custom_objects), force=force,
        with_decoding=with_decoding,
        stage=None if as_json else _render.status_line("export"),
    )
    if as_json:
        _render.emit_json(result)
        return
    click.echo(f"Exported {result.source} -> {result.path} ({_render.size(result.size_bytes)}, opset {result.opset}, "
               f"{result.seconds:.1f} s)")
    click.echo(_render.table(["", "name", "dtype", "shape"],
                             [["in", t.name, t.dtype, str(list(t.shape))] for t in result.inputs]
                             + [["out", t.name, t.dtype, str(list(t.shape))] for t in result.outputs]))
    click.echo(f"\nParity against Keras on {result.num_samples} samples ({result.sample_source}), atol {result.atol:g}, "
               f"rtol {result.rtol:g}:")
    click.echo(_render.table(["output", "max abs error", "mean abs error", "cosine"],
                             [[p.name, p.max_abs_error, p.mean_abs_error, p.cosine_similarity] for p in result.parity]))
    for layer in result.native_recurrent:
        click.echo(f"native ONNX recurrent op: {layer}")
    for layer, reason in result.generic_recurrent.items():
        click.echo(f"generic Loop kept for {layer}: {reason}")
    for note in (*result.cleanup, *result.notes):
        click.echo(f"note: {note}")


def _json_option(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"--preprocessing is not valid JSON ({err.msg}); write e.g. '{{\"scale\": 0.00392}}'") from None
