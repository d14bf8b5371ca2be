#!/usr/bin/env python3
"""Training runs side by side by precision: seconds per epoch, peak memory and test F1, one row per
run plus one summary row per (dataset, config, precision) with the speed-up over fp32.

    python benchmarks/precision_runs.py RUN_DIR [RUN_DIR ...] --out results/bench_precision_runs.csv
    python benchmarks/precision_runs.py runs-gpu/*/*/*/seed* --out results/bench_gpu.csv   # on a GPU machine

Everything comes from the run directories' own files (``run.json``: precision, machine, commit,
threads; ``metrics.jsonl``: seconds and peak memory of every epoch; ``final.json``: dev and test
F1), so the table can be remade from committed runs. Peak memory is the GPU allocator's peak on a
GPU and the process's resident peak on a CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from _results import run_meta, write_csv


def run_row(run: Path) -> dict[str, Any]:
    final = json.loads((run / "final.json").read_text())
    meta = final["run"]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    seconds = [r["epoch_seconds"] for r in records]
    return {
        "row": "run",
        "dataset": final["dataset"],
        "config": final["config"],
        "precision": meta.get("precision", {}).get("used", "fp32"),
        "seed": final["seed"],
        "runs": 1,
        "epochs": len(records),
        "s_per_epoch": round(statistics.mean(seconds), 2),
        "peak_mem_mb": round(max(r["peak_mem_mb"] for r in records), 1),
        "dev_f1": round(100 * final["dev_f1"], 2),
        "test_f1": round(100 * final["test_f1"], 2),
        "test_f1_std": "",
        "speedup_vs_fp32": "",
        "run_machine": meta["machine"],
        "torch_threads": meta.get("torch_threads", ""),
        "run_commit": meta["git"]["commit"][:12] + ("+dirty" if meta["git"].get("dirty") else ""),
        "run_dir": str(run),
    }


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["config"], r["precision"]), []).append(r)
    out = []
    for (dataset, config, precision), rs in sorted(groups.items()):
        f1 = [r["test_f1"] for r in rs]
        sec = statistics.mean(r["s_per_epoch"] for r in rs)
        base = groups.get((dataset, config, "fp32"))
        out.append({
            **{k: "" for k in rows[0]}, "row": "summary", "dataset": dataset, "config": config, "precision": precision,
            "runs": len(rs), "seed": " ".join(str(r["seed"]) for r in rs), "s_per_epoch": round(sec, 2),
            "peak_mem_mb": max(r["peak_mem_mb"] for r in rs), "test_f1": round(statistics.mean(f1), 2),
            "test_f1_std": round(statistics.stdev(f1), 2) if len(f1) > 1 else "",
            "dev_f1": round(statistics.mean(r["dev_f1"] for r in rs), 2),
            "speedup_vs_fp32": round(statistics.mean(r["s_per_epoch"] for r in base) / sec, 2) if base else "",
            "run_machine": " | ".join(sorted({r["run_machine"] for r in rs})),
        })  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = [run_row(r) for r in args.runs if (r / "final.json").exists()]
    if not rows:
        raise SystemExit("no finished run (a directory with final.json) among the arguments")
    rows.sort(key=lambda r: (r["dataset"], r["config"], r["precision"], r["seed"]))
    write_csv(args.out, rows + summary(rows), run_meta("precision_runs.py"))


if __name__ == "__main__":
    main()
