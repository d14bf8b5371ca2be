"""Pure logic of the unseen-posts / busy-machine benchmarks (their numbers are measured elsewhere):
the competing load always ends, the summary and its table, the results-file helpers."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _load import competing_load  # noqa: E402


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_competing_load_runs_its_processes_and_kills_them_on_the_way_out() -> None:
    with competing_load(2, settle_s=0) as busy:
        assert busy.count == 2 and all(p.poll() is None for p in busy.procs)
        assert all(_alive(pid) for pid in busy.pids)
        cpu = busy.cpu_seconds()
        assert cpu is not None and cpu >= 0
    assert all(p.returncode is not None for p in busy.procs) and not any(_alive(pid) for pid in busy.pids)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_competing_load_kills_its_processes_when_the_body_raises(error: type[BaseException]) -> None:
    with pytest.raises(error), competing_load(1, settle_s=0) as busy:
        pids = busy.pids
        raise error("stop")
    assert not any(_alive(pid) for pid in pids)


def test_competing_load_of_zero_starts_nothing_and_refuses_negative_counts() -> None:
    with competing_load(0) as busy:
        assert busy.count == 0 and busy.cpu_seconds() == 0
    with pytest.raises(ValueError, match="integer >= 0"), competing_load(-1):
        pass


def test_a_competing_process_ends_by_itself_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A benchmark killed with SIGKILL runs no ``finally``: its spinning children must not outlive it."""
    code = (
        f"import sys, time; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); from _load import competing_load\n"
        "with competing_load(1, settle_s=0) as b:\n    print(b.pids[0], flush=True); time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(600):  # it checks its parent every million iterations (milliseconds)
        if not _alive(child):
            break
        subprocess.run(["sleep", "0.05"])
    else:
        os.kill(child, 9)
        pytest.fail(f"competing process {child} outlived its parent")


def _run(first: float, warm: float, **extra: Any) -> dict[str, Any]:
    return {
        "posts": 500, "load_s": 2.0, "first_post_s": 0.2, "first_pass_per_s": first, "first_pass_cpu_s": 4.0,
        "first_pass_wall_s": 2.0, "warm_per_s": warm, "one_at_a_time_per_s": 50.0, "peak_mb": 600.0, "load": 1.5,
        "torch_threads": 2, "ort_threads": None, **extra,
    }  # fmt: skip


def test_unseen_summary_gives_medians_ranges_and_the_busy_over_idle_ratio(tmp_path: Path) -> None:
    from inference_speed import summarise_unseen, unseen_table, with_vs_idle, write_unseen_table

    rows = with_vs_idle([
        summarise_unseen("text-only/onnx-int8", "idle", 0, [_run(100, 200, ort_threads=0), _run(120, 200, ort_threads=0), _run(90, 180, ort_threads=0)]),
        summarise_unseen("text-only/onnx-int8", "competing", 1, [_run(50, 60, ort_threads=0), _run(40, 70, ort_threads=0), _run(60, 80, ort_threads=0)]),
        summarise_unseen("spacy-md/tok2vec+ner", "idle", 0, [_run(300, 310, torch_threads=None)]),
    ])  # fmt: skip
    idle, busy, spacy = rows
    assert (idle["first_pass_per_s"], idle["first_pass_range"], idle["warm_per_s"]) == (100, "90.0-120.0", 200)
    assert idle["first_warm_ratio"] == 0.5 and idle["cpu_per_wall"] == 2.0 and idle["threads_seen"] == "torch 2, ort 0"
    assert (busy["first_pass_vs_idle"], busy["warm_vs_idle"], idle["first_pass_vs_idle"]) == (0.5, 0.35, 1.0)
    assert spacy["first_pass_vs_idle"] == 1.0 and spacy["threads_seen"] == ""
    path = tmp_path / "unseen.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["first_pass_vs_idle"])
        w.writeheader()
        w.writerows(rows)
    table = unseen_table(str(path)).splitlines()
    assert len(table) == 4 and "1 competing" in table[0]  # header, rule, one row per system
    assert table[2].startswith("| text-only | onnx-int8 | 100.0 (90.0-120.0) | 200.0 (180.0-200.0) | 0.5 | 50.0 (40.0-60.0)")
    assert "| 0.5 | 50.0 / 50.0 | 2.0 | 0.2 | 600 | torch 2, ort 0 |" in table[2] and table[3].startswith("| spacy-md | tok2vec+ner | 300.0 (300.0-300.0)")
    page = tmp_path / "speed.md"
    page.write_text("before\n<!-- unseen:start -->\nold\n<!-- unseen:end -->\nafter\n")
    write_unseen_table([str(path)], [str(page)])
    assert page.read_text() == "before\n<!-- unseen:start -->\n" + "\n".join(table) + "\n<!-- unseen:end -->\nafter\n"


def test_a_serve_load_counts_the_texts_its_server_was_sent_before() -> None:
    from serve_latency import repeats

    seen: set[int] = set()
    assert repeats(seen, 0, 8, 10) == 0 and repeats(seen, 8, 4, 10) == 2  # texts 8, 9, 0, 1: 0 and 1 again
    assert repeats(seen, 0, 25, 10) == 25  # every text sent before, some twice


def test_tag_throughput_rewrites_an_old_results_file_with_the_new_columns(tmp_path: Path) -> None:
    from tag_throughput import append_rows

    out = tmp_path / "bench_tag.csv"
    out.write_text("model,posts\nold,10\n")
    append_rows(out, [{"model": "new", "posts": 5, "competing": 1}])
    append_rows(out, [{"model": "newer", "posts": 6, "competing": 0}])
    assert list(csv.DictReader(out.open())) == [
        {"model": "old", "posts": "10", "competing": ""},
        {"model": "new", "posts": "5", "competing": "1"},
        {"model": "newer", "posts": "6", "competing": "0"},
    ]
