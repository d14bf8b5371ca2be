#!/usr/bin/env python3
"""``hamner bulk --address auto`` against a Ray cluster started with ``ray start``, as the README says.

    python benchmarks/bulk_cluster.py --model RUN/best [--posts 300] [--out results/bulk_cluster.json]

On one machine it plays a two-machine cluster: ``ray start --head`` (the head, 1 CPU) and
``ray start --address HEAD`` (a second node, 1 CPU), so the job's two 1-CPU tagging actors must run
on different nodes. Then ``hamner bulk --address auto`` tags ``--posts`` Twitter-2017 test texts, and
``hamner tag`` tags the same file: the entities must be the same for every row. The cluster is
stopped afterwards (``ray stop``), also on failure.

Ray 2.59 and later switch token authentication on for clusters started this way: every machine and
the driver then need the cluster's token (``~/.ray/auth_token``, made by the head) and
``RAY_AUTH_MODE=token``; this script sets that variable for everything it starts. Writes one JSON
file with the nodes seen, the rows, the agreement with ``hamner tag``, the time, and the commit,
machine and command.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import run_meta  # noqa: E402


def sh(cmd: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def entities(rows: list[dict]) -> dict[str, list[tuple]]:
    return {str(r["id"]): [(e["text"], e["type"], e["start"], e["end"]) for e in r["entities"]] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--posts", type=int, default=300)
    ap.add_argument("--port", type=int, default=6390)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=HERE.parent / "results" / "bulk_cluster.json")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from hamner.data.datasets import load_split

    bindir = Path(sys.executable).parent
    ray, hamner = str(bindir / "ray"), str(bindir / "hamner")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    work = Path(tempfile.mkdtemp(prefix="hamner-bulk-cluster-"))
    posts = load_split("twitter2017", "test", args.data_root)
    inp = work / "posts.jsonl"
    with inp.open("w") as fh:
        for i in range(args.posts):
            fh.write(json.dumps({"id": f"p{i}", "text": " ".join(posts[i % len(posts)].words)}) + "\n")
    result: dict = {"posts": args.posts, "model": str(args.model)}
    try:
        head = sh(
            [
                ray,
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",  # every node and the driver on loopback only
                f"--port={args.port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            env,
        )
        m = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr)
        if not m:
            raise RuntimeError(f"no head address in the output of ray start --head:\n{head.stdout[-2000:]}")
        address = m.group(1)
        sh([ray, "start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"], env)
        nodes = 0
        for _ in range(30):  # the second node registers with the head within a few seconds
            status = sh([ray, "status"], env)
            nodes = len(re.findall(r"^\s*1 node_", status.stdout + status.stderr, flags=re.M))
            if nodes >= 2:
                break
            time.sleep(1)
        result["nodes"] = nodes
        t0 = time.perf_counter()
        bulk = sh(
            [
                hamner,
                "bulk",
                "--address",
                "auto",
                "--model",
                str(args.model),
                "--input",
                str(inp),
                "--output",
                str(work / "bulk"),
                "--no-progress",
            ],
            env,
            timeout=900,
        )
        result["bulk_seconds"] = round(time.perf_counter() - t0, 1)
        result["bulk_summary"] = [line for line in bulk.stdout.splitlines() if line.strip()][-6:]
        result["bulk_log"] = [line.split(" ", 3)[-1] for line in bulk.stderr.splitlines() if "hamner.bulk.job" in line]
        sh(
            [hamner, "tag", "--model", str(args.model), "--no-progress", str(inp), "-o", str(work / "tag.jsonl")],
            env,
            timeout=900,
        )
    finally:
        subprocess.run([ray, "stop"], env=env, capture_output=True, text=True, timeout=120)
    rows = [r for f in sorted(glob.glob(str(work / "bulk" / "*.parquet"))) for r in pq.read_table(f).to_pylist()]
    tagged = [json.loads(line) for line in (work / "tag.jsonl").read_text().splitlines()]
    b, t = entities(rows), entities(tagged)
    result.update(
        rows_out=len(rows),
        distinct_ids=len(b),
        errors=sum(1 for r in rows if r.get("error")),
        rows_equal_to_hamner_tag=sum(b.get(k) == v for k, v in t.items()),
        entities=sum(len(v) for v in b.values()),
    )
    result.update(run_meta("bulk_cluster.py"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    if result["nodes"] < 2 or result["rows_equal_to_hamner_tag"] != args.posts or len(rows) != args.posts:
        sys.exit(1)


if __name__ == "__main__":
    main()
