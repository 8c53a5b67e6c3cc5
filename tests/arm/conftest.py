"""The emulated-ARM tests' environment: dlkit's own emulated device (`dlkit.device.environment`), built once and
cached outside the work tree (`~/.cache/dlkit/device`, or `$DLKIT_DEVICE_CACHE`)."""

from __future__ import annotations

import platform
import sys
import time

import pytest


@pytest.fixture(scope="session")
def arm_env():
    """The aarch64 Python 3.11 with the wheels a bundle installs, as `dlkit device setup` builds it, plus those
    wheels as files (for the offline install test); built on first use (about 20 s), reused afterwards."""
    from dlkit.device import environment, requirements
    from dlkit.errors import DlkitError

    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the emulated ARM environment is built for x86-64 Linux hosts")
    start = time.perf_counter()
    try:
        env = environment.build(requirements(), wheels=True, log=lambda message: print(message, file=sys.stderr))
    except DlkitError as err:
        pytest.fail(f"cannot build the emulated ARM environment: {err}", pytrace=False)
    print(f"\narm-env ready in {time.perf_counter() - start:.1f} s ({env.root.parent})", file=sys.stderr)
    return env
