"""Servers the benchmark starts (the API, the Streamlit app): a free port, waiting for a
health address with a time limit, and a stop that cannot hang."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(process: subprocess.Popen[bytes], url: str, *, timeout_s: float, what: str) -> None:
    """Return once ``url`` answers; raise if the process ends or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{what} did not start within {timeout_s:.0f} s") from None
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 30) -> None:
    """Ask the process to end; kill it if it has not within ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
