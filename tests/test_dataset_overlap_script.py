"""scripts/dataset_overlap.py on corpora given by path (the benchmarks are its default)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write(folder: Path, posts: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True)
    for split, texts in posts.items():
        (folder / f"{split}.txt").write_text("".join("".join(f"{w}\tO\n" for w in t.split()) + "\n" for t in texts))


def test_two_corpora_by_path_are_compared_split_by_split(tmp_path: Path) -> None:
    shared = "the storm hits the coast of kent tonight"
    write(tmp_path / "a", {"train": [shared, "one two three four five"], "dev": ["alpha beta gamma delta"], "test": ["x y z w v"]})
    write(tmp_path / "b", {"train": ["red green blue white black"], "dev": ["cats dogs birds fish"], "test": [shared.upper(), "q r s t u"]})
    out, pairs = tmp_path / "overlap.csv", tmp_path / "pairs.jsonl"
    cmd = [sys.executable, str(REPO / "scripts" / "dataset_overlap.py"), "--corpus", f"a={tmp_path / 'a'}",
           "--corpus", f"b={tmp_path / 'b'}", "--out", str(out), "--pairs", str(pairs)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 21  # six splits, each pair once, a split with itself too
    hit = next(r for r in rows if r["split_a"] == "a/train" and r["split_b"] == "b/test")
    assert (hit["a_with_identical_in_b"], hit["a_with_near_identical_in_b"]) == ("1", "1")
    assert sum(int(r["a_with_near_identical_in_b"]) for r in rows if r["split_a"] != r["split_b"]) == 1
    assert rows[0]["corpora"] == f"a={tmp_path / 'a'} b={tmp_path / 'b'}" and rows[0]["machine"] != "cpu"
    assert '"a": "a/train"' in pairs.read_text()
