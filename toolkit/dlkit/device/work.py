"""Work per inference on a Pi's core: the guest instructions one prediction executes on the emulated CPU, counted by
a TCG plugin (`instruction_plugin`) in the dynamically linked `qemu-aarch64` (Debian's qemu-user).

The counts are instructions, never time: the emulator runs the device's own onnxruntime kernels (chosen for the
emulated core's features: dot-product int8 on a Cortex-A76, plain NEON on a Cortex-A72), so the counts rank files
and kernels the way the device would execute them, but cache misses, pipelines and memory bandwidth are not in them.
They repeat: the same file, inputs and CPU give the same count within a fraction of a percent.

One emulated process runs a list of workloads: each loads its model on one intra-op and one inter-op thread
(`dlkit_runtime.Model`, as a bundle runs it, or a bare `onnxruntime.InferenceSession`), predicts `warmup` times, and
then `runs` times between a start and a stop marker; instructions per inference are the span's count / `runs`.
Start-up, imports, model loading and warm-up are outside the span, and Python's garbage collector is paused
inside it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dlkit.device.emulated import lookup, requirements
from dlkit.errors import DeviceError, InvalidInputError
from dlkit_runtime import errors as runtime_errors

RUNNERS = ("dlkit", "onnxruntime")
_ARRAY = "__array__"  # the key of an input given as one array (the model's only input)

# Runs in the emulated process: argv[1] is the jobs file, argv[2] the results file (JSON, rewritten after each job).
_GUEST = '''
import gc, json, os, sys, time
import numpy as np
import onnxruntime as ort

START, STOP, ARRAY = {start}, {stop}, {array!r}


def mark(offset):
    try:
        os.lseek(-1, offset, os.SEEK_SET)  # fails (EBADF): the plugin sees the attempt
    except OSError:
        pass


def prepare(job):
    with np.load(job["inputs"], allow_pickle=False) as saved:
        inputs = {{name: saved[name] for name in saved.files}}
    if job["runner"] == "dlkit":
        from dlkit_runtime import Model
        model = Model(job["model"], threads=1)
        x = inputs[ARRAY] if ARRAY in inputs else inputs
        return (lambda: model.predict(x)), list(model.providers)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(job["model"], options, providers=["CPUExecutionProvider"])
    if ARRAY in inputs:
        inputs = {{session.get_inputs()[0].name: inputs[ARRAY]}}
    return (lambda: session.run(None, inputs)), session.get_providers()


jobs, results = json.load(open(sys.argv[1])), {{"onnxruntime": ort.__version__, "numpy": np.__version__, "jobs": []}}
for job in jobs:
    started = time.perf_counter()
    try:
        run, providers = prepare(job)
        for _ in range(job["warmup"]):
            run()
    except Exception as err:
        results["error"], results["type"] = f"{{job['model']}}: {{err}}", type(err).__name__
        break
    gc.collect()
    gc.disable()  # no collection inside the span: the count is the model's work
    mark(START)
    for _ in range(job["runs"]):
        run()
    mark(STOP)
    gc.enable()
    results["jobs"].append({{"providers": providers, "seconds": round(time.perf_counter() - started, 3)}})
    with open(sys.argv[2], "w") as out:
        json.dump(results, out)
with open(sys.argv[2], "w") as out:
    json.dump(results, out)
'''


@dataclass(frozen=True)
class Workload:
    """One model to count: its file, the inputs of one inference (one array, or a dict keyed by input name; the
    batch is in them), and the runner ("dlkit": `dlkit_runtime.Model`; "onnxruntime": a bare InferenceSession)."""

    model: str | os.PathLike
    inputs: Any
    runner: str = "dlkit"


@dataclass(frozen=True)
class WorkCount:
    """Guest instructions per inference of one model on an emulated CPU.

    Attributes:
        device: the device's name. cpu: qemu's CPU model. model: the file. runner: "dlkit" or "onnxruntime".
        batch: the first input's first dimension (None for a scalar). runs, warmup: inferences counted, and run
        before counting. instructions: the count of the whole span (`runs` inferences).
        instructions_per_inference: `instructions / runs`. seconds: the emulated wall time of this model's load,
        warm-up and runs (the wait here, never the device's latency). onnxruntime: its version in the guest.
        providers: what the guest's session ran. qemu: the emulator's version.
    """

    device: str
    cpu: str
    model: str
    runner: str
    batch: int | None
    runs: int
    warmup: int
    instructions: int
    instructions_per_inference: float
    seconds: float
    onnxruntime: str
    providers: tuple[str, ...]
    qemu: str

    def to_dict(self) -> dict:
        return {"device": self.device, "cpu": self.cpu, "model": self.model, "runner": self.runner,
                "batch": self.batch, "runs": self.runs, "warmup": self.warmup, "instructions": self.instructions,
                "instructions_per_inference": self.instructions_per_inference, "seconds": self.seconds,
                "onnxruntime": self.onnxruntime, "providers": list(self.providers), "qemu": self.qemu}


def count_instructions(device: str, model_path: str | os.PathLike, inputs: Any, *, runner: str = "dlkit",
                       runs: int = 3, warmup: int = 2, log: Callable[[str], None] | None = None) -> WorkCount:
    """Guest instructions one inference of `model_path` executes on the emulated `device`'s CPU.

    Args:
        device: an emulated device's name (`dlkit.device.DEVICES`).
        model_path: the `.onnx` file.
        inputs: one inference's inputs: an array (a model with one input) or a dict keyed by input name.
        runner: "dlkit" (`dlkit_runtime.Model`, as a bundle runs it) or "onnxruntime" (a bare InferenceSession).
            Defaults to "dlkit".
        runs: inferences counted; the count is divided by them. Defaults to 3.
        warmup: inferences before counting (onnxruntime's first runs allocate and pack). Defaults to 2.
        log: called with a line on each setup step. Defaults to None: silent.

    Returns:
        WorkCount: `instructions_per_inference`, and the device, CPU and versions that produced it.

    Raises:
        InvalidInputError: an unknown device or runner, runs < 1, warmup < 0, a missing model file, or inputs the
            model rejects.
        MissingDependencyError: qemu-user (qemu-aarch64), qemu-user-static or gcc is missing.
        DeviceError: the emulated process failed (the message holds its last lines).

    Example:
        >>> count = count_instructions("rpi5", "cnn.onnx", np.zeros((1, 28, 28, 1), np.float32))
        >>> count.instructions_per_inference
    """
    return count_many(device, [Workload(model_path, inputs, runner)], runs=runs, warmup=warmup, log=log)[0]


def count_many(device: str, workloads: Sequence[Workload], *, runs: int = 3, warmup: int = 2,
               log: Callable[[str], None] | None = None, timeout: float = 3600) -> list[WorkCount]:
    """`count_instructions` for several workloads in one emulated process (one start-up for all), in order.

    Args:
        workloads: the models to count, each a `Workload(model, inputs, runner)`, run one after the other.
        timeout: seconds the whole emulated process may take. Defaults to 3600.

    Returns:
        list[WorkCount]: one per workload, in order.

    Raises:
        as `count_instructions`; DeviceError also when the process takes over `timeout` seconds.
    """
    from dlkit.device import environment, instruction_plugin

    spec = lookup(device)
    jobs = [_checked(w, runs, warmup) for w in workloads]
    environment.require_plugin_qemu()
    env = environment.build(requirements(), system=spec.os, log=log or (lambda line: None))
    library = instruction_plugin.library()
    with tempfile.TemporaryDirectory(prefix="dlkit-work-") as tmp:
        folder = Path(tmp)
        _copy_runtime(folder / "runtime")
        script = folder / "count.py"
        script.write_text(_GUEST.format(start=instruction_plugin.START, stop=instruction_plugin.STOP, array=_ARRAY))
        for index, (workload, job) in enumerate(zip(workloads, jobs)):
            job["inputs"] = str(folder / f"inputs-{index}.npz")
            np.savez(job["inputs"], **_as_dict(workload.inputs))
        (folder / "jobs.json").write_text(json.dumps(jobs))
        counts, results = folder / "counts.txt", folder / "results.json"
        cmd, variables = env.command([script, folder / "jobs.json", results], spec.cpu, path=[folder / "runtime"],
                                     plugin=(library, instruction_plugin.arguments(counts)))
        variables["PYTHONHASHSEED"] = "0"  # the same dict and set orders every run
        try:
            proc = subprocess.run(cmd, env=variables, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise DeviceError(f"counting instructions on the emulated {spec.name} took over {timeout:.0f} s; pass "
                              "a larger timeout, or fewer runs or workloads") from err
        reply = json.loads(results.read_text()) if results.is_file() else {}
        intervals = _intervals(counts, spec.name, proc, reply, len(jobs))
    return [WorkCount(spec.name, spec.cpu, job["model"], job["runner"], _batch(workload.inputs), runs, warmup,
                      count, round(count / runs, 1), done["seconds"], reply["onnxruntime"],
                      tuple(done["providers"]), qemu_version())
            for workload, job, count, done in zip(workloads, jobs, intervals, reply["jobs"])]


def _checked(workload: Workload, runs: int, warmup: int) -> dict:
    """The guest's job for `workload`, after the checks a user's mistake fails (before any emulation)."""
    if not isinstance(workload, Workload):
        raise InvalidInputError(f"a workload must be dlkit.device.work.Workload(model, inputs, runner), got "
                                f"{type(workload).__name__}; wrap each model and its inputs in one")
    if workload.runner not in RUNNERS:
        raise InvalidInputError(f"unknown runner {workload.runner!r}; use one of {', '.join(RUNNERS)}")
    if not isinstance(runs, int) or runs < 1 or not isinstance(warmup, int) or warmup < 0:
        raise InvalidInputError(f"runs must be an int >= 1 and warmup an int >= 0, got runs={runs!r}, "
                                f"warmup={warmup!r}; pass e.g. runs=3, warmup=2")
    path = Path(workload.model).resolve()
    if not path.is_file():
        raise InvalidInputError(f"model file '{workload.model}' does not exist; give the path of an .onnx file")
    _as_dict(workload.inputs)
    return {"model": str(path), "runner": workload.runner, "runs": runs, "warmup": warmup}


def _as_dict(inputs: Any) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        if not inputs or not all(isinstance(k, str) and k != _ARRAY for k in inputs):
            raise InvalidInputError(f"inputs must be an array or a dict keyed by input name, got the keys "
                                    f"{list(inputs)}; key each array by the model's input name")
        return {name: np.asarray(value) for name, value in inputs.items()}
    array = np.asarray(inputs)
    if array.dtype == object:
        raise InvalidInputError(f"inputs must be numeric arrays, got {type(inputs).__name__}; pass a numpy array")
    return {_ARRAY: array}


def _batch(inputs: Any) -> int | None:
    first = next(iter(_as_dict(inputs).values()))
    return int(first.shape[0]) if first.ndim else None


def _intervals(counts: Path, device: str, proc: subprocess.CompletedProcess, reply: dict, expected: int
               ) -> list[int]:
    """The spans' counts, one per job, from the plugin's file.

    Raises:
        the runtime's error class the guest raised (InvalidInputError, ...), else DeviceError.
    """
    if "error" in reply:  # a runtime error by its class; onnxruntime's InvalidArgument is the inputs' fault too
        name = "InvalidInputError" if reply.get("type") == "InvalidArgument" else reply.get("type", "")
        kind = getattr(runtime_errors, name, None)
        kind = kind if isinstance(kind, type) and issubclass(kind, runtime_errors.DlkitError) else DeviceError
        raise kind(f"on the emulated {device}: {' '.join(reply['error'].split())}")
    lines = counts.read_text().split("\n") if counts.is_file() else []
    intervals = [int(line.split()[1]) for line in lines if line.startswith("interval ")]
    if proc.returncode != 0 or len(intervals) != expected or len(reply.get("jobs", [])) != expected:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[-500:] or "nothing on stderr"
        raise DeviceError(f"the emulated {device} process counting instructions failed (exit {proc.returncode}, "
                          f"{len(intervals)} of {expected} counts): {tail}")
    return intervals


@functools.lru_cache(maxsize=None)
def qemu_version() -> str:
    """The plugin-loading qemu's version line, e.g. "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)"."""
    from dlkit.device import environment

    proc = subprocess.run([environment.require_plugin_qemu(), "--version"], capture_output=True, text=True)
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "unknown"


def _copy_runtime(folder: Path) -> None:
    from dlkit.core.runtime_sources import copy_runtime

    copy_runtime(folder)
