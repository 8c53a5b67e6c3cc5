"""`dlkit bench`: a thin shell over `dlkit.bench`."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from dlkit.commands import _render
from dlkit.errors import InvalidInputError


@click.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--batch", default="1", show_default=True, metavar="B1,B2,...", help="Batch sizes to time.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads. [default: physical cores]")
@click.option("--providers", help="Execution providers in order, e.g. 'cuda,cpu'. [default: all available]")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed runs per batch size.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed runs before them.")
@click.option("--compare", type=click.Path(path_type=Path),
              help="A Keras file to time on the same inputs (needs TensorFlow).")
@click.option("--dynamic-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Size of the dynamic axes other than the batch (a sequence length, an image side).")
@click.option("--strict", is_flag=True, help="Fail instead of falling back when a provider is missing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(model, batch, threads, providers, runs, warmup, compare, dynamic_size, strict, as_json):
    """Time MODEL (.onnx) here: cold start, latency percentiles, throughput and peak memory."""
    from dlkit.running.benchmark import bench

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bench(model, _batch_sizes(batch), threads=threads, providers=providers, runs=runs, warmup=warmup,
                       compare=compare, strict=strict, dynamic_size=dynamic_size)
    for w in caught:
        if issubclass(w.category, UserWarning):
            click.echo(f"warning: {w.message}", err=True)
    if as_json:
        _render.emit_json(result)
        return
    click.echo(f"{Path(result.path).name} on {', '.join(result.providers)}, {result.threads} thread(s): cold start "
               f"{result.cold_start_ms:.1f} ms (load {result.load_ms:.1f} + first run {result.first_run_ms:.1f}), "
               f"peak RSS {_render.size(result.peak_rss_bytes)}")
    keras = {t.batch_size: t for t in result.compare}
    headers = ["batch", "p50 ms", "p90 ms", "p99 ms", "samples/s"] + (["keras p50 ms", "keras/onnx"] if keras else [])
    rows = [[t.batch_size, t.p50_ms, t.p90_ms, t.p99_ms, t.throughput_per_s]
            + ([keras[t.batch_size].p50_ms, result.keras_ratio[t.batch_size]] if keras else [])
            for t in result.timings]
    click.echo(_render.table(headers, rows))


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(p) for p in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise InvalidInputError(f"--batch {text!r} is not a list of positive integers; write e.g. --batch 1,32")
    return sizes
