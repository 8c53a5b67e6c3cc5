"""A real `dlkit serve` (or a bundle's serve.py) in a subprocess on a free loopback port, for the TLS and OpenAPI
tests: started, waited for until its live probe answers, and stopped with SIGTERM (SIGKILL if it hangs)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen
    log: object
    said: str = ""  # all it wrote on stderr, once stopped

    def stderr(self) -> str:
        """What the server wrote on stderr so far (all of it once it stopped)."""
        if self.log.closed:
            return self.said
        self.log.seek(0)
        return self.log.read()


@contextmanager
def serving(command: list, *, env: dict | None = None, context: ssl.SSLContext | None = None):
    """Runs `command` (it gets `--port PORT`), waits until GET /v2/health/live answers (over HTTPS with `context`),
    and yields a `Served`."""
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")  # the access log: a pipe nobody reads would fill and block the server
    proc = subprocess.Popen([*map(str, command), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log,
                            stdin=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})})
    served = Served(f"{'https' if context else 'http'}://127.0.0.1:{port}", port, proc, log)
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(f"the server exited {proc.returncode}: {served.stderr()[-2000:]}")
            try:
                urllib.request.urlopen(served.url + "/v2/health/live", timeout=1, context=context).read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield served
    finally:
        stop(proc)
        served.said = served.stderr()
        log.close()


def dlkit_serve(*args) -> list:
    return [sys.executable, "-m", "dlkit", "serve", *args]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if it does not stop: a failing test must not leave a server behind."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
