"""`dlkit device setup`: an interrupted build leaves nothing half-made that a later one would reuse, and a failed
step is one line naming it. Each test builds into its own cache folder, from Debian's archive and PyPI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.arm


def _setup(cache, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "DLKIT_DEVICE_CACHE": str(cache)}
    # Ctrl-C's default, whatever this process inherited: a shell's background job starts with SIGINT ignored
    return subprocess.Popen([sys.executable, "-m", "dlkit", "device", "setup", "rpi4", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def _wait_for(cache, pattern: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until a part is being built: its temporary folder exists and holds a file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(any(p.rglob("*")) for p in cache.glob(pattern) if p.is_dir()):
            return
        assert proc.poll() is None, f"setup ended (exit {proc.returncode}) before {pattern}: {proc.stderr.read()}"
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} within {timeout} s")


def _parts(cache) -> dict[str, bool]:
    """Every part folder -> whether it is complete."""
    return {p.name: (p / ".complete").is_file() for p in cache.iterdir()
            if p.is_dir() and p.name.split("-")[0] in ("root", "site", "wheels", "cpu")}


def test_interrupted_setup_is_rebuilt_not_reused(tmp_path, arm_env):
    from dlkit.device import environment, requirements

    cache = tmp_path / "cache"
    # Ctrl-C while the Debian packages download: the part's temporary folder is removed on the way out
    proc = _setup(cache)
    _wait_for(cache, ".root-*", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    assert not list(cache.glob(".root-*")) and not any(_parts(cache).values())
    # killed outright while the wheels install: the half-made folder stays, hidden, and is never used
    proc = _setup(cache)
    _wait_for(cache, ".site-*", proc)
    proc.kill()
    proc.wait(timeout=60)
    assert list(cache.glob(".site-*")) and not environment.built(requirements(), cache)
    assert all(_parts(cache).values())  # what is there under its final name is whole (the root, done before)
    # the next setup removes it and builds the part again
    proc = _setup(cache)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert not [p for p in cache.iterdir() if p.name.startswith(".") and p.is_dir()]
    assert environment.built(requirements(), cache) and all(_parts(cache).values())
    import json

    result = json.loads(out)
    assert result["computed_on"]["cpu"]["family"] == "arm64" and not result["reused"]

    # a step that fails is one error naming it, with its exit code (2: the fix is the user's, then run it again)
    from dlkit.errors import DeviceSetupError

    with pytest.raises(DeviceSetupError, match=r"pip install \(aarch64 wheels\) failed") as caught:
        environment.build(["dlkit-no-such-package==1.0"], cache, log=lambda line: None)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
