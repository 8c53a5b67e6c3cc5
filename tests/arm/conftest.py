"""The emulated-ARM tests' marker and environment (built once, cached outside the work tree: see dlkit.device.environment)."""

from __future__ import annotations

import platform
import sys
import time

import pytest


@pytest.fixture(scope="session")
def arm_env():
    """The aarch64 Python 3.11 with the bundle's pinned requirements; built on first use (about 15 s, root and apt
    needed), reused from the cache afterwards."""
    from dlkit.bundling import IMAGE_REQUIREMENTS, REQUIREMENTS, SERVE_REQUIREMENTS
    from dlkit.device import environment as qemu_env

    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the emulated ARM environment is built for x86-64 Linux hosts")
    start = time.perf_counter()
    try:
        env = qemu_env.build(list(REQUIREMENTS) + list(IMAGE_REQUIREMENTS) + list(SERVE_REQUIREMENTS), log=lambda message: print(message, file=sys.stderr))
    except qemu_env.ArmEnvError as err:
        pytest.fail(f"cannot build the emulated ARM environment: {err}", pytrace=False)
    print(f"\narm-env ready in {time.perf_counter() - start:.1f} s ({env.root.parent})", file=sys.stderr)
    return env
