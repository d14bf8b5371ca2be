"""scripts/make_figures.py draws every documentation figure from the committed results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("f1_vs_published", "ablations", "training_curves", "relevance", "case_studies")


def run(out: Path, data_root: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "scripts" / "make_figures.py"), "--out", str(out), "--data-root", str(data_root)]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_the_figures_are_drawn_from_the_committed_results(data_root: Path, tmp_path: Path) -> None:
    proc = run(tmp_path / "figures", data_root)
    assert proc.returncode == 0, proc.stderr
    for name in FIGURES:
        for ext in ("png", "svg"):
            path = tmp_path / "figures" / f"{name}.{ext}"
            assert path.stat().st_size > 5_000, path
            assert str(path) in proc.stdout
    assert (tmp_path / "figures" / "case_studies.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_data_the_case_studies_are_skipped_and_said_so(tmp_path: Path) -> None:
    proc = run(tmp_path / "figures", tmp_path / "no-data")
    assert proc.returncode == 0, proc.stderr
    assert "case studies skipped" in proc.stdout
    assert not (tmp_path / "figures" / "case_studies.png").exists()
    assert (tmp_path / "figures" / "f1_vs_published.svg").exists()
