"""Where every process's metrics meet: PROMETHEUS_MULTIPROC_DIR, and what /metrics reads.

prometheus-client's multiprocess mode: each process keeps its values in memory-mapped
files named by its pid in one directory, and a scrape adds up every file there, so the
uvicorn workers, the MQTT bridge and `manage.py chat` count together. It reads the
directory from the environment (coppertone/settings.py puts the setting there). As its
documentation asks:
  - the directory is emptied when a run starts. Each process holds a shared lock on its
    `.lock` file for as long as it lives; one that can take the lock exclusively is
    alone (every earlier process has exited, however it died), and removes the files;
  - a process that died has its live gauges removed (`mark_process_dead`), looked for
    when a process starts and at each scrape. Its counters and histograms stay, so
    totals never go down while the others run.
Files are named by pid, so one directory serves one machine (one pid namespace).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from llm.models import ProviderConfig, Upstream

__all__ = ["exposition", "prepare"]

_lock: int | None = None  # the shared lock this process holds while it lives


def directory() -> Path:
    return Path(settings.PROMETHEUS_MULTIPROC_DIR)


def prepare() -> None:
    """Make the directory ready before this process writes its first value. Once."""
    global _lock
    if _lock is not None:
        return
    path = directory()
    path.mkdir(parents=True, exist_ok=True)
    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus-client was imported before the settings set the directory.
        values.ValueClass = values.MultiProcessValue()
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Others run: keep their files; drop the live gauges of the dead, and of this
        # pid's previous holder if the pid was used before.
        forget_dead(path)
        mark_process_dead(os.getpid(), str(path))
    else:
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _lock = fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def forget_dead(path: Path) -> None:
    """Remove the live gauges (live replies, queued turns) of processes that are gone."""
    for file in path.glob("gauge_live*_*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            mark_process_dead(int(pid), str(path))


class _OpenBreakers:
    """The breakers open now, from the database (the same for every process)."""

    def describe(self) -> list[Metric]:
        return []  # registering must not query; names are known at collect time

    def collect(self) -> Iterator[Metric]:
        now: dt.datetime = timezone.now()
        gauge = GaugeMetricFamily(
            "coppertone_open_breakers",
            "Circuit breakers open now: people's provider configurations, upstream servers.",
            labels=["scope"],
        )
        gauge.add_metric(
            ["configuration"], ProviderConfig.objects.filter(open_until__gt=now).count()
        )
        gauge.add_metric(["server"], Upstream.objects.filter(open_until__gt=now).count())
        yield gauge


def exposition() -> bytes:
    """Every process's metrics added up, and the open breakers, in the text format."""
    prepare()
    path = directory()
    forget_dead(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    registry.register(_OpenBreakers())
    return generate_latest(registry)
