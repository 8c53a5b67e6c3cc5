"""The HTML report of dlkit verify: self-contained, and rendered by a real headless browser (Debian's chromium)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlkit.verification import plots
from dlkit.verification import report
from dlkit.verification.pipeline import verify

BACKGROUND = (255, 255, 255)


def test_png_encoder_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    for pixels in (rng.integers(0, 256, (5, 7), dtype=np.uint8), rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)):
        decoded = np.asarray(Image.open(io.BytesIO(plots.png(pixels))))
        assert decoded.shape == pixels.shape and np.array_equal(decoded, pixels)


def test_image_data_uri_scales_floats_and_skips_non_images():
    uri = plots.image_data_uri(np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28, 1))
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.size == (84, 84) and np.asarray(image).max() == 255  # [0, 1] floats become 0-255, 3x upscaled
    assert plots.image_data_uri(np.zeros(10, np.float32)) is None  # a vector is not an image


def test_report_is_self_contained_with_table_plots_and_images(cnn_verification, cnn_int8, cnn_damaged):
    html = Path(cnn_verification.report).read_text()
    assert html.startswith("<!DOCTYPE html>") and "FAILED (2 breaches)" in html
    assert not re.search(r"""(src|href)=['"]?(https?:|//)""", html)  # nothing fetched from elsewhere
    for name in ("cnn.onnx", cnn_int8.name, cnn_damaged.name):
        assert f"<td>{name}</td>" in html
    assert html.count("error per sample") == 3 and html.count("reference vs candidate top-1") == 3
    assert html.count("quantized nodes with the largest error") == 1  # the int8 candidate only
    assert "class=bad" in html and "top1_agreement" in html  # the breached cells are marked
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(uris) >= 12  # the worst samples of the int8 and damaged candidates (the float one has none)
    assert Image.open(io.BytesIO(base64.b64decode(uris[0]))).size == (84, 84)


def test_report_of_a_non_classifier(tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
                              [numpy_helper.from_array(np.ones((4, 1), np.float32), "w")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    result = verify(tmp_path / "m.onnx", tmp_path / "m.onnx", random=50, report=tmp_path / "r.html")
    html = report.render(result)
    assert "PASSED" in html and "top-1" not in html.split("<h2>Figures</h2>")[1].split("</table>")[0]
    assert "<img" not in html and "no sample differs" in html


def test_screenshot_in_headless_chromium(cnn_verification, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed; the report's rendering test needs it: apt-get install -y chromium")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    Path(cnn_verification.report).resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (2000, 1280, 3)

    def rows(color, tol=6):
        mask = np.abs(pixels - color).max(axis=-1) <= tol
        return np.nonzero(mask.any(axis=1))[0], int(mask.sum())

    assert (np.abs(pixels - BACKGROUND).max(axis=-1) > 30).mean() > 0.05  # not blank
    header_rows, header_pixels = rows((243, 244, 246))  # the figures table's header (#f3f4f6)
    bar_rows, bar_pixels = rows((59, 130, 246))  # histogram bars (#3b82f6)
    assert header_pixels > 5_000 and header_rows.min() < 400, "the table of figures is missing at the top"
    assert bar_pixels > 5_000 and bar_rows.min() > header_rows.min(), "no histogram below the table"
    # The damaged candidate breaches on every machine: the FAILED verdict box and its flagged table cells share the
    # light red #fee2e2, near the top. (Not the int8 candidate's confusion cells: which digits int8 confuses, if
    # any, depends on the CPU's int8 kernels.)
    fail_rows, fail_pixels = rows((254, 226, 226), tol=3)
    assert fail_pixels > 3_000 and fail_rows.min() < 400, "no FAILED verdict or flagged cells at the top"
    _, black = rows((0, 0, 0), tol=2)
    assert black > 20_000  # the MNIST digits of the worst samples (black backgrounds)
