"""The photo model's int8 file on the Pis' own cores (emulated Cortex-A72 and A76) against this host's kernels:
the figures `dlkit quantize` and `dlkit verify` compute on the host stand for the Pi's only if the two compute
(almost) the same outputs from the same file."""

from __future__ import annotations

from pathlib import Path

import pytest

import dlkit

pytestmark = pytest.mark.arm

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "sample_models" / "data" / "photos"
SAMPLES = 160  # every 7th of the 1,200 test photos: 40 per class (the emulated Pi runs ~100x slower)


@pytest.fixture(scope="module")
def photo_int8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photo-device")
    exported = dlkit.export(ROOT / "sample_models" / "trained" / "mobilenet.keras", folder / "mobilenet.onnx")
    return dlkit.quantize(exported.path, folder / "mobilenet.int8.onnx", calibration=PHOTOS / "train",
                          target="rpi5").path


@pytest.mark.parametrize("device", ["rpi4", "rpi5"])
def test_host_int8_outputs_are_the_pis(arm_env, photo_int8, tmp_path, device):
    """The same uint8/int8 QDQ file: the host's outputs (the reference) against the Pi's (the candidate).

    onnxruntime fuses the same graph on both (uint8 activations); convolutions requantize with round-half-even on
    both, and only QLinearAdd differs (float on x86, 22-bit fixed point on ARM: one step of a residual's scale at
    most, here and there). Ten residual Adds of one step each stay far below int8's own error against float
    (~0.04 relative on this model): 0.02 relative bounds the difference and leaves no room for a wrong kernel or
    another graph (int8 activations gave 0.055). Agreement: a class changes only at a near-tie, 1 in 160 at most."""
    import shutil

    sample = tmp_path / "photos"
    for i, photo in enumerate(sorted((PHOTOS / "test").glob("*/*.jpg"))[::7][:SAMPLES]):
        (sample / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sample / photo.parent.name / f"{i:04d}.jpg")
    result = dlkit.verify(photo_int8, [photo_int8], data=sample, device=device, min_agreement=None,
                          max_accuracy_drop=None)
    figures = result.candidates[0].outputs[0]
    assert result.candidates[0].computed_on["device"] == device
    assert figures.relative_error <= 0.02 and figures.top1_agreement >= 1 - 1 / SAMPLES, figures.to_dict()
