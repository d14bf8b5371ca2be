"""What every benchmark results file records next to its numbers: commit, machine, command, date."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any


def run_meta(script: str) -> dict[str, Any]:
    """The columns that say where a row came from (call after torch's thread count is set)."""
    import torch

    from hamner.env import git_revision, machine_description

    rev = git_revision()
    return {
        "commit": rev["commit"],
        "dirty": rev["dirty"],
        "machine": machine_description(torch.device("cpu")).rsplit(" (", 1)[0],
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }


def write_csv(path: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write ``rows`` with ``meta`` appended to each; the folder is made if needed."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], *meta])
        writer.writeheader()
        writer.writerows({**r, **meta} for r in rows)
    print(f"wrote {out}")
    return out
