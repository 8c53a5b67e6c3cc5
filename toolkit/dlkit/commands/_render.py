"""Shared rendering for the verbs: plain tables and JSON, on stdout."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import click


JSON_EMITTED = "dlkit.json_emitted"  # in click's shared context meta: the verb printed its JSON already


def emit_json(result: Any) -> None:
    click.echo(dumps(result.to_dict()))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[JSON_EMITTED] = True


def dumps(value: Any) -> str:
    """Strict JSON (RFC 8259): a NaN or infinite figure becomes null, which every parser reads."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def dumps_line(value: Any) -> str:
    """`dumps` on one line: a JSON Lines record."""
    return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


def size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return str(num_bytes)


def status_line(verb: str):
    """A callback printing one line per stage on stderr ("export: converting with tf2onnx ..."), so a person
    waiting sees where the time goes; stdout keeps the result alone."""
    def show(stage: str) -> None:
        click.echo(f"{verb}: {stage} ...", err=True)

    return show


class Progress:
    """A click progress bar on stderr, opened on the first report; a report below the last starts a new pass.

    Used as `with Progress("calibrating", enabled=not as_json) as progress: fn(..., progress=progress)`:
    the context gives None when disabled, so the library is called without a callback.
    """

    def __init__(self, label: str, enabled: bool = True):
        self.label, self.enabled = label, enabled
        self.bar = None

    def __enter__(self):
        return self if self.enabled else None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        if done < self.bar.pos:  # a new pass (the accuracy bound re-quantizes)
            self.bar.pos = 0
        self.bar.update(done - self.bar.pos)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
