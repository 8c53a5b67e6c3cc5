"""A bundle's serve.py started on an emulated Pi and waited for, for the tests that send it a request."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def serving(env, bundle: Path, cpu: str, log: Path, *, python=None, site: bool = True,
            tries: int = 900) -> Iterator[str]:
    """Yields the server's URL once `/v2/health/ready` answers; stops it with SIGTERM and asserts it exited 0.
    The emulated interpreter imports numpy, onnxruntime and uvicorn first: tens of seconds, `tries` x 0.2 s at most."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd, variables = env.command([bundle / "serve.py", "--port", port], cpu, python=python, site=site)
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, env=variables, stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(tries):
            try:
                if urllib.request.urlopen(url + "/v2/health/ready", timeout=2).status == 200:
                    break
            except OSError:
                assert proc.poll() is None, f"serve.py exited {proc.returncode}: {log.read_text()[-2000:]}"
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 0, log.read_text()[-2000:]
