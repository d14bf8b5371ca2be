"""Where a long-running HamLearning server's memory goes: Python objects, the C heap, or free heap space.

Runs the HamLearning soak's traffic (benchmarks/serve_soak.py: its tiny HamLearning checkpoint, its
mixed requests and bad bodies, a burst of 8 concurrent 6000 x 6000 PNGs after each round) against a
server in this very process (uvicorn in a thread), with ``tracemalloc`` on. After each round (and a
``gc.collect()``) it records:

- the process's RSS;
- what ``tracemalloc`` traces (memory held by Python objects; torch, PIL, the tokenizers and the
  oneDNN caches allocate outside it);
- glibc's ``mallinfo2()`` over all arenas: bytes in use (live C and Python allocations), bytes free
  inside the arenas (fragmentation: held by the process, reusable, not returned), mmapped blocks;
- the count of objects the garbage collector tracks, by type (the largest changes);
- the source lines whose traced memory grew most since the last round.

A leak shows as in-use bytes (or traced bytes, or an object type) that grow round after round; heap
fragmentation shows as free bytes inside the arenas that grow while in-use bytes stay level.
Writes ``--out`` (CSV, one row per round) and the same path with ``.md`` (the table and the top
growing lines of each round).

    python benchmarks/serve_heap_probe.py --rounds 8 --per-round 1000
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def mallinfo_mb() -> dict[str, float]:
    """glibc's heap over all arenas, in MB: arena (obtained with brk/mmap for arenas), in use, free inside them, mmapped blocks."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    mb = 1024 * 1024
    return {"arena_mb": m.arena / mb, "in_use_mb": m.uordblks / mb, "free_in_arenas_mb": m.fordblks / mb, "mmapped_mb": m.hblkhd / mb}


def object_types() -> Counter[str]:
    return Counter(type(o).__name__ for o in gc.get_objects())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=1000, help="mixed requests per round (then a burst of 8 big PNGs)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--frames", type=int, default=6, help="tracemalloc frames kept per allocation")
    parser.add_argument("--data-root", default=os.environ.get("HAMNER_DATA_ROOT", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default="results/bench_serve_heap_probe.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]
    import serve_soak as soak
    import uvicorn
    from _results import run_meta, write_csv
    from PIL import Image

    from hamner.data.datasets import load_split
    from hamner.serve.app import create_app
    from hamner.serve.process import free_port, rss_mb
    from hamner.serve.service import ServeConfig, TaggingService
    from hamner.vision import set_threads
    from hamner.vision.config import load_vision_config
    from synthetic import tiny_hamlearning_checkpoint

    soak.BOMB = soak.header_bomb()
    texts = [" ".join(p.words) for p in load_split("twitter2017", "test", args.data_root)]
    images = [p.read_bytes() for p in sorted(Path(args.data_root).glob("twitter20*/images/*.jpg"))]
    big = soak.png(Image.new("RGB", (6000, 6000), (200, 30, 30)))
    ckpt = tiny_hamlearning_checkpoint(Path(tempfile.mkdtemp(prefix="hamner-heap-probe-")) / "hamlearning")["ckpt"]
    assert isinstance(ckpt, Path)
    set_threads(1)
    config = ServeConfig(max_image_decoded_mb=256, max_decoding=2, vision=load_vision_config(None, ["on_bad_image=error"]))
    server = uvicorn.Server(uvicorn.Config(create_app(TaggingService.from_pretrained(ckpt, config)), host="127.0.0.1", port=free_port(), log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    base = f"http://127.0.0.1:{server.config.port}"
    kinds = soak.request_kinds(texts, images)
    asyncio.run(soak.send(base, [(n, e, f(i)) for i, (n, e, f) in enumerate(kinds * 3)], 1))  # warm-up
    tracemalloc.start(args.frames)
    gc.collect()
    previous, previous_types = tracemalloc.take_snapshot(), object_types()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    counter = 0
    for rnd in range(1, args.rounds + 1):
        jobs = []
        for _ in range(args.per_round):
            name, expected, make = kinds[counter % len(kinds)]
            jobs.append((name, expected, make(counter)))
            counter += 1
        results = asyncio.run(soak.send(base, jobs, args.clients))
        burst = [("big-png", 200, {"data": {"text": texts[k]}, "files": {"image": ("big.png", big, "image/png")}}) for k in range(8)]
        results += asyncio.run(soak.send(base, burst, 8))
        unexpected = sum(status != expected for _, expected, status, _ in results)
        del jobs, results
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        traced, _ = tracemalloc.get_traced_memory()
        types = object_types()
        row = {
            "round": rnd,
            "requests": args.per_round + 8,
            "unexpected_status": unexpected,
            "rss_mb": round(rss_mb(os.getpid()), 1),
            "traced_python_mb": round(traced / 2**20, 2),
            **{k: round(v, 1) for k, v in mallinfo_mb().items()},
            "gc_objects": sum(types.values()),
        }
        rows.append(row)
        print(row, flush=True)
        changed = sorted(((k, types[k] - previous_types[k]) for k in types | previous_types if types[k] != previous_types[k]), key=lambda kv: -abs(kv[1]))
        notes.append(f"- round {rnd}: object types {changed[:8]}; lines: " + "; ".join(str(s) for s in snapshot.compare_to(previous, "lineno")[:4]))
        previous, previous_types = snapshot, types
    server.should_exit = True
    meta = {**run_meta("serve_heap_probe.py"), "clients": args.clients}
    out = Path(args.out)
    write_csv(out, rows, meta)
    md = [
        "# Where a HamLearning server's memory goes, round by round",
        "",
        f"`{meta['command']}` at {meta['commit']}{' (dirty)' if meta['dirty'] else ''} on {meta['machine']}, {meta['date']}.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows),
        "",
        "Largest changes per round (gc-tracked object counts; tracemalloc lines):",
        "",
        *notes,
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
