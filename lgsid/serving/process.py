"""A local model server as a child process: a free port, waiting for ``/ping``, stopping its process group.

Used by ``bench/serve_latency.py`` and the serving integration test, which both start
``mlflow models serve`` with ``start_new_session=True`` so the server and its workers form one
process group that :func:`stop_process_group` can end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ping(proc: subprocess.Popen, url: str, timeout: float, log_path: str) -> None:
    """Return once ``url + "/ping"`` answers 200; raise ``RuntimeError`` (naming ``log_path``) if ``proc`` exits or ``timeout`` s pass.

    On timeout the server is stopped before raising.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; log: {log_path}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            stop_process_group(proc)
            raise RuntimeError(f"the server did not answer /ping in {timeout:.0f} s; log: {log_path}")
        time.sleep(1)


def stop_process_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session=True``), SIGKILL it after ``grace_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace_s)
