"""`dlkit bundle --check-on-device`: a written bundle's own `predict.py`, run on its target's emulated CPU, against
the same model on this host."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.figures import relative_error, top1_agreement
from dlkit.errors import DeviceError, InvalidInputError

CHECK_SAMPLES = 8
# Float: the same graph, another ISA's kernels and summation order. Each output element is a chain of float32 dot
# products whose round-off (2^-24 relative per addition, adding up like a random walk) stays orders of magnitude
# below 1e-4 of the output's scale for the networks people bundle, recurrent ones over hundreds of steps included
# (tests/arm derives 4e-5 for the sample GRU's 50 steps); a wrong wheel or a broken runtime is off by O(1).
FLOAT_RTOL = 1e-4
# int8: the same integer graph; the kernels may round a requantization the other way, one step of an activation's
# scale here and there: a relative error of a few 0.1%, against O(1) when something is broken.
INT8_RTOL = 0.05


@dataclass(frozen=True)
class DeviceCheck:
    """What `check_bundle` measured: the bundle's predict.py on the emulated device against this host.

    Attributes:
        device: the emulated device. cpu_model: qemu's CPU model. os: the OS (and its Python) it ran. samples: inputs compared (random, seeded).
        precision: the bundled model's ("float" or "int8"). outputs: per output, `max_abs_error`,
        `relative_error` and, for (batch, classes) outputs, `top1_agreement`. bound: the relative error allowed.
        passed: every output within it.
    """

    device: str
    cpu_model: str
    samples: int
    precision: str
    outputs: tuple[dict, ...]
    bound: float
    passed: bool
    os: str = ""

    def to_dict(self) -> dict:
        return {"device": self.device, "cpu_model": self.cpu_model, "os": self.os, "samples": self.samples,
                "precision": self.precision, "outputs": [dict(o) for o in self.outputs], "bound": self.bound,
                "passed": self.passed}


def check_bundle(folder: str | Path, device: str, model_file: str, precision: str, *,
                 samples: int = CHECK_SAMPLES, seed: int = 0) -> DeviceCheck:
    """Runs `folder`'s predict.py on `samples` random inputs on the emulated `device` and compares its outputs with
    `dlkit_runtime.Model` on this host.

    Raises:
        MissingDependencyError, DeviceSetupError: as `dlkit.device.setup`.
        DeviceError: predict.py failed on the device (its last lines are in the message).
    """
    from dlkit.device import environment, lookup, requirements
    from dlkit.core.parity import random_inputs
    from dlkit_runtime import Model

    spec = lookup(device)
    folder = Path(folder)
    wanted = (folder / "requirements.txt").read_text().split()
    extra = [r for r in wanted if r not in requirements()]
    if extra:
        raise InvalidInputError(f"the bundle requires {', '.join(extra)}, which the emulated device does not carry; "
                                "bundle with this dlkit's pinned requirements")
    env = environment.build(requirements(), system=spec.os, log=lambda line: None)
    host = Model(folder / model_file, threads=None)
    feeds = random_inputs(host.inputs, samples, seed=seed)
    expected = host.predict(feeds)
    with tempfile.TemporaryDirectory(prefix="dlkit-check-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feeds)
        proc = env.run([folder / "predict.py", inputs, "--top-k", "1"], spec.cpu, timeout=1800)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])[-500:]
        raise DeviceError(f"the bundle's predict.py failed on the emulated {device} (exit {proc.returncode}): {tail}")
    got = {k: np.array(v["values"], dtype=v["dtype"]) for k, v in json.loads(proc.stdout)["outputs"].items()}
    bound = INT8_RTOL if precision == "int8" else FLOAT_RTOL
    figures, passed = [], True
    for name, want in expected.items():
        have = got.get(name)
        if have is None or have.shape != want.shape:
            raise DeviceError(f"the bundle's predict.py on the emulated {device} returned output '{name}' as "
                              f"{None if have is None else have.shape}, this host {want.shape}")
        figures.append(_figures(name, want, have))
        passed = passed and figures[-1]["relative_error"] <= bound
    where = f"{spec.system.description}, Python {spec.system.python}"
    return DeviceCheck(device, spec.cpu, samples, precision, tuple(figures), bound, passed, where)


def _figures(name: str, want: np.ndarray, have: np.ndarray) -> dict[str, Any]:
    diff = have.astype(np.float64) - want.astype(np.float64)
    out: dict[str, Any] = {"name": name, "max_abs_error": float(np.max(np.abs(diff), initial=0.0)),
                           "relative_error": relative_error(want, have)}
    if (agreement := top1_agreement(want, have)) is not None:
        out["top1_agreement"] = agreement
    return out


def check_written(output: Path, archive: bool, target: str, entry: dict) -> dict:
    """`check_bundle` on a bundle `dlkit.bundle` has just written (an archive is unpacked first); a bundle that
    fails it is removed.

    Raises:
        ToleranceError: the device's outputs are too far from this host's.
    """
    import shutil

    from dlkit.bundling.archive import unpack
    from dlkit.errors import ToleranceError

    with tempfile.TemporaryDirectory(prefix="dlkit-bundle-check-") as tmp:
        folder = unpack(output, tmp) if archive else output
        result = check_bundle(folder, target, entry["file"], entry["precision"])
    if not result.passed:
        shutil.rmtree(output) if output.is_dir() else output.unlink()
        worst = max(result.outputs, key=lambda o: o["relative_error"])
        raise ToleranceError(f"on the emulated {target}, the bundle's output '{worst['name']}' is "
                             f"{worst['relative_error']:.3g} (relative) from this host's, above {result.bound:g}; the "
                             f"bundle at {output} was removed")
    return result.to_dict()
