"""CPU per event, by process, read from `/proc/<pid>/stat` around a run.

A process's user + system time covers all its threads. PostgreSQL is a postmaster and
one backend per connection: its time is the postmaster's own, what it has reaped from
backends that ended (`cutime`, `cstime`), and every live child's. Figures are µs of CPU
per event: what a user pays on their dyno and on their database, whatever the machine's
other load does to the throughput.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """The fields after `(comm)` (which may hold spaces): state is [0], ppid [1]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU of `pid` (with `reaped`: plus its children that have ended)."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    return found


def postgres_seconds(postmaster: int) -> float:
    total = process_seconds(postmaster, reaped=True)
    for child in children(postmaster):
        try:
            total += process_seconds(child)
        except OSError:  # ended between the listing and the read: its time is reaped now
            continue
    return total


def postmaster_pid(data_dir: Path) -> int:
    """The embedded server's postmaster, from its `postmaster.pid` under `data_dir`."""
    pid_file = next(data_dir.rglob("postmaster.pid"))
    return int(pid_file.read_text().split()[0])


Reading = Callable[[], float]


def reading_of(pid: int) -> Reading:
    return lambda: process_seconds(pid)


@dataclass
class CpuMeter:
    """Seconds of CPU per named process group between `start()` and `stop()`."""

    readings: Mapping[str, Reading]

    def __post_init__(self) -> None:
        self._started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._started = {name: read() for name, read in self.readings.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.seconds = {name: read() - self._started[name] for name, read in self.readings.items()}
        return self.seconds

    def per_event_us(self, events: int) -> dict[str, float]:
        return {name: s * 1e6 / max(events, 1) for name, s in self.seconds.items()}
