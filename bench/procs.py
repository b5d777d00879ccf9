"""Child processes that never outlive the benchmark, and waiting for readiness.

Strategy: every child starts in its own session (so a Ctrl-C in the terminal
reaches only the benchmark, which then shuts the children down in order) and
with a parent-death signal (so even a SIGKILL of the benchmark ends them).
`ManagedProcess` is a context manager: leaving the block, normally or by an
exception, sends SIGTERM to the child's process group, then SIGKILL.
`Service` is what a server under the benchmark builds on: entering starts its
process and returns once it is ready.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

_PR_SET_PDEATHSIG = 1
# Looked up here, not in the child: between fork and exec only the call is
# safe when the parent has other threads (a dlopen there may wait forever on
# a lock another thread held at the fork).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


class BenchError(Exception):
    """An expected failure of a benchmark run, reported in one line."""


class ProcessExited(BenchError):
    """A child process ended while the benchmark still needed it."""


def die_with_parent() -> None:
    """A `preexec_fn` (Linux): the child gets SIGTERM when the thread that started it ends.

    That thread is the parent as the kernel sees it, so start children from a
    thread that lives as long as they should (the main thread), not from a
    worker thread.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ManagedProcess:
    """A child process, logged to a file, stopped when the `with` block ends."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ManagedProcess:
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self._require().pid

    def _require(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise BenchError(f"{self.name}: process not started")
        return self._popen

    def check_alive(self) -> None:
        """Raise `ProcessExited`, with the tail of its log, if the child ended."""
        code = self._require().poll()
        if code is not None:
            raise ProcessExited(f"{self.name} exited with code {code}: {self.log_tail()!r}")

    def log_tail(self, limit: int = 600) -> str:
        """The last `limit` characters the child wrote to stdout/stderr."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace").strip()

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds for the child to end; its exit code, or None if it runs on."""
        try:
            return self._require().wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> int | None:
        """Terminate the child's process group, kill it after `grace` seconds.

        Returns the exit code, or None when the child was never started.
        Calling it again is harmless.
        """
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            _signal_group(popen.pid, signal.SIGTERM)
            try:
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(popen.pid, signal.SIGKILL)
                popen.wait()
        else:
            # The leader is gone; helpers it left in its group still go.
            _signal_group(popen.pid, signal.SIGKILL)
        return popen.returncode


class Service(ABC):
    """A server backed by one child process: entering starts it and returns once it is ready.

    Leaving stops the process, and so does a failed wait for readiness.
    Subclasses say how to start the process (`spawn`) and when it is ready
    (`wait_ready`, which may use `process`).
    """

    name: str = "service"
    _process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess:
        """The running process (raises `BenchError` before `__enter__`)."""
        if self._process is None:
            raise BenchError(f"{self.name} is not started")
        return self._process

    @abstractmethod
    def spawn(self) -> ManagedProcess:
        """Write whatever the process needs; the process, not started yet."""

    @abstractmethod
    def wait_ready(self) -> None:
        """Return once the process serves; raise `BenchError` when it will not."""

    def __enter__(self) -> Self:
        self._process = self.spawn()
        self._process.__enter__()
        try:
            self.wait_ready()
        except BaseException:
            self._process.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def free_port(kind: socket.SocketKind = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port on `host` that the kernel reports free for `kind` right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], None] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `ready` until it is true; raise `BenchError` after `timeout` seconds.

    `alive` is called on every round and may raise to stop waiting early
    (e.g. `ManagedProcess.check_alive`).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        if ready():
            return
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET `url`: (status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError):
        return 0, b""
