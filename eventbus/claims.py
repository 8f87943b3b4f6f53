"""Who holds an outbox claim, and whether that process is certainly gone.

A relay names itself by its host and process: the host part is the hostname, the kernel's boot id and
the pid namespace, which together say "these processes see the same pids"; the process part is the
pid and the process's start time, so a pid the kernel has since given to another process is not
mistaken for the relay that held it. Another relay with the same host part can then tell for sure
that the owner is gone (no process with that pid started at that time) and take its rows at once.

Anything less than certainty counts as alive: another host, a system without /proc, a process that
cannot be read. Those claims run out with their lease, which a live relay keeps renewing.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str  # "" where the start time cannot be read: such an owner is never declared dead

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.started}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        host, _, rest = text.rpartition("/")
        host, _, pid = host.rpartition("/")
        if not host or not pid.isdigit():
            return None
        return cls(host=host, pid=int(pid), started=rest)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _host() -> str:
    boot_id = _read(PROC / "sys/kernel/random/boot_id")
    try:
        pid_namespace = str((PROC / "self/ns/pid").readlink())
    except OSError:
        pid_namespace = ""
    kernel = hashlib.sha256(f"{boot_id}|{pid_namespace}".encode()).hexdigest()[:12] if boot_id else "unknown"
    return f"{socket.gethostname()[:150]}:{kernel}"


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot, or "" if there is no such process (or only
    its zombie, which publishes nothing more)."""
    stat = _read(PROC / str(pid) / "stat")
    if not stat:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces; field 3 is the state, field 22
    # the start time.
    fields = stat.rpartition(")")[2].split()
    return "" if fields[0] in ("Z", "X") else fields[19]


def current() -> Owner:
    """This process, computed afresh (cheap) so that a forked child never speaks for its parent."""
    pid = os.getpid()
    return Owner(host=_host(), pid=pid, started=start_time(pid))


def is_certainly_dead(owner: Owner, *, me: Owner) -> bool:
    if owner.host != me.host or owner.host.endswith(":unknown") or not owner.started or not me.started:
        return False
    return start_time(owner.pid) != owner.started
