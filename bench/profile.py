"""Where the time goes: py-spy samples of a server while a load runs.

`python -m bench --profile` records the first Coppertone server during the
non-streaming c=50 and the streaming saturation phases (py-spy's raw, collapsed
stacks), keeps the files beside the results, and sums them here into the functions
that hold the most samples: inclusive (the function or anything it calls) and self
(the function's own code). py-spy samples from outside without pausing the process
(`--nonblocking`), so the profiled figures stay close to the unprofiled ones.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def executable() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = executable()
    if spy is None:
        return None
    # --gil: only the thread holding the GIL is sampled, so the samples are where Python
    # spends CPU, not threads waiting on a lock, a socket or the database.
    argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--gil"]
    argv += ["--output", str(out), "--duration", str(max(1, round(seconds))), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame(raw: str) -> str:
    # "send (asyncio/selector_events.py:1025)" -> "send (asyncio/selector_events.py)"
    return _LINE.sub(")", raw.strip())


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    packages: Counter[str] = Counter()
    for frame, n in own.items():
        packages[_package(frame)] += n
    # The event loop's own frames hold nearly every sample: they say nothing.
    inclusive = Counter({k: v for k, v in inclusive.items() if v < 0.9 * total})
    return {
        "samples": total,
        "self_by_package_pct": share(packages),
        "self_pct": share(own),
        "inclusive_pct": share(inclusive),
    }


def _package(frame: str) -> str:
    """`execute (django/db/backends/utils.py)` -> `django.db`; `x (llm/turns.py)` -> `llm.turns`."""
    path = frame.rpartition("(")[2].rstrip(")")
    parts = [p.removesuffix(".py") for p in path.split("/") if p]
    if not parts:
        return frame
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]
