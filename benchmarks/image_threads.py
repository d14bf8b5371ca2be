#!/usr/bin/env python3
"""Images/s of the packaged image models by the thread that extracts them (issue 32), first and second pass.

    python benchmarks/image_threads.py [--images 30] [--repeats 3] [--threads N] [--out results/bench_image_threads.csv]

The extractor is the one ``hamner tag`` builds for a HamLearning checkpoint trained on the default
settings (``load_vision_config(None, [])``: EfficientNet-Lite0 on PyTorch, the OpenCV
SSD-MobileNet-V2 detector, RoIAlign regions, image words), over the sample images of
``$HAMNER_DATA_ROOT/twitter2015/images`` and ``twitter2017/images`` (30 in all). Each image is
extracted from its file (decoding included):

- ``same thread``: one after another in the thread that built the extractor;
- ``new thread each``: each in a brand-new thread, started and joined per image (a thread per
  request, a new executor per call);
- ``pool of 2``: by one ``ThreadPoolExecutor(2)``, made before the first pass and kept.

Every mode runs in a fresh process of its own (``--repeats`` of them), which builds the extractor
(not timed) and then passes twice over the images: pass 1 meets images and threads the process has
never seen, pass 2 the same images again. Rows: the median images/s of the repeats and their range,
the median and slowest per-image latency, and how many OpenCV nets the process loaded (counted
around ``cv2.dnn.readNetFromTensorflow``). Only APIs that exist since the detector kept a net per
thread are used, so the same script measures the code before and after (``PYTHONPATH=<old src>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("image_threads")

MODES = ("same thread", "new thread each", "pool of 2")


def sample_images(root: Path, n: int) -> list[Path]:
    paths = sorted((root / "twitter2015" / "images").glob("*.jpg")) + sorted((root / "twitter2017" / "images").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no sample images under {root}/twitter2015/images or {root}/twitter2017/images (set HAMNER_DATA_ROOT)")
    if n > len(paths):
        raise SystemExit(f"--images {n}: only {len(paths)} sample images under {root}")
    return paths[:n]


def worker(mode: str, paths: list[Path], threads: int | None) -> dict[str, Any]:
    """One fresh process: build the extractor, then two timed passes over ``paths`` in ``mode``."""
    import cv2

    from hamner.vision import set_threads
    from hamner.vision.config import load_vision_config
    from hamner.vision.extractor import VisualExtractor

    set_threads(threads)
    loaded: list[str] = []
    read = cv2.dnn.readNetFromTensorflow

    def counted(*args: Any) -> Any:
        loaded.append(threading.current_thread().name)
        return read(*args)

    cv2.dnn.readNetFromTensorflow = counted  # type: ignore[assignment]  # count the nets, whatever the detector does
    t0 = time.perf_counter()
    extractor = VisualExtractor(load_vision_config(None, []))
    build_s = time.perf_counter() - t0
    pool = ThreadPoolExecutor(2, thread_name_prefix="bench") if mode == "pool of 2" else None

    def one(path: Path) -> float:
        start = time.perf_counter()
        feats = extractor.extract_file(path)
        if feats.status != "ok":
            raise RuntimeError(f"{path}: {feats.status} {feats.error}")
        return time.perf_counter() - start

    def in_new_thread(path: Path) -> float:
        got: list[float] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                got.append(one(path))
            except BaseException as exc:  # re-raised in the caller's thread below
                failed.append(exc)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if failed:
            raise failed[0]
        return got[0]

    passes = []
    for number in (1, 2):
        nets_before = len(loaded)
        start = time.perf_counter()
        if mode == "same thread":
            lat = [one(p) for p in paths]
        elif mode == "new thread each":
            lat = [in_new_thread(p) for p in paths]
        else:
            assert pool is not None
            lat = list(pool.map(one, paths))
        seconds = time.perf_counter() - start
        passes.append({
            "pass": number, "seconds": seconds, "latencies": lat, "nets_loaded": len(loaded) - nets_before,
        })  # fmt: skip
    if pool is not None:
        pool.shutdown()
    import torch

    return {"build_s": build_s, "torch_threads": torch.get_num_threads(), "passes": passes, "nets_total": len(loaded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = os.environ.get("HAMNER_DATA_ROOT", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data-root", default=default_root)
    parser.add_argument("--images", type=int, default=30, help="how many sample images (at most 30)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode (one after another, modes interleaved)")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: the libraries' own)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--out", default="results/bench_image_threads.csv")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = sample_images(Path(args.data_root), args.images)
    if args.worker:
        print(json.dumps(worker(args.worker, paths, args.threads)))
        return

    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for mode in args.modes:  # interleaved: a shared machine's drift hits every mode alike
            cmd = [sys.executable, __file__, "--worker", mode, "--images", str(args.images), "--data-root", args.data_root]
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for p in result["passes"]:
                p["load_1m"] = os.getloadavg()[0]
                p["torch_threads"] = result["torch_threads"]
                p["nets_total"] = result["nets_total"]
                runs.setdefault((mode, p["pass"]), []).append(p)
                log.info(
                    "repeat %d  %-16s pass %d: %5.2f images/s (slowest image %.2f s, nets loaded %d)",
                    repeat, mode, p["pass"], len(paths) / p["seconds"], max(p["latencies"]), p["nets_loaded"],
                )  # fmt: skip

    from _results import run_meta, write_csv

    rows = []
    for (mode, number), got in runs.items():
        rates = [len(paths) / r["seconds"] for r in got]
        lat = [x for r in got for x in r["latencies"]]
        rows.append({
            "mode": mode, "pass": "first" if number == 1 else "second", "images": len(paths), "repeats": len(got),
            "images_per_s": round(statistics.median(rates), 2), "images_per_s_min": round(min(rates), 2),
            "images_per_s_max": round(max(rates), 2), "latency_p50_s": round(statistics.median(lat), 3),
            "latency_max_s": round(max(lat), 3), "nets_loaded_in_pass": max(r["nets_loaded"] for r in got),
            "nets_per_process": max(r["nets_total"] for r in got), "torch_threads": got[0]["torch_threads"],
            "load_1m": round(statistics.median(r["load_1m"] for r in got), 2),
        })  # fmt: skip
    write_csv(args.out, rows, run_meta("image_threads.py"))


if __name__ == "__main__":
    main()
