"""What a benchmark puts on the machine as users meet it: posts the process has never seen, and
other CPU-bound work competing for the cores.

``competing_load(n)`` starts ``n`` CPU-bound Python processes (a busy loop each) and always stops
them, also when the body raises or is interrupted; each also ends by itself as soon as its parent
is gone (a benchmark killed with SIGKILL leaves no spinning orphan). ``read_posts(specs)`` reads
posts named ``DATASET:SPLIT`` (a preset: twitter2015, twitter2017) or ``FOLDER:SPLIT`` (a corpus
folder, relative to the data root: ``btc:test`` is ``$HAMNER_DATA_ROOT/btc/test.txt``), through
the public readers only, so that the scripts also run against an older hamner source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: a busy loop that checks every million iterations (a few ms) whether its parent (pid given by the
#: parent: read in the child, it could already be the reaper's) is still there
SPIN = "import os\nwhile os.getppid() == {parent}:\n    for _ in range(1_000_000):\n        pass\n"


@dataclass
class CompetingLoad:
    """The running competing processes (``pids``) of :func:`competing_load`."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu_seconds(self) -> float | None:
        """CPU seconds the competing processes have used so far (Linux ``/proc``; None elsewhere or
        once they are gone)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for pid in self.pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
        return total


@contextmanager
def competing_load(n: int, settle_s: float = 0.5) -> Iterator[CompetingLoad]:
    """``n`` CPU-bound processes running for the body of the ``with`` (none for ``n == 0``); killed
    and reaped on the way out, whatever ends the body. ``settle_s``: a pause after starting them, so
    that the measured work starts on a machine already busy."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of competing processes must be an integer >= 0, got {n!r}")
    load = CompetingLoad()
    try:
        for _ in range(n):
            load.procs.append(
                subprocess.Popen([sys.executable, "-c", SPIN.format(parent=os.getpid())], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        if n and settle_s > 0:
            time.sleep(settle_s)
        yield load
    finally:
        for p in load.procs:
            if p.poll() is None:
                p.kill()
        for p in load.procs:
            p.wait()


def read_posts(specs: Sequence[str], data_root: str | None = None) -> list[Any]:
    """The posts of ``specs`` (``NAME:SPLIT`` each, in order), concatenated."""
    from hamner.data.corpus import PRESETS, corpus_spec, load_posts
    from hamner.data.datasets import load_split

    posts: list[Any] = []
    for spec in specs:
        name, sep, split = spec.rpartition(":")
        if not sep or not name or not split:
            raise ValueError(f"posts {spec!r}: expected NAME:SPLIT (twitter2015:test, btc:test, path/to/folder:test)")
        if name in PRESETS:
            posts += load_split(name, split, data_root)
        else:
            posts += load_posts(corpus_spec(path=name, root=data_root), split)
    return posts


def post_texts(posts: Sequence[Any]) -> list[str]:
    """Each post's raw text as a user would send it: its words joined by spaces."""
    return [" ".join(p.words) for p in posts]
