"""The HTML report of `dlkit verify`: one self-contained file (inline CSS, SVG plots, PNG data URIs).

It shows, per candidate, the table of figures, a histogram of per-sample error, the confusion between the
reference's and the candidate's top-1 classes, the samples that disagree most (as images for image inputs) and,
for a quantized candidate, the quantized nodes with the lowest signal-to-quantization-noise ratio.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlkit.verification.plots as plots

if TYPE_CHECKING:
    from dlkit.core.agreement import OutputFigures
    from dlkit.verification.results import CandidateResult, VerifyResult

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1180px;color:#1f2937;
background:#fff;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #e5e7eb;
padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px;color:#374151}
.meta{color:#6b7280;font-size:13px}.verdict{display:inline-block;padding:6px 14px;border-radius:6px;
font-weight:700;font-size:16px;margin:10px 0}.pass{background:#dcfce7;color:#166534}.fail{background:#fee2e2;
color:#991b1b}table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{padding:5px 10px;
border-bottom:1px solid #e5e7eb;text-align:right}th{background:#f3f4f6}td:first-child,th:first-child{text-align:left}
td.bad{background:#fee2e2;color:#991b1b;font-weight:600}ul.breaches{color:#991b1b;font-size:14px}
.row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}.card{border:1px solid #e5e7eb;border-radius:8px;
padding:10px 12px}.samples{display:flex;flex-wrap:wrap;gap:10px}.sample{border:1px solid #e5e7eb;border-radius:6px;
padding:6px;font-size:12px;text-align:center;width:108px}.sample img{image-rendering:pixelated;display:block;
margin:0 auto 4px}.sample .no{color:#991b1b;font-weight:600}.notes{color:#6b7280;font-size:13px}
"""

_COLUMNS = (
    ("max_abs_error", "max abs error"), ("mean_abs_error", "mean abs error"), ("relative_error", "relative error"),
    ("cosine_similarity", "cosine"), ("top1_agreement", "top-1 agreement"), ("top5_agreement", "top-5 agreement"),
    ("reference_accuracy", "reference accuracy"), ("candidate_accuracy", "candidate accuracy"),
    ("accuracy_drop", "accuracy drop"),
)


def render(result: VerifyResult) -> str:
    """The report as one HTML document.

    Args:
        result: what `dlkit.verify` returned.

    Returns:
        The HTML text, with no external resources.
    """
    verdict = "PASSED" if result.passed else f"FAILED ({len(result.breaches)} breach{'es' * (len(result.breaches) != 1)})"
    limits = ", ".join(f"{k} {v:g}" for k, v in result.thresholds.items() if v is not None) or "none"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>dlkit verify: {escape(Path(result.reference).name)}</title><style>{_CSS}</style></head><body>",
        "<h1>dlkit verify</h1>",
        f"<div class='meta'>reference <b>{escape(result.reference)}</b> &middot; data {escape(result.data)} &middot; "
        f"{result.num_samples:,} samples &middot; thresholds: {escape(limits)}"
        f"{'' if result.device else f' &middot; {result.seconds:.1f} s'}</div>",
        f"<div class='meta'>{'reference ' if result.device else ''}computed on this host: "
        f"{escape(_host(result))}</div>",
        *([f"<div class='meta'>candidates computed on {escape(_device(result.device))}</div>"] if result.device else []),
        f"<div class='verdict {'pass' if result.passed else 'fail'}'>{verdict}</div>",
    ]
    if result.warnings:
        parts.append("<ul class='notes'>" + "".join(f"<li>warning: {escape(w)}</li>" for w in result.warnings)
                     + "</ul>")
    if result.breaches:
        parts.append("<ul class='breaches'>" + "".join(f"<li>{escape(b.message)}</li>" for b in result.breaches)
                     + "</ul>")
    parts.append("<h2>Figures</h2>" + _table(result))
    if any(c.tasks for c in result.candidates):
        parts.append(_tasks(result))
    for candidate in result.candidates:
        parts.append(_candidate(result, candidate))
    if result.decoding is not None:
        parts.append(_decoding(result.decoding))
    if result.notes:
        parts.append("<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in result.notes)
                     + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(result: VerifyResult, path: str | os.PathLike) -> Path:
    """Writes `render(result)` to `path` (atomically) and returns the path."""
    from dlkit.core import files as _files

    path = Path(path)
    _files.write_atomic(path, render(result).encode("utf-8"))
    return path


def _decoding(check) -> str:
    """dlkit's pixels against TensorFlow's on a sample of the folder, and the reference's figures both ways."""
    rows = [("images compared", f"{check.samples}" + (f" ({check.skipped} skipped)" if check.skipped else "")),
            ("pixel values that differ", f"{100 * check.fraction_differing:.2f}%"),
            ("max / mean abs difference (levels)", f"{check.max_abs_level:.4g} / {check.mean_abs_level:.4g}")]
    if check.max_abs_output_difference is not None:
        rows.append((f"max abs difference of output '{check.output}'", f"{check.max_abs_output_difference:.3g}"))
    if check.top1_agreement is not None:
        rows.append(("reference top-1 agreement", f"{100 * check.top1_agreement:.2f}%"))
    if check.accuracy_dlkit is not None:
        rows.append(("reference top-1 accuracy: dlkit's / TensorFlow's pixels",
                     f"{100 * check.accuracy_dlkit:.2f}% / {100 * check.accuracy_tensorflow:.2f}%"))
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return (f"<h2>Decoding</h2><div class='meta'>dlkit's pixels (Pillow) against TensorFlow's "
            f"({escape(check.pipeline)}), the pixels a Keras model is trained on</div><table>{body}</table>")


def _tasks(result: VerifyResult) -> str:
    """Detections, segmentation maps and embeddings: one line of figures per candidate and task."""
    rows = "".join(f"<tr><td>{escape(Path(c.path).name)}</td><td>{escape(c.where)}</td><td>{escape(t.summary)}</td></tr>"
                   for c in result.candidates for t in c.tasks)
    return ("<h2>Detections, segmentation maps, embeddings</h2><div class='meta'>the candidate's outputs against the "
            "reference's, by what each output is (recorded at export)</div><table><tr><th>candidate</th>"
            f"<th>computed on</th><th>figures</th></tr>{rows}</table>")


def _table(result: VerifyResult) -> str:
    shown = [(key, title) for key, title in _COLUMNS
             if any(getattr(o, key) is not None for c in result.candidates for o in c.outputs)]
    bad = {(b.candidate, b.output, b.figure) for b in result.breaches}
    head = ("<tr><th>candidate</th><th>kind</th><th>computed on</th><th>output</th>"
            + "".join(f"<th>{t}</th>" for _, t in shown) + "</tr>")
    rows = []
    for c in result.candidates:
        for o in c.outputs:
            cells = []
            for key, _ in shown:
                flagged = c.judged and ((c.path, o.name, key) in bad or (key == "candidate_accuracy" and
                                                                         (c.path, o.name, "accuracy_drop") in bad))
                cells.append(f"<td{' class=bad' if flagged else ''}>{_number(key, getattr(o, key))}</td>")
            where = escape(_where(c)) + ("" if c.judged else " <span class='meta'>(not judged)</span>")
            rows.append(f"<tr><td>{escape(Path(c.path).name)}</td><td>{escape(_kind(c))}</td><td>{where}</td>"
                        f"<td>{escape(o.name)}</td>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _where(candidate) -> str:
    """`rpi4 (emulated cortex-a72), onnxruntime 1.32.0 on cpu`: whose kernels computed a row."""
    ort = candidate.computed_on.get("onnxruntime") or {}
    return f"{candidate.where}, onnxruntime {ort.get('version', '?')} on {', '.join(ort.get('providers') or ['?'])}"


def _device(device) -> str:
    return (f"{device['device']}, emulated: {device['description']}; qemu {device['cpu_model']}, "
            f"{device['cpu']['family']} CPU, onnxruntime {device['onnxruntime']['version']}, Python "
            f"{device['python']} (emulated timings mean nothing and are not shown)")


def _host(result: VerifyResult) -> str:
    host, ort = result.host_cpu, result.onnxruntime
    return (f"{host.get('family', '?')} CPU ({', '.join(host.get('features') or ['-'])}"
            f"{'; ' + host['model'] if host.get('model') else ''}), onnxruntime {ort.get('version', '?')} on "
            f"{', '.join(ort.get('providers') or ['?'])}")


def _kind(candidate) -> str:
    """`int8 (dynamic, batch 1) for arm64`: the precision, how it ran and what it was made for."""
    if candidate.kind != "int8":
        return candidate.kind
    how = f"dynamic, batch {candidate.batch_size}" if candidate.dynamic else "static"
    return f"int8 ({how})" + (f" for {candidate.target}" if candidate.target else "")


def _number(key: str, value: Any) -> str:
    if value is None:
        return "&ndash;"
    if "agreement" in key or "accuracy" in key:
        return f"{100 * value:.2f}%" if key != "accuracy_drop" else f"{100 * value:+.2f} pts"
    if key == "cosine_similarity":
        return f"{value:.6f}"
    return f"{value:.3g}"


def _candidate(result: VerifyResult, candidate: CandidateResult) -> str:
    name = escape(Path(candidate.path).name)
    verdict = ("passed" if candidate.passed else "failed") if candidate.judged else "not judged"
    parts = [f"<h2>{name} <span class='meta'>({candidate.kind}, on {escape(candidate.where)}, {verdict})</span></h2>"]
    for output in candidate.outputs:
        parts.append(f"<h3>output '{escape(output.name)}'</h3><div class='row'>")
        parts.append("<div class='card'>" + plots.histogram(_edges(), output.histogram,
                                                            title="error per sample") + "</div>")
        if output.confusion is not None:
            parts.append("<div class='card'><div class='meta'>reference vs candidate top-1 "
                         f"({_off_diagonal(output.confusion)} samples disagree)</div>"
                         + plots.confusion(output.confusion, result.class_names) + "</div>")
        parts.append("</div>")
        if output.worst:
            parts.append(_worst(result, output))
    if candidate.nodes:
        parts.append("<h3>quantized nodes with the largest error (lowest SQNR first)</h3><div class='card'>"
                     + plots.bars([f"{n.name} ({n.op_type})" for n in candidate.nodes],
                                  [n.sqnr_db for n in candidate.nodes]) + "</div>")
    return "".join(parts)


def _edges() -> tuple[float, ...]:
    from dlkit.core.agreement import HISTOGRAM_EDGES

    return HISTOGRAM_EDGES


def _off_diagonal(matrix) -> int:
    return sum(v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j)


def _worst(result: VerifyResult, output: OutputFigures) -> str:
    names = result.class_names
    image_input = next((i for i in result.inputs if len(i.shape) in (3, 4)), None)
    layout = "NCHW" if image_input is not None and len(image_input.shape) == 4 and image_input.shape[1] in (1, 3) \
        and image_input.shape[-1] not in (1, 3) else "NHWC"
    cards = []
    shown = [s for s in output.worst if s.error > 0 or s.reference_class != s.candidate_class]
    if not shown:
        return "<div class='meta'>no sample differs from the reference</div>"
    for sample in shown:
        uri = plots.image_data_uri(sample.inputs[image_input.name], layout) if image_input is not None \
            and image_input.name in sample.inputs else None
        image = f"<img src='{uri}' alt='sample {sample.index}'>" if uri else ""
        lines = [f"#{sample.index}"]
        if sample.reference_class is not None:
            same = sample.reference_class == sample.candidate_class
            lines.append(f"<span{'' if same else ' class=no'}>ref {_cls(sample.reference_class, names)} &rarr; "
                         f"cand {_cls(sample.candidate_class, names)}</span>")
        if sample.label is not None:
            lines.append(f"label {_cls(sample.label, names)}")
        lines.append(f"err {sample.error:.3g}")
        cards.append(f"<div class='sample'>{image}{'<br>'.join(lines)}</div>")
    return "<div class='meta'>samples that disagree most (changed class first, then largest error)</div><div class='samples'>" + "".join(cards) + "</div>"


def _cls(index: int | None, names) -> str:
    if index is None:
        return "?"
    return escape(str(names[index])) if names and index < len(names) else str(index)
