"""hamner bulk on a real embedded Ray (2 CPUs, loopback only): text-only and HamLearning models on
JSONL and Parquet, the same answers as hamner tag (bad rows included), every bad row written with
its reason, and a job whose driver is killed finished by a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")

import pyarrow.parquet as pq  # noqa: E402

from bulk_helpers import (  # noqa: E402
    bad_rows_file,
    comparable,
    descendants,
    fuzz_file,
    kill_group,
    listening_addresses,
    make_posts,
    read_output,
    worker_env,
)
from conftest import REPO, tiny_text_checkpoint  # noqa: E402
from hamner.bulk.job import BulkOptions, _loopback_only, run_bulk  # noqa: E402
from hamner.cli import main  # noqa: E402
from hamner.errors import ConfigError  # noqa: E402
from synthetic import tiny_hamlearning_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One embedded Ray for the module, started as hamner bulk starts it (bound to 127.0.0.1)."""
    if ray.is_initialized():
        ray.shutdown()
    _loopback_only(ray)
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": worker_env()}, logging_level="WARNING",
    )  # fmt: skip
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_text_checkpoint(tmp_path_factory.mktemp("bulk-text"))


@pytest.fixture(scope="module")
def mm_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(str(tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("bulk-mm"))["ckpt"]))


def bulk(model: Path, inputs: list[Path], out: Path, **kw: Any) -> dict[str, Any]:
    options = BulkOptions(model=str(model), inputs=[str(p) for p in inputs], output=str(out), progress=False, **kw)
    return run_bulk(options)


def tag_records(model: Path, posts: Path, out: Path, *flags: str) -> dict[int, dict[str, Any]]:
    """hamner tag --on-bad-line skip over the same file: its record for each line."""
    assert main(["tag", "--model", str(model), str(posts), "-o", str(out), "--no-progress", "--on-bad-line", "skip", *flags]) == 0
    return {r["line"]: r for r in (json.loads(x) for x in out.read_text().splitlines())}


def assert_same_answers(rows: list[dict[str, Any]], tagged: dict[int, dict[str, Any]]) -> None:
    """Every line: the same entities as hamner tag, or the same error message for a bad line."""
    assert [r["line"] for r in rows] == sorted(tagged)
    for r in rows:
        t = tagged[r["line"]]
        # hamner tag gives an id-less line its line number; bulk gives it FILE:LINE (the posts here have string ids)
        assert r["id"] == (t["id"] if isinstance(t["id"], str) else f"{r['source']}:{r['line']}")
        if "error" in t:
            assert (r["error"], r["entities"]) == (t["error"], None), r
        else:
            ents = [dict(e) for e in r["entities"]]
            assert ents == t["entities"], (r["line"], r["text"])
            if r["error_kind"] is None or r["error_kind"].startswith("image_"):
                status = (t.get("visual") or {}).get("status")
                assert r["image_status"] == status
            if r["error_kind"] != "empty_text" and t.get("relevance") is not None:  # tag says r = 0 for an empty post
                assert r["relevance"] == pytest.approx(t["relevance"], abs=1e-5)


def slow_cli_job(model: Path, posts: Path, out: Path) -> list[str]:
    """A hamner bulk command in small pieces (shards of 20 rows), to stop or break midway."""
    return [
        sys.executable, "-m", "hamner.cli", "bulk", "--model", str(model), "--input", str(posts), "--output", str(out),
        "--on-bad-image", "skip", "--rows-per-shard", "20", "--part-rows", "20", "--image-batch", "4", "--tag-batch", "20",
        "--num-cpus", "2", "--no-progress",
    ]  # fmt: skip


def test_ray_talks_over_loopback_only(local_ray: Any) -> None:
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    addresses = listening_addresses([os.getpid(), *descendants(os.getpid())])
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}, addresses


def test_text_only_gives_the_answers_of_hamner_tag(local_ray: Any, text_ckpt: Path, tmp_path: Path) -> None:
    posts = make_posts(tmp_path / "in", 300, images=True)  # a text-only model ignores the images
    summary = bulk(text_ckpt, [posts], tmp_path / "out", rows_per_shard=64, part_rows=50)
    rows = read_output(tmp_path / "out")
    assert summary["rows"] == summary["input_rows"] == len(rows) == 300 and summary["error_rows"] == 0
    assert summary["entities"] == sum(len(r["entities"]) for r in rows) > 0
    assert len({(r["source"], r["line"]) for r in rows}) == 300
    assert all(r["relevance"] is None and r["image_status"] is None for r in rows)
    assert_same_answers(rows, tag_records(text_ckpt, posts, tmp_path / "tag.jsonl"))
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["state"] == "complete" and manifest["summary"]["rows"] == 300
    again = bulk(text_ckpt, [posts], tmp_path / "out")  # a finished job: nothing to do
    assert again["rows_this_run"] == 0 and again["rows"] == 300


def test_hamlearning_jsonl_and_parquet_with_images(local_ray: Any, mm_ckpt: Path, tmp_path: Path) -> None:
    posts = make_posts(tmp_path / "in", 240, images=True)
    summary = bulk(mm_ckpt, [posts], tmp_path / "out", on_bad_image="skip", rows_per_shard=50, part_rows=40, image_batch=8)
    rows = read_output(tmp_path / "out")
    assert len(rows) == 240 and summary["errors"] == {"image_missing": sum(1 for r in rows if r["image_status"] == "missing")}
    assert {r["image_status"] for r in rows} == {"ok", "no_image", "missing"}
    assert all(r["relevance"] is not None and r["level_weights"] for r in rows)
    assert_same_answers(rows, tag_records(mm_ckpt, posts, tmp_path / "tag.jsonl", "--on-bad-image", "skip"))
    # the same posts as Parquet (image paths still relative to the input's folder): the same rows
    records = [json.loads(line) for line in posts.read_text().splitlines()]
    table = pa.Table.from_pylist([{"id": r["id"], "text": r["text"], "image": r.get("image"), "caption": r.get("caption")} for r in records])
    pq.write_table(table, tmp_path / "in" / "posts.parquet", row_group_size=100)
    bulk(mm_ckpt, [tmp_path / "in" / "posts.parquet"], tmp_path / "out-pq", on_bad_image="skip")
    as_parquet = read_output(tmp_path / "out-pq")
    assert [c[1:] for c in comparable(as_parquet)] == [c[1:] for c in comparable(rows)]


def test_an_exported_hamlearning_model_reads_images_on_onnx_runtime(local_ray: Any, mm_ckpt: Path, tmp_path: Path) -> None:
    """An exported model in bulk: the image actors run its ONNX backbone, and the rows equal hamner
    tag's on the same exported model."""
    pytest.importorskip("onnxruntime")
    from hamner.bulk.stages import ImageStage
    from hamner.inference.onnx import export
    from hamner.vision.onnx_backbone import OnnxBackbone

    exported = export(mm_ckpt, tmp_path / "exported")
    assert isinstance(ImageStage(str(exported)).extractor.backbone, OnnxBackbone)
    posts = make_posts(tmp_path / "in", 60, images=True)
    bulk(exported, [posts], tmp_path / "out", on_bad_image="skip", image_batch=8)
    rows = read_output(tmp_path / "out")
    assert len(rows) == 60 and {r["image_status"] for r in rows} >= {"ok", "no_image"}
    assert_same_answers(rows, tag_records(exported, posts, tmp_path / "tag.jsonl", "--on-bad-image", "skip"))


def test_every_bad_row_is_written_with_its_reason(local_ray: Any, mm_ckpt: Path, tmp_path: Path) -> None:
    path, kinds = bad_rows_file(tmp_path / "in")
    summary = bulk(mm_ckpt, [path], tmp_path / "out", max_line_bytes=1000, output_format="jsonl")
    rows = read_output(tmp_path / "out")
    assert [(r["line"], r["error_kind"]) for r in rows] == kinds
    assert summary["error_rows"] == sum(1 for _, k in kinds if k) and summary["rows"] == len(kinds)
    by_kind = {r["error_kind"]: r for r in rows}
    assert "nowhere.jpg" in by_kind["image_missing"]["error"] and by_kind["image_missing"]["entities"] is None
    assert by_kind["empty_text"]["entities"] == [] and by_kind["invalid_json"]["text"] is None
    # the same file through hamner tag --on-bad-line skip: the same records for the lines it can
    # answer without stopping (it stops at a bad image unless --on-bad-image skip)
    skip = bulk(mm_ckpt, [path], tmp_path / "out-skip", max_line_bytes=1000, on_bad_image="skip")
    assert skip["errors"] == summary["errors"]
    skipped = read_output(tmp_path / "out-skip")
    tagged = tag_records(mm_ckpt, path, tmp_path / "tag.jsonl", "--on-bad-image", "skip", "--max-line-bytes", "1000")
    assert_same_answers(skipped, tagged)
    assert all(r["entities"] is not None for r in skipped if (r["error_kind"] or "").startswith("image_"))


def test_a_killed_driver_is_finished_by_the_same_command(local_ray: Any, mm_ckpt: Path, tmp_path: Path) -> None:
    posts = make_posts(tmp_path / "in", 200, images=True)
    ref = tmp_path / "reference"
    bulk(mm_ckpt, [posts], ref, on_bad_image="skip", rows_per_shard=20)
    out = tmp_path / "out"
    cmd = slow_cli_job(mm_ckpt, posts, out)
    env = {**os.environ, **worker_env(), "HAMNER_TEST_BACKBONE_DELAY": "0.1"}  # slow images: time to stop it midway
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while len(list(out.glob("part-*"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, f"the job ended before it could be stopped: {proc.stdout.read().decode()[-2000:] if proc.stdout else ''}"
    finally:
        kill_group(proc)
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    assert 2 <= len(first) < 10 and json.loads((out / "_manifest.json").read_text())["state"] == "running"
    summary = bulk(mm_ckpt, [posts], out, on_bad_image="skip", rows_per_shard=20)
    assert summary["rows"] == 200 and 0 < summary["rows_this_run"] < 200
    assert all((out / name).stat().st_mtime_ns == t for name, t in first.items())  # finished shards are kept
    assert comparable(read_output(out)) == comparable(read_output(ref))
    assert not (out / "_tmp").exists()


def test_a_lost_shard_is_tagged_again_and_another_precision_refused(local_ray: Any, text_ckpt: Path, tmp_path: Path) -> None:
    """Issue 30, 15: a finished output that lost a shard claimed 3 attempts it did not make; a job
    resumed in bf16 after fp32 mixed their answers."""
    posts = make_posts(tmp_path / "in", 120)
    out = tmp_path / "out"
    bulk(text_ckpt, [posts], out, rows_per_shard=40, part_rows=40, tag_batch=40, commit_seconds=1000)
    before = comparable(read_output(out))
    assert json.loads((out / "_manifest.json").read_text())["runtime"] == {"device": "cpu", "precision": "fp32"}
    lost = sorted(out.glob("part-*"))[1]
    lost.unlink()
    with pytest.raises(ConfigError, match=r"precision \('fp32' then, 'bf16' now\)"):
        bulk(text_ckpt, [posts], out, precision="bf16")
    again = bulk(text_ckpt, [posts], out)
    assert again["rows"] == 120 and 0 < again["rows_this_run"] < 120 and comparable(read_output(out)) == before
    assert json.loads((out / "_manifest.json").read_text())["state"] == "complete"


def test_every_bad_input_through_ray_with_both_models(local_ray: Any, text_ckpt: Path, mm_ckpt: Path, tmp_path: Path) -> None:
    """The fuzz file of test_bulk_fuzz.py end to end: every row once, tagged or with its error."""
    path = fuzz_file(tmp_path / "in")
    lines = path.read_bytes().count(b"\n") + 1
    for name, model in (("text", text_ckpt), ("mm", mm_ckpt)):
        summary = bulk(model, [path], tmp_path / name, max_line_bytes=4000, part_rows=9, tag_batch=7, image_batch=5)
        rows = read_output(tmp_path / name)
        assert [r["line"] for r in rows] == list(range(1, lines + 1)) and summary["rows"] == lines
        assert all(r["error"] is not None or r["entities"] is not None for r in rows)
        assert summary["error_rows"] == sum(1 for r in rows if r["error"] is not None)


def test_a_killed_raylet_is_named(mm_ckpt: Path, tmp_path: Path) -> None:
    """Issue 30, 15: after a killed raylet the driver exited 1 with no word of its own."""
    posts = make_posts(tmp_path / "in", 400, images=True)
    out = tmp_path / "out"
    cmd = slow_cli_job(mm_ckpt, posts, out)
    env = {**os.environ, **worker_env(), "HAMNER_TEST_BACKBONE_DELAY": "0.1"}
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("part-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        raylets = [pid for pid in descendants(proc.pid) if b"raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert proc.poll() is None and len(raylets) == 1
        os.kill(raylets[0], signal.SIGKILL)
        text = proc.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        kill_group(proc)
    assert proc.returncode != 0
    assert f"the embedded Ray's raylet (pid {raylets[0]}) died" in text and "rerun the same command to finish" in text
