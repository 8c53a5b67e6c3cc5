"""Several server processes on one listening socket (`dlkit serve --workers N`): one Python process parses HTTP
and JSON on one core at most, so a small model's request rate is bound by one core until more processes share the
port. Standard library only; POSIX (fork).

The parent binds the socket, forks the workers before any model is loaded (onnxruntime's thread pools do not
survive a fork), and waits. Each worker loads the models itself, accepts connections from the shared socket and
batches its own requests. SIGTERM or Ctrl-C to the parent is passed to every worker, which drains its requests;
the parent exits 0 when all did. A worker that fails stops the others, and the parent exits with its code (systemd
restarts the unit). The workers' Prometheus metrics are summed through prometheus_client's multiprocess mode, in a
temporary folder removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from typing import Callable

from dlkit_runtime.errors import DlkitError, InvalidInputError

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch to its multiprocess mode


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the server (or its workers) accepts on; a busy port is a one-line error here."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidInputError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port or --host") \
            from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(count: int, sock: socket.socket, work: Callable[[socket.socket], None]) -> int:
    """Forks `count` workers that each run `work(sock)`; returns the exit code for the parent."""
    if not hasattr(os, "fork"):
        raise InvalidInputError("--workers needs fork (Linux or macOS); serve with one worker here")
    folder = tempfile.mkdtemp(prefix="dlkit-serve-metrics-")
    os.environ[METRICS_ENV] = folder  # read by prometheus_client when a worker first imports it
    alive: set[int] = set()
    state = {"stopping": False, "code": 0}

    def stop(*_):
        state["stopping"] = True
        for pid in list(alive):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stops = {signal.SIGTERM, signal.SIGINT}
        for _ in range(count):
            if state["stopping"]:
                break
            sys.stderr.flush()
            signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # a stop waits until the new worker has its own handlers
            pid = os.fork()
            if pid == 0:
                _worker(sock, work, previous, stops)
            alive.add(pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        while alive:
            pid, status = os.wait()
            alive.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            _forget(pid, folder)
            if code != 0 and not state["code"]:
                state["code"] = code if code > 0 else 1
            if not state["stopping"]:  # a worker ended by itself: the service is not whole, stop it all
                if code == 0:
                    state["code"] = state["code"] or 1
                print(f"error: a server worker exited with {code}; stopping the others", file=sys.stderr)
                stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(METRICS_ENV, None)
    return state["code"]


class _Stopped(BaseException):
    """SIGTERM or Ctrl-C before the worker's server installed its own handlers (while it loads its models)."""


def _stopped(*_):
    raise _Stopped()


def _worker(sock, work, previous, stops) -> None:
    """The child: a stop while it starts ends it cleanly (the server, once up, drains on its own handlers), then
    the work, and an exit that never returns into the parent's code."""
    code = 0
    try:
        for sig in previous:
            signal.signal(sig, _stopped)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        work(sock)
    except _Stopped:
        code = 0
    except DlkitError as err:
        print(f"Error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        code = 0
    except BaseException:  # noqa: BLE001 (the child must not unwind into the parent's stack)
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)


def _forget(pid: int, folder: str) -> None:
    """A dead worker's live gauges (queue depth) leave the sum."""
    if "prometheus_client" in sys.modules:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, folder)
