"""Starting, watching and always stopping the processes a benchmark run needs.

Every process is started in its own session (process group) and stopped by that
group's id when the run ends, fails or is interrupted, so nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A step of the run failed; the message says which and where its log is."""


# Where each part runs, where the machine allows: a one-process server on the first core,
# the load generator and the mock upstream on the others, so that neither takes the
# server's core. A server with a worker per core gets every core (it shares them with
# the load). On one core nothing is pinned.
# BENCH_PIN=0 pins nothing (to see what the pinning itself changes).
_ALL = frozenset(range(os.cpu_count() or 1))
_PIN = len(_ALL) > 1 and os.environ.get("BENCH_PIN", "1") != "0"
SERVER_CPUS: frozenset[int] | None = frozenset({0}) if _PIN else None
LOAD_CPUS: frozenset[int] | None = _ALL - {0} if _PIN else None


def pinned(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that keeps the child on `cpus` (None: anywhere)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class Processes:
    """Owns every process of a run; `stop_all` ends them by process group, newest first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[Proc] = []
        self.started: list[int] = []  # every pid, so a caller can check none outlived the run
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Processes:
        # SIGTERM (and SIGHUP) become an exception, so the `finally` below still runs.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @staticmethod
    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path = ROOT,
        cpus: frozenset[int] | None = None,
    ) -> Proc:
        """Start `argv` in its own session, on `cpus` only when given (SERVER_CPUS, LOAD_CPUS)."""
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pinned(cpus),
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        self.started.append(popen.pid)
        return proc

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if proc in self.procs:
            self.procs.remove(proc)
        if proc.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.popen.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def wait_http(proc: Proc, url: str, timeout: float) -> None:
    """Wait until `url` answers with any HTTP status; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(
                f"{proc.name} exited early; its log ({proc.log}) ends:\n{tail(proc.log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered: a 404 or 401 is still a server that is up
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.2)
    raise BenchError(f"{proc.name} did not answer {url} in {timeout:.0f}s; log:\n{tail(proc.log)}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_json(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run a helper process that prints one JSON line last; return that object."""
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=pinned(LOAD_CPUS),  # helpers and the load generator: off the server's core
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv[:4])} took longer than {timeout:.0f}s") from exc
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(
            f"{' '.join(argv[:4])} failed (exit {done.returncode}):\n"
            + done.stderr.decode(errors="replace")[-2000:]
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def loadgen(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    timeout = float(spec.get("deadline", 120)) + 30
    return run_json(
        [PYTHON, "-m", "bench.loadgen", json.dumps(spec)], env or dict(os.environ), timeout
    )


class Interactive:
    """A helper process driven line by line (the idle-WebSocket holder)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=pinned(LOAD_CPUS),
        )

    def _io(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        return self.popen.stdin, self.popen.stdout

    def read(self, timeout: float) -> dict[str, Any]:
        _, out = self._io()
        ready, _, _ = select.select([out], [], [], timeout)
        if not ready:
            raise BenchError(f"the load generator said nothing for {timeout:.0f}s")
        line = out.readline()
        if not line:
            err = self.popen.stderr.read().decode(errors="replace") if self.popen.stderr else ""
            raise BenchError(f"the load generator stopped early:\n{err[-2000:]}")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, line: str) -> None:
        stdin, _ = self._io()
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def close(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
