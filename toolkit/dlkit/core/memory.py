"""The memory a model needs at run time: the peak resident memory of a fresh process that imports what a bundle runs
(numpy, onnxruntime, `dlkit_runtime`), loads the model and runs one batch-1 inference, measured natively on this host
with the same wheels' versions a bundle pins (a Pi's process holds the same arrays and onnxruntime's same buffers).

`bundle` reports it and warns over a device's budget (`Device.memory_budget_bytes`: 200 MB on the 512 MB Pi Zero
2 W); `inspect` reports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkit.core.catalogue import REQUIREMENTS
from dlkit.errors import DlkitError

# The child: its resident memory after the imports (VmRSS), then its peak (VmHWM) after loading the model and one
# inference. Not getrusage's ru_maxrss: Linux carries that across exec from the parent's memory at fork (a pytest
# process holding TensorFlow reported 2 GB for a 1 MB model); VmHWM belongs to the new program's own memory.
_CHILD = """\
import json, sys
import numpy, onnxruntime, dlkit_runtime
def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(key + ":"))
base = status("VmRSS")
model = dlkit_runtime.Model(sys.argv[1], threads=int(sys.argv[3]))
with numpy.load(sys.argv[2]) as data:
    model.predict({k: data[k] for k in data.files})
peak = status("VmHWM")
print(json.dumps({"baseline": base * 1024, "peak": peak * 1024, "numpy": numpy.__version__,
                  "onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]}))
"""


@dataclass(frozen=True)
class RunMemory:
    """The run-time memory of one model.

    Attributes:
        peak_rss_bytes: the process's peak resident memory: Python, numpy, onnxruntime, the model loaded and one
            batch-1 inference run (what the device must have free). baseline_rss_bytes: the same process before
            loading the model. model_rss_bytes: the difference, the model's own share. threads: intra-op threads
            it ran with. versions: the Python, numpy and onnxruntime that measured it. pinned: those are the
            versions a bundle pins. budget_bytes: the device's budget, if it has one. over_budget: the peak exceeds it.
    """

    peak_rss_bytes: int
    baseline_rss_bytes: int
    model_rss_bytes: int
    threads: int
    versions: dict
    pinned: bool
    budget_bytes: int | None = None
    over_budget: bool = False

    def to_dict(self) -> dict:
        return {"peak_rss_bytes": self.peak_rss_bytes, "baseline_rss_bytes": self.baseline_rss_bytes,
                "model_rss_bytes": self.model_rss_bytes, "threads": self.threads, "versions": dict(self.versions),
                "pinned": self.pinned, "budget_bytes": self.budget_bytes, "over_budget": self.over_budget,
                "measured_on": "this host, natively"}


def run_memory(model: str | os.PathLike, inputs, *, threads: int = 1, budget_bytes: int | None = None) -> RunMemory:
    """Measures `model`'s peak run-time memory in a fresh process on this host.

    Args:
        model: the `.onnx` file.
        inputs: the model's inputs (`TensorInfo`s): one batch-1 sample of each is run.
        threads: intra-op threads (onnxruntime's pool holds a stack per thread). Defaults to 1.
        budget_bytes: the device's budget, for `over_budget`. Defaults to None.

    Raises:
        DlkitError: the measuring process failed (its last line is in the message).
    """
    from dlkit.core.parity import random_inputs

    feeds = random_inputs(tuple(inputs), 1)
    with tempfile.TemporaryDirectory(prefix="dlkit-memory-") as tmp:
        data = Path(tmp) / "inputs.npz"
        np.savez(data, **feeds)
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(data), str(threads)],
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][-300:]
        raise DlkitError(f"measuring the run-time memory of '{model}' failed (exit {proc.returncode}): {tail}; "
                         "check that the model runs here with dlkit run")
    got = json.loads(proc.stdout)
    versions = {k: got[k] for k in ("python", "numpy", "onnxruntime")}
    pinned = all(f"{name}=={versions[name]}" in REQUIREMENTS for name in ("numpy", "onnxruntime"))
    peak = int(got["peak"])
    return RunMemory(peak, int(got["baseline"]), peak - int(got["baseline"]), threads, versions, pinned, budget_bytes,
                     budget_bytes is not None and peak > budget_bytes)
