"""The emulated-ARM tests' environment: dlkit's own emulated device (`dlkit.device.environment`), built once and
cached outside the work tree (`~/.cache/dlkit/device`, or `$DLKIT_DEVICE_CACHE`)."""

from __future__ import annotations

import platform
import sys
import time

import pytest


@pytest.fixture(scope="session")
def arm_env():
    """Raspberry Pi OS trixie's aarch64 Python 3.13 (the default OS) with the wheels a bundle installs, as `dlkit
    device setup` builds it, plus those wheels as files (for the offline install tests); built on first use (about
    45 s), reused afterwards."""
    return _build("trixie")


@pytest.fixture(scope="session")
def bookworm_env():
    """The same on Raspberry Pi OS bookworm's Python 3.11."""
    return _build("bookworm")


def _build(system: str):
    from dlkit.device import environment, requirements
    from dlkit.errors import DlkitError

    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the emulated ARM environment is built for x86-64 Linux hosts")
    start = time.perf_counter()
    try:
        env = environment.build(requirements(), wheels=True, system=system,
                                log=lambda message: print(message, file=sys.stderr))
    except DlkitError as err:
        pytest.fail(f"cannot build the emulated ARM environment ({system}): {err}", pytrace=False)
    print(f"\narm-env {system} ready in {time.perf_counter() - start:.1f} s ({env.root.parent})", file=sys.stderr)
    return env
