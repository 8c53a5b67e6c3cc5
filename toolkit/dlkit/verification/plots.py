"""The report's figures without a plotting library: inline SVG charts and PNG data URIs (zlib + struct)."""

from __future__ import annotations

import base64
import struct
import zlib
from html import escape
from typing import Sequence

import numpy as np

_FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="#333"'


def png(pixels: np.ndarray) -> bytes:
    """Encodes uint8 pixels (H, W) grey or (H, W, 3) RGB as a PNG file."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    height, width = pixels.shape[:2]
    color = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def image_data_uri(sample: np.ndarray, layout: str = "NHWC", size: int = 84) -> str | None:
    """A PNG data URI of one image sample ((H, W), (H, W, C) or (C, H, W)), or None if it is not an image."""
    x = np.asarray(sample, np.float64)
    if x.ndim == 3 and layout == "NCHW":
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)) or min(x.shape[:2]) < 4:
        return None
    low, high = float(np.nanmin(x)), float(np.nanmax(x))
    if 0 <= low and high <= 1:
        x = x * 255
    elif not (0 <= low and high <= 255):
        x = (x - low) / ((high - low) or 1) * 255
    x = np.nan_to_num(np.clip(np.round(x), 0, 255)).astype(np.uint8)
    scale = max(1, size // max(x.shape[:2]))
    x = np.repeat(np.repeat(x, scale, axis=0), scale, axis=1)
    return "data:image/png;base64," + base64.b64encode(png(x)).decode("ascii")


def histogram(edges: Sequence[float], counts: Sequence[int], *, width: int = 560, height: int = 220,
              title: str = "") -> str:
    """Bars of per-sample error counts over log-spaced bins (the first bin is everything below edges[0])."""
    counts = list(counts)
    nonzero = [i for i, c in enumerate(counts) if c]
    if not nonzero:
        return _empty(width, height, "no samples")
    first, last = max(0, nonzero[0] - 1), min(len(counts) - 1, nonzero[-1] + 1)
    shown = counts[first:last + 1]
    left, bottom, top = 48, 36, 22
    plot_w, plot_h = width - left - 10, height - bottom - top
    bar = plot_w / len(shown)
    peak = max(shown)
    parts = [_svg_open(width, height), f'<text x="{left}" y="14" {_FONT} font-weight="600">{escape(title)}</text>']
    for j in range(5):  # horizontal grid, counts on a square-root scale so small tails stay visible
        value = peak * (j / 4) ** 2
        y = top + plot_h - plot_h * (j / 4)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" {_FONT} text-anchor="end">{value:.0f}</text>')
    for k, count in enumerate(shown):
        h = plot_h * (count / peak) ** 0.5 if peak else 0
        x = left + k * bar
        label = _bin_label(edges, first + k)
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="#3b82f6"><title>{label}: {count}</title></rect>')
    for k in range(len(shown)):
        index = first + k
        if index == 0 or ((index - 1) % 4 == 0 and not (index == 1 and first == 0)):  # one tick per decade
            x = left + k * bar
            text = f"&lt;{edges[0]:.0e}" if index == 0 else f"{edges[index - 1]:.0e}"
            parts.append(f'<text x="{x:.1f}" y="{height - 20}" {_FONT}>{text}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" {_FONT} text-anchor="middle">'
                 'per-sample max abs error (log scale)</text></svg>')
    return "".join(parts)


def _bin_label(edges, index: int) -> str:
    if index == 0:
        return f"< {edges[0]:.0e}"
    if index >= len(edges):
        return f">= {edges[-1]:.0e}"
    return f"{edges[index - 1]:.1e} to {edges[index]:.1e}"


def confusion(matrix: Sequence[Sequence[int]], names: Sequence[str] | None = None, *, cell: int = 0) -> str:
    """A heat map of reference (rows) against candidate (columns) top-1 classes; off-diagonal cells in red."""
    m = np.asarray(matrix, np.int64)
    n = len(m)
    cell = cell or max(6, min(40, 440 // max(n, 1)))
    names = [str(x) for x in (names or range(n))][:n]
    names += [str(i) for i in range(len(names), n)]
    left, top = 70, 40
    width, height = left + n * cell + 20, top + n * cell + 20
    diagonal_peak = max(int(m.diagonal().max(initial=0)), 1)
    off = m.copy()
    np.fill_diagonal(off, 0)
    off_peak = max(int(off.max(initial=0)), 1)
    parts = [_svg_open(width, height),
             f'<text x="{left}" y="12" {_FONT}>candidate top-1 class &#8594;</text>',
             f'<text x="10" y="{top + n * cell / 2:.0f}" {_FONT} transform="rotate(-90 10 {top + n * cell / 2:.0f})"'
             ' text-anchor="middle">reference top-1 class &#8594;</text>']
    for i in range(n):
        for j in range(n):
            count = int(m[i, j])
            if i == j:
                shade = 0.15 + 0.85 * count / diagonal_peak if count else 0
                fill = f"rgba(37,99,235,{shade:.2f})" if count else "#fafafa"
            else:
                fill = f"rgba(220,38,38,{0.25 + 0.75 * count / off_peak:.2f})" if count else "#fafafa"
            x, y = left + j * cell, top + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                         f'<title>reference {escape(names[i])}, candidate {escape(names[j])}: {count}</title></rect>')
            if cell >= 28 and count:
                color = "#fff" if (i == j and count / diagonal_peak > 0.5) else "#111"
                parts.append(f'<text x="{x + cell / 2 - 0.5:.1f}" y="{y + cell / 2 + 3:.1f}" font-size="9" '
                             f'font-family="system-ui, sans-serif" fill="{color}" text-anchor="middle">{count}</text>')
    if cell >= 12:
        for k in range(n):
            label = escape(names[k][:8])
            parts.append(f'<text x="{left + k * cell + cell / 2:.1f}" y="{top - 6}" {_FONT} text-anchor="middle">'
                         f'{label}</text>')
            parts.append(f'<text x="{left - 6}" y="{top + k * cell + cell / 2 + 4:.1f}" {_FONT} text-anchor="end">'
                         f'{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars(labels: Sequence[str], values: Sequence[float], *, unit: str = "dB", width: int = 560) -> str:
    """Horizontal bars, one per label (lower values, worse, drawn in a warmer colour)."""
    if not labels:
        return _empty(width, 60, "nothing to show")
    row, left = 22, 260
    height = row * len(labels) + 30
    finite = [v for v in values if np.isfinite(v)]
    peak = max(finite) if finite else 1.0
    parts = [_svg_open(width, height)]
    for k, (label, value) in enumerate(zip(labels, values)):
        y = 10 + k * row
        w = (width - left - 70) * (min(value, peak) / peak if peak > 0 and np.isfinite(value) else 1)
        color = "#dc2626" if value < 30 else "#f59e0b" if value < 40 else "#10b981"
        short = label if len(label) <= 40 else "..." + label[-37:]
        parts.append(f'<text x="{left - 6}" y="{y + 14}" {_FONT} text-anchor="end"><title>{escape(label)}</title>'
                     f'{escape(short)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" {_FONT}>{value:.1f} {unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">')


def _empty(width: int, height: int, text: str) -> str:
    return f'{_svg_open(width, height)}<text x="10" y="{height / 2:.0f}" {_FONT}>{escape(text)}</text></svg>'
