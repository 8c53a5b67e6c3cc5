"""The fuzz test's worker (tests/toolkit/test_fuzz.py): loads damaged model files in `dlkit_runtime.Model` and each
CLI verb that loads a model, and writes one JSON line per file and check to RESULTS.

    python tests/toolkit/fuzz_worker.py JOBS.json RESULTS.jsonl FIRST

It starts at job FIRST and appends `{"job": i, "check": ..., "outcome": ..., "stdout": n, "detail": ...}` lines, a
`{"job": i, "start": true}` line before each file, so a crash (a signal, a hard exit) is seen by the parent as a
started job without its results. File descriptor 1 is redirected to a file around every check, so bytes that
onnxruntime's native code or a stray print write to stdout are counted too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _captured(fn):
    """Runs fn with fd 1 pointed at a temporary file; returns (fn's value, bytes written to fd 1)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            value = fn()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        return value, sink.read()


def _runtime(path: Path, feed: np.ndarray):
    from dlkit_runtime import DlkitError, Model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Model(path)
            model.predict({model.inputs[0].name: feed} if len(model.inputs) == 1 else feed)
    except DlkitError as err:
        return "error", str(err)
    except Exception:  # a bug: anything else must not escape
        return "traceback", traceback.format_exc()[-1500:]
    return "ran", ""


def _cli(args):
    from click.testing import CliRunner

    from dlkit.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "traceback", "".join(traceback.format_exception(*result.exc_info))[-1500:], result.stdout
    lines = result.stderr.strip().splitlines()
    if "EP Error" in result.stdout:  # onnxruntime's provider-fallback banner is printed, not logged
        return "banner", result.stdout[-500:], result.stdout
    if result.exit_code == 0:
        return "ran", "", ""
    if result.exit_code not in (1, 2, 3, 4):
        return "bad-exit", f"exit {result.exit_code}: {result.stderr[-500:]}", result.stdout
    # the error is the last line (a progress label or a warning may come before it); stdout holds only a result
    one_line = bool(lines) and lines[-1].startswith("Error: ") and "Traceback" not in result.stderr
    return ("error" if one_line else "bad-stderr"), result.stderr[-500:], ""


def main() -> None:
    jobs_path, results_path, first = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    jobs = json.loads(jobs_path.read_text())
    feeds = {name: np.load(path) for name, path in jobs["inputs"].items()}
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    with results_path.open("a") as out:
        for index in range(first, len(jobs["files"])):
            job = jobs["files"][index]
            out.write(json.dumps({"job": index, "start": True}) + "\n")
            out.flush()
            path, base = Path(job["path"]), job["base"]
            data = jobs["inputs"][base]
            checks = {
                "model": lambda: _runtime(path, feeds[base]),
                "run": lambda: _cli(["run", path, "-i", data]),
                "bench": lambda: _cli(["bench", path, "--runs", "2", "--warmup", "0"]),
                "inspect": lambda: _cli(["inspect", path]),
                "quantize": lambda: _cli(["quantize", path, "-o", scratch / f"{index}.q.onnx", "--mode", "dynamic"]),
                "verify": lambda: _cli(["verify", jobs["bases"][base], path, "--random", "8"]),
                "bundle": lambda: _cli(["bundle", path, "-o", scratch / f"b{index}"]),
            }
            for check, fn in checks.items():
                value, written = _captured(fn)
                outcome, detail = value[0], value[1]
                stdout = len(written)  # native or stray writes to fd 1 (the CLI's result is in CliRunner's stdout)
                out.write(json.dumps({"job": index, "check": check, "outcome": outcome, "stdout": stdout,
                                      "detail": detail[-800:] if outcome not in ("ran", "error") else ""}) + "\n")
                out.flush()
            shutil.rmtree(scratch / f"b{index}", ignore_errors=True)
            (scratch / f"{index}.q.onnx").unlink(missing_ok=True)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
