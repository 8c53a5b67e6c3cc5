"""Whether int8 pays where the model will run: the quantized model's cost against the float model's, measured on
the kernels of the target, never guessed.

- On this host (the target is its own CPU family): p50 latency of one inference at the deploy batch, one intra-op
  thread, the two models timed in turns so that load on the machine falls on both alike.
- On a Pi (quantize's `device=`, whose emulated process computes the other figures too): guest instructions per
  inference on the device's emulated core (`dlkit.device.count_instructions`): work, not time, and the same on
  every run. For `--target rpi4` without `--device` the result says how to count it.

Anywhere else (a target whose kernels this machine does not have) the payoff is not measured, and the result says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

# Timed on a busy machine, two medians of the same model differ by a few percent: int8 within this fraction of
# float is "about the same" (neither pays nor costs), so that a borderline model does not flip verdicts run to run.
TIME_NOISE = 0.05
_ROUNDS = 5  # turns of (float, int8); the median of the rounds' medians
_ROUND_SECONDS = 0.05  # the least time each model runs per round


@dataclass(frozen=True)
class Payoff:
    """The int8 model's cost against the float one's, where it will run.

    Attributes:
        where: the kernels measured ("host (x86-vnni)", "rpi4 (emulated cortex-a72)"). unit: "ms" (p50, one
        intra-op thread) or "instructions" (per inference). batch: the batch size measured. float_cost, int8_cost:
        the two figures. pays: True when int8 costs less, False when it costs more, None when timings are within
        `TIME_NOISE` of each other.
    """

    where: str
    unit: str
    batch: int
    float_cost: float
    int8_cost: float
    pays: bool | None

    @property
    def ratio(self) -> float:
        return self.int8_cost / self.float_cost if self.float_cost else 1.0

    def describe(self) -> str:
        """One line: what was measured and what it means."""
        figure = (lambda v: f"{v:.3f} ms") if self.unit == "ms" else _instructions
        verdict = {True: "int8 pays", False: "int8 does not pay", None: "int8 and float cost about the same"}
        return (f"{verdict[self.pays]} on {self.where}: {figure(self.int8_cost)} against float's "
                f"{figure(self.float_cost)} at batch {self.batch} ({self.ratio:.2f}x"
                + (", p50, one thread)" if self.unit == "ms" else ", counted on the emulated core)"))

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 4)}


def _instructions(count: float) -> str:
    return f"{count / 1e6:.2f}M instructions" if count >= 1e6 else f"{count / 1e3:.1f}k instructions"


def measure(float_model: Any, int8_model: Any, feeds: Mapping[str, np.ndarray], *, target: Any, batch: int,
            device: str | None = None) -> tuple[Payoff | None, str]:
    """The payoff of `int8_model` (a ModelProto) over `float_model` for `target` (`core.targets.Target`).

    Args:
        feeds: samples by input name; the first `batch` (repeated if fewer) are the inputs measured.
        device: the emulated device quantize computes its figures on, if any: counted there.

    Returns:
        The payoff, or None and why it was not measured.
    """
    x = {name: _rows(array, batch) for name, array in feeds.items()}
    if device is not None:
        return _counted(float_model, int8_model, x, device, batch)
    if _is_device(target.asked):
        return None, (f"int8's payoff on {target.asked} is not measured here: pass --device {target.asked} to count "
                      "its instructions on the emulated core")
    if target.name != target.host.get("family"):
        return None, (f"int8's payoff is not measured: this host's kernels ({target.host.get('family')}) are not "
                      f"{target.name}'s")
    return _timed(float_model, int8_model, x, target, batch), ""


def _rows(array: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(array))
    return np.concatenate([array] * reps)[:batch] if reps > 1 else array[:batch]


def _is_device(name: str) -> bool:
    from dlkit.core.catalogue import EMULATED

    return name in EMULATED


def _timed(float_model, int8_model, x, target, batch: int) -> Payoff:
    from dlkit.core.sessions import session

    sessions = [session(float_model, threads=1), session(int8_model, threads=1)]  # as bench/ compares runtimes
    medians: list[list[float]] = [[], []]
    for _ in range(_ROUNDS):
        for k, session in enumerate(sessions):
            session.run(None, x)
            times, spent = [], 0.0
            while spent < _ROUND_SECONDS or len(times) < 3:
                started = time.perf_counter()
                session.run(None, x)
                times.append(time.perf_counter() - started)
                spent += times[-1]
            medians[k].append(float(np.median(times)))
    float_ms, int8_ms = (1000 * float(np.median(m)) for m in medians)
    ratio = int8_ms / float_ms
    pays = True if ratio < 1 - TIME_NOISE else False if ratio > 1 + TIME_NOISE else None
    return Payoff(f"host ({target.host.get('family')})", "ms", batch, round(float_ms, 4), round(int8_ms, 4), pays)


def _counted(float_model, int8_model, x, device: str, batch: int) -> tuple[Payoff | None, str]:
    import tempfile
    from pathlib import Path

    from dlkit.device import lookup
    from dlkit.device.work import Workload, count_many
    from dlkit.errors import DlkitError

    with tempfile.TemporaryDirectory(prefix="dlkit-payoff-") as folder:
        paths = [Path(folder) / "float.onnx", Path(folder) / "int8.onnx"]
        for path, model in zip(paths, (float_model, int8_model)):
            path.write_bytes(model.SerializeToString())
        try:
            floats, int8 = count_many(device, [Workload(paths[0], x), Workload(paths[1], x)], runs=2, warmup=1)
        except DlkitError as err:
            return None, f"int8's payoff on {device} is not measured: {err}"
    where = f"{device} (emulated {lookup(device).cpu})"
    f, q = floats.instructions_per_inference, int8.instructions_per_inference
    return Payoff(where, "instructions", batch, float(f), float(q), q < f), ""
