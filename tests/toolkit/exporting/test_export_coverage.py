"""One model of every keras.applications family exports through dlkit with parity (issue 14's coverage), each in a
fresh process as bench/export_coverage.py runs it (the bench also runs Keras' own export and plain tf2onnx)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench.export_coverage import ATOL, FAMILIES, measure  # noqa: E402


@pytest.mark.slow
def test_every_keras_applications_family_exports_with_parity(tmp_path):
    """Built with weights=None, 10 classes and logits out, on 4 random images. The bound is 1e-4 of the outputs'
    scale (max |logit|, at least 1): float32 round-off through 20-800 layers stays orders of magnitude below it,
    while a wrong op (a missed group, a flipped axis, a dropped normalization) moves logits by their own scale.
    Two families at a time (two cores; the largest, InceptionResNetV2, peaks near 11 GB alone)."""
    with ThreadPoolExecutor(2) as pool:
        rows = dict(zip(FAMILIES, pool.map(lambda family: measure("dlkit", family, tmp_path), FAMILIES)))
    failed = {family: row.get("error") for family, row in rows.items() if not row["ok"]}
    assert not failed, failed
    assert max(row["relative_error"] for row in rows.values()) <= ATOL
