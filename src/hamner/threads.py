"""How many CPU threads tagging uses: the CPUs this process may really use, fewer while other work
keeps them busy.

Why: PyTorch and ONNX Runtime split each operation of a batch over their threads and wait for the
slowest at the end of it. On an idle machine one thread per core is fastest. On a busy one, a thread
that the scheduler parks behind another process makes every operation wait for it (and their idle
threads spin while they wait): on 2 cores beside one CPU-bound process, PyTorch tagged 60.7 unseen
posts/s on 2 threads (``results/bench_unseen_before.csv``) and 105.4 once this module dropped it to
1 (``results/bench_unseen_governor.csv``). So by default (``auto``):

- the thread count starts at :func:`usable_cpus`: the CPUs this process may run on (its affinity
  mask, e.g. ``taskset`` or a Kubernetes cpuset) and no more than its cgroup CPU quota (``docker
  --cpus``); torch's own default counts every core of the host;
- :class:`ThreadGovernor` looks, at most once a second and only between batches, at how busy the
  other processes keep those CPUs (``/proc/stat`` less this process's own time) and uses one thread
  fewer per busy CPU (never fewer than one): the figures of an idle machine are kept, and a busy one
  no longer takes most of the speed.

``hamner ... --threads N``, :func:`hamner.vision.set_threads` and the ``OMP_NUM_THREADS`` variable
pin the count instead (:func:`pin`); the governor then never changes it. Where ``/proc`` is not
there (macOS, Windows) or the CPU quota is below the CPUs the process may run on (the host's load
says nothing about a quota), the count stays at :func:`usable_cpus`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: seconds between two looks at the machine's load
INTERVAL = 1.0
#: share of one CPU that other processes must keep busy before a thread gives way to them
BUSY = 0.3
#: environment variables whose presence pins the thread count (the user chose it)
PINNING_VARIABLES = ("OMP_NUM_THREADS",)


def _affinity_cpus() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup and its ancestors, the smallest; None without one."""
    quotas: list[float] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2: cpu.max ("max 100000" or "200000 100000") on the path and above
            path = root / rel
            while True:
                q = _read_quota_v2(path / "cpu.max")
                if q is not None:
                    quotas.append(q)
                if path == root or root not in path.parents:
                    break
                path = path.parent
        elif "cpu" in controllers.split(","):  # cgroup v1
            for base in (root / "cpu,cpuacct", root / "cpu"):
                q = _read_quota_v1(base / rel)
                if q is None and rel:
                    q = _read_quota_v1(base)  # inside a container the path is often the root
                if q is not None:
                    quotas.append(q)
                    break
    return min(quotas) if quotas else None


def _read_quota_v2(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or float(period) <= 0:
        return None
    return float(quota) / float(period)


def _read_quota_v1(folder: Path) -> float | None:
    try:
        quota = float((folder / "cpu.cfs_quota_us").read_text())
        period = float((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus() -> int:
    """The CPUs this process may really use: its affinity mask, capped by its cgroup CPU quota
    (rounded up), at least 1."""
    affinity = _affinity_cpus()
    n = len(affinity) if affinity else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def pinned_by_environment() -> int | None:
    """The thread count the environment pins (``OMP_NUM_THREADS``), or None."""
    for name in PINNING_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if raw:
            try:
                value = int(raw.split(",")[0])
            except ValueError:
                log.warning("%s=%r is not a number of threads; ignored", name, raw)
                continue
            if value >= 1:
                return value
    return None


@dataclass
class CpuSample:
    at: float  # time.monotonic()
    busy: float  # CPU-seconds the watched CPUs spent busy (any process), since boot
    own: float  # CPU-seconds of this process (all its threads), since it started


class CpuWatch:
    """How many of this process's CPUs other processes keep busy, from ``/proc/stat`` (the watched
    CPUs' busy time: user, nice, system, irq, softirq and steal) less this process's own CPU time."""

    def __init__(self, cpus: list[int] | None = None, proc: Path = Path("/proc")) -> None:
        self.cpus = set(cpus) if cpus is not None else None
        self.proc = proc
        self._tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    def available(self) -> bool:
        return self.sample() is not None

    def sample(self) -> CpuSample | None:
        try:
            stat = (self.proc / "stat").read_text().splitlines()
            own = (self.proc / "self" / "stat").read_text()
        except OSError:
            return None
        busy = 0.0
        for line in stat:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            try:
                cpu = int(name[3:])
                values = [float(x) for x in fields[:8]]
            except ValueError:
                continue
            if self.cpus is not None and cpu not in self.cpus:
                continue
            user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0.0] * 8)[:8]
            busy += user + nice + system + irq + softirq + steal
        # /proc/self/stat: the command may hold spaces, so the fields count from the last ')'
        rest = own[own.rfind(")") + 2 :].split()
        try:
            own_ticks = float(rest[11]) + float(rest[12])  # utime, stime (fields 14 and 15)
        except (IndexError, ValueError):
            return None
        return CpuSample(time.monotonic(), busy / self._tick, own_ticks / self._tick)

    @staticmethod
    def others(before: CpuSample, after: CpuSample) -> float:
        """CPUs (e.g. 1.0: one whole core) other processes kept busy between two samples."""
        wall = after.at - before.at
        if wall <= 0:
            return 0.0
        return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / wall)


class ThreadGovernor:
    """The process's tagging thread count: :func:`usable_cpus`, less one per CPU other processes keep
    busy (see the module's text). :meth:`threads` is cheap enough to ask before every batch; it looks
    at the machine at most once per ``interval`` seconds."""

    def __init__(self, cpus: int | None = None, interval: float = INTERVAL, busy: float = BUSY, watch: CpuWatch | None = None) -> None:
        self.cpus = cpus if cpus is not None else usable_cpus()
        self.interval = interval
        self.busy = busy
        affinity = _affinity_cpus()
        quota = _cgroup_quota()
        # under a CPU quota smaller than the CPUs it may run on, the host's load says nothing about this process
        capped = quota is not None and affinity is not None and quota < len(affinity) - 1e-9
        self.watch = watch if watch is not None else (None if capped else CpuWatch(affinity))
        self._pinned: int | None = pinned_by_environment()
        self._current = self._pinned or self.cpus
        self._last: CpuSample | None = None
        self._lock = threading.Lock()
        self.changes = 0  # times the count changed (for logs and benchmarks)

    @property
    def pinned(self) -> int | None:
        return self._pinned

    def pin(self, n: int | None) -> None:
        """Use ``n`` threads from now on and stop adapting (``None``: adapt again)."""
        with self._lock:
            self._pinned = n
            self._current = n if n is not None else self.cpus
            self._last = None

    def threads(self) -> int:
        """The thread count to use now."""
        if self._pinned is not None or self.watch is None or self.cpus <= 1:
            return self._current
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last.at < self.interval:
                return self._current
            sample = self.watch.sample()
            if sample is None:
                self.watch = None  # no /proc: keep the usable CPUs
                return self._current
            if self._last is not None:
                others = CpuWatch.others(self._last, sample)
                target = max(1, min(self.cpus, self.cpus - math.ceil(others - self.busy)))
                if target != self._current:
                    log.debug("other processes keep %.1f of %d CPUs busy: tagging with %d threads (was %d)", others, self.cpus, target, self._current)
                    self._current = target
                    self.changes += 1
            self._last = sample
            return self._current

    def apply_torch(self) -> int:
        """Set torch's intra-op threads of the calling thread to :meth:`threads` (an OpenMP setting is
        the calling thread's: the thread that runs the model must make it) and return the count."""
        n = self.threads()
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n


_GOVERNOR: ThreadGovernor | None = None
_GOVERNOR_LOCK = threading.Lock()


def governor() -> ThreadGovernor:
    """The process's governor (made on first use)."""
    global _GOVERNOR
    with _GOVERNOR_LOCK:
        if _GOVERNOR is None:
            _GOVERNOR = ThreadGovernor()
        return _GOVERNOR


def pin(n: int | None) -> None:
    """Pin the process's tagging threads to ``n`` (``None``: adapt again); see :func:`hamner.vision.set_threads`."""
    governor().pin(n)
