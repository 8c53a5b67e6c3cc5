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
def photo_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("photo-device")
    exported = dlkit.export(ROOT / "sample_models" / "trained" / "mobilenet.keras", folder / "mobilenet.onnx")
    int8 = dlkit.quantize(exported.path, folder / "mobilenet.int8.onnx", calibration=PHOTOS / "train",
                          target="rpi5").path
    return {"float": exported.path, "int8": int8}


@pytest.fixture(scope="module")
def photo_int8(photo_files) -> str:
    return photo_files["int8"]


@pytest.mark.parametrize("device", ["rpi4", "rpi5"])
def test_int8_is_less_work_than_float_on_the_pis(arm_env, photo_files, device):
    """Static int8 pays on the Pis' own cores: fewer guest instructions per inference than the float file, counted
    on the emulated Cortex-A72 (no dot product: int8 products widen to 16 bits, 8 per instruction, against 4
    float multiply-adds per FMLA) and Cortex-A76 (UDOT: 16 per instruction). The float stem (Resize, Rescaling) is
    the same work in both files, so int8 costs less unless a layout Transpose or a float fallback crept in; the
    bound is the claim itself (measured about 0.6 on the A72, 0.44 on the A76)."""
    from PIL import Image
    import numpy as np
    from dlkit.device import Workload, count_many

    photo = sorted((PHOTOS / "test").glob("*/*.jpg"))[0]
    x = np.asarray(Image.open(photo).convert("RGB"), np.float32)[None]
    floats, int8 = count_many(device, [Workload(photo_files["float"], x), Workload(photo_files["int8"], x)], runs=2)
    assert floats.cpu == {"rpi4": "cortex-a72", "rpi5": "cortex-a76"}[device]
    assert int8.instructions_per_inference < floats.instructions_per_inference, (int8.to_dict(), floats.to_dict())


@pytest.mark.parametrize("device", ["rpi4", "rpi5"])
def test_host_int8_outputs_are_the_pis(arm_env, photo_int8, tmp_path, device):
    """The same uint8/int8 QDQ file: the host's outputs (the reference) against the Pi's (the candidate).

    onnxruntime fuses the same graph on both (uint8 activations); convolutions requantize with round-half-even on
    both, and only QLinearAdd differs (float on x86, 22-bit fixed point on ARM: one step of a residual's scale at
    most, here and there). Ten residual Adds of one step each stay far below int8's own error against float
    (~0.025 relative on this model): 0.02 relative bounds the difference and leaves no room for a wrong kernel or
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
