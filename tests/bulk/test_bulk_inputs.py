"""hamner bulk without Ray: reading inputs in parts gives hamner tag's posts and errors; the output
bookkeeping (shards, index, manifest, restart) holds every row once."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bulk_helpers import bad_rows_file  # noqa: E402
from hamner.bulk import output as out_mod  # noqa: E402
from hamner.bulk.inputs import error_kind, find_inputs, index_file, make_parts, read_part  # noqa: E402
from hamner.errors import ConfigError  # noqa: E402
from hamner.inference.stream import InputReader  # noqa: E402


def test_importing_the_bulk_stages_does_not_import_ray() -> None:
    import subprocess
    import sys

    code = "import sys, hamner.bulk.stages, hamner.bulk.output, hamner.cli; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("part_rows", [1, 3, 4, 100])
def test_parts_read_exactly_what_hamner_tag_reads(tmp_path: Path, part_rows: int) -> None:
    path, kinds = bad_rows_file(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n", 2) + b'{"id": "last", "text": "no line break"}')
    whole = list(InputReader(io.BytesIO(path.read_bytes()), str(path), "jsonl", tmp_path, max_line_bytes=1000, blank_jsonl="post"))  # as hamner tag reads
    f = index_file(path, part_rows)
    assert f.rows == len(whole) == len(kinds) + 1 and sum(f.part_rows) == f.rows
    got = [post for part in make_parts([f], None) for post in read_part(part, max_line_bytes=1000)]
    # the same posts, but an id-less line's id is FILE:LINE (hamner tag: its line number)
    id_less = {p.line for p in whole if p.id == p.line}
    assert id_less == {2, 3, 10, 11}
    assert [(p.line, p.id, p.text, p.image, p.caption, p.error) for p in got] == [
        (p.line, f"{path}:{p.line}" if p.line in id_less else p.id, p.text, p.image, p.caption, p.error) for p in whole
    ]
    parse_kinds = {p.line: error_kind(p.error) for p in got if p.error}
    expected = {line: kind for line, kind in kinds if kind and not kind.startswith(("image_", "empty"))}
    assert parse_kinds == expected


def test_a_part_skips_the_lines_already_done(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"post {i}"}) + "\n" for i in range(10)))
    (part,) = make_parts([index_file(path, 100)], None)
    from dataclasses import replace

    lines = [p.line for p in read_part(replace(part, done=((2, 4), (9, 9))))]
    assert lines == [1, 5, 6, 7, 8, 10]


def test_an_empty_file_has_no_parts(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert make_parts([index_file(path, 4)], None) == []


def test_parquet_rows_get_the_record_checks(tmp_path: Path) -> None:
    path = tmp_path / "posts.parquet"
    table = pa.table({"id": [1, None, 3], "text": ["obama in paris", None, "nba"], "caption": [None, None, "a cat"], "lang": ["en"] * 3})
    pq.write_table(table, path, row_group_size=2)
    f = index_file(path, 512)
    assert f.rows == 3 and f.part_rows == (2, 1)
    posts = [p for part in make_parts([f], None) for p in read_part(part)]
    assert [(p.line, p.id, p.error) for p in posts] == [
        (1, 1, None), (2, f"{path}:2", 'expected a Parquet row with a string field "text"'), (3, 3, None),
    ]  # fmt: skip
    assert posts[2].caption == "a cat"
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "notext.parquet")
    with pytest.raises(ConfigError, match="notext.parquet: a Parquet input needs a column 'text'"):
        index_file(tmp_path / "notext.parquet", 512)


def test_inputs_by_path_folder_and_glob(tmp_path: Path) -> None:
    for name in ("a.jsonl", "b.parquet", "c.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in find_inputs([str(tmp_path)])] == ["a.jsonl", "b.parquet"]
    assert [p.name for p in find_inputs([str(tmp_path / "*.jsonl"), str(tmp_path / "a.jsonl")])] == ["a.jsonl"]
    with pytest.raises(ConfigError, match="no such file or folder"):
        find_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(ConfigError, match="c.txt: not an input hamner bulk reads"):
        find_inputs([str(tmp_path / "c.txt")])


def _row(source: int, line: int, kind: str | None = None) -> dict[str, object]:
    return {
        "id": str(line), "source": source, "line": line, "text": "t", "entities": [] if kind is None else None,
        "relevance": None, "level_weights": None, "image_status": None, "windows": 1, "error": kind, "error_kind": kind,
    }  # fmt: skip


def test_a_shard_is_named_by_its_rows_and_committed_with_its_index(tmp_path: Path) -> None:
    rows = [_row(0, 3), _row(0, 1), _row(0, 2, "invalid_json"), _row(1, 7)]
    a = out_mod.write_shard(rows, str(tmp_path), ["/in/a.jsonl", "/in/b.jsonl"], "parquet")
    b = out_mod.write_shard(list(reversed(rows)), str(tmp_path), ["/in/a.jsonl", "/in/b.jsonl"], "parquet")
    assert a == b and a["shard"].startswith("part-00000-000000000001-")  # the same rows: the same file, rewritten
    assert json.loads(json.dumps(a["ranges"])) == {"/in/a.jsonl": [[1, 3]], "/in/b.jsonl": [[7, 7]]}
    assert a["errors"] == {"invalid_json": 1} and a["rows"] == 4
    table = pq.read_table(tmp_path / a["shard"])
    assert table.column("line").to_pylist() == [1, 2, 3, 7] and table.schema == out_mod.output_schema()
    assert [r["shard"] for r in out_mod.read_index(tmp_path)] == [a["shard"]]
    (tmp_path / a["shard"]).unlink()  # an index whose shard was never committed does not count
    assert out_mod.read_index(tmp_path) == []


def test_pending_parts_and_the_completeness_check(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"text": f"post {i}"}) + "\n" for i in range(10)))
    f = index_file(path, 4)
    parts = make_parts([f], None)
    assert [(p.first_line, p.rows) for p in parts] == [(1, 4), (5, 4), (9, 2)]
    done = {f.path: [(1, 4), (6, 7)]}
    pending = out_mod.pending_parts(parts, done)
    assert [(p.first_line, p.done) for p in pending] == [(5, ((6, 7),)), (9, ())]
    assert out_mod.check_complete([f], done) == (4, [])
    assert out_mod.check_complete([f], {f.path: [(1, 10)]}) == (0, [])
    missing, problems = out_mod.check_complete([f], {f.path: [(1, 6), (3, 4), (5, 10)]})
    assert problems and "in two shards" in problems[0]


def test_the_manifest_refuses_another_job_unless_overwrite(tmp_path: Path) -> None:
    model = {"path": "/m", "sha256": "aaa"}
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "x"}\n')
    f = index_file(path, 4)
    ident = out_mod.job_identity(model, [f], {"on_bad_image": "error"})
    out = tmp_path / "out"
    assert out_mod.open_output(out, ident, False)["state"] == "running"
    (out / "_tmp").mkdir()
    (out / "_tmp" / "half-written").write_text("x")
    assert out_mod.open_output(out, ident, False)["state"] == "running"  # the same job: continued
    assert not (out / "_tmp").exists()  # what an interrupted writer left is dropped
    other = out_mod.job_identity({"path": "/m2", "sha256": "bbb"}, [f], {"on_bad_image": "skip"})
    with pytest.raises(ConfigError, match="holds the output of another job: it differs in the model .*option on_bad_image"):
        out_mod.open_output(out, other, False)
    out_mod.write_shard([_row(0, 1)], str(out), [f.path], "parquet")
    assert out_mod.open_output(out, other, True)["model"]["sha256"] == "bbb"
    assert not list(out.glob("part-*")) and out_mod.read_index(out) == []
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(ConfigError, match="not a hamner bulk output"):
        out_mod.open_output(tmp_path / "busy", ident, False)


def test_an_unpaired_surrogate_in_an_id_or_an_image_path_cannot_stop_the_job(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "\\ud83d", "text": "obama"}\n{"id": "i", "text": "obama", "image": "\\ud83d.png"}\n')
    from hamner.bulk.inputs import id_text

    first, second = (p for part in make_parts([index_file(path, 10)], None) for p in read_part(part))
    assert first.error is None and id_text(first.id) == '"\\ud83d"'  # ASCII-escaped JSON: any format can hold it
    assert second.error is not None and error_kind(second.error) == "invalid_unicode" and "image path" in second.error


def test_a_cluster_that_wants_a_token_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ray 2.59+ clusters from 'ray start --head' authenticate with a token: the error says what to set."""
    ray = pytest.importorskip("ray")
    from hamner.bulk.job import BulkOptions, ray_session

    class AuthenticationError(Exception):  # the name Ray's own exception has
        pass

    def refuse(**kwargs: object) -> None:
        raise AuthenticationError("InvalidAuthToken")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    options = BulkOptions(model="m", inputs=[str(tmp_path)], output=str(tmp_path / "out"), address="auto")
    with pytest.raises(ConfigError, match="RAY_AUTH_MODE=token"):
        with ray_session(options):
            pass


def test_rows_without_an_id_get_file_and_line_unlike_any_real_id(tmp_path: Path) -> None:
    """Issue 30, 15: an id-less line got its line number, repeated across files and like a real id."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"text": "x"}\n{"id": 1, "text": "y"}\n{"id": null, "text": "z"}\nnot json\n')
    b.write_text('{"text": "x"}\n{"id": "1", "text": "y"}\n')
    from hamner.bulk.inputs import id_text

    ids = [id_text(p.id) for part in make_parts([index_file(a, 10), index_file(b, 10)], None) for p in read_part(part)]
    assert ids == [f"{a}:1", "1", f"{a}:3", f"{a}:4", f"{b}:1", "1"]  # the two real ids "1" are the input's own
    assert len(set(ids)) == 5


def test_a_folder_gives_only_post_files_never_a_manifest(tmp_path: Path) -> None:
    """Issue 30, 15: --input FOLDER also read .json files that are not posts (a manifest beside them)."""
    for name in ("a.jsonl", "b.ndjson", "c.parquet", "d.json", "_manifest.json", ".hidden.jsonl", "_SUCCESS", "e.jsonl.crc"):
        (tmp_path / name).write_text("")
    (tmp_path / "_index").mkdir()
    (tmp_path / "_index" / "part-1.json").write_text("{}")
    assert [p.name for p in find_inputs([str(tmp_path)])] == ["a.jsonl", "b.ndjson", "c.parquet"]
    assert [p.name for p in find_inputs([str(tmp_path / "*.json")])] == ["d.json"]  # a glob: no _ or . names
    assert [p.name for p in find_inputs([str(tmp_path / "**" / "*.json")])] == ["d.json"]  # not _index/*.json
    assert [p.name for p in find_inputs([str(tmp_path / "d.json")])] == ["d.json"]  # named itself: read
    with pytest.raises(ConfigError, match="the manifest of a hamner bulk output, not posts"):
        find_inputs([str(tmp_path / "_manifest.json")])


def test_a_number_too_long_to_read_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1' + "0" * 5000 + ', "text": "x"}\n{"id": "ok", "text": "y"}\n')
    posts = [p for part in make_parts([index_file(path, 10)], None) for p in read_part(part)]
    assert posts[0].error is not None and "too long to read" in posts[0].error and posts[0].id == f"{path}:1"
    assert "set_int_max_str_digits" not in posts[0].error and posts[1].error is None


def test_overwrite_deletes_only_what_a_bulk_job_wrote(tmp_path: Path) -> None:
    """Issue 30, 14: --overwrite deleted every part-* file, Spark's inputs included."""
    spark = tmp_path / "spark"
    spark.mkdir()
    for name in ("part-00000.json", "part-00001.json", "_SUCCESS"):
        (spark / name).write_text('{"text": "x"}\n')
    inputs = [index_file(spark / "part-00000.json", 4), index_file(spark / "part-00001.json", 4)]
    ident = out_mod.job_identity({"path": "/m", "sha256": "a"}, inputs, {})
    with pytest.raises(ConfigError, match="holds the input .*part-00000.json"):
        out_mod.open_output(spark, ident, True)
    elsewhere = out_mod.job_identity({"path": "/m", "sha256": "a"}, [index_file(_posts(tmp_path), 4)], {})
    with pytest.raises(ConfigError, match="not a hamner bulk output"):
        out_mod.open_output(spark, elsewhere, True)  # no manifest: nothing here is a bulk job's, even with --overwrite
    assert sorted(p.name for p in spark.iterdir()) == ["_SUCCESS", "part-00000.json", "part-00001.json"]
    out = tmp_path / "out"
    out_mod.open_output(out, elsewhere, False)
    shard = out_mod.write_shard([_row(0, 1)], str(out), [inputs[0].path], "parquet")["shard"]
    (out / "part-99999-foreign.parquet").write_text("not ours")
    (out / "notes.txt").write_text("mine")
    other = out_mod.job_identity({"path": "/m", "sha256": "b"}, [index_file(_posts(tmp_path), 4)], {})
    out_mod.open_output(out, other, True)
    assert not (out / shard).exists() and out_mod.read_index(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json", "notes.txt", "part-99999-foreign.parquet"]


def _posts(tmp_path: Path) -> Path:
    path = tmp_path / "posts" / "p.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text('{"text": "x"}\n')
    return path


def test_resuming_with_another_device_or_precision_is_refused(tmp_path: Path) -> None:
    """Issue 30, 15: bf16 changes answers; a job resumed in bf16 after fp32 mixed them silently."""
    f = index_file(_posts(tmp_path), 4)
    out = tmp_path / "out"
    manifest = out_mod.open_output(out, out_mod.job_identity({"path": "/m", "sha256": "a"}, [f], {}), False)
    fp32 = {"device": "cpu", "precision": "fp32"}
    manifest = out_mod.pin_runtime(out, manifest, fp32, False)
    assert json.loads((out / "_manifest.json").read_text())["runtime"] == fp32
    assert out_mod.pin_runtime(out, manifest, {"device": "cpu", "precision": "bf16"}, False)["runtime"]["precision"] == "bf16"
    manifest = out_mod.pin_runtime(out, manifest, fp32, False)  # no row written yet: nothing mixes
    out_mod.write_shard([_row(0, 1)], str(out), [f.path], "parquet")
    with pytest.raises(ConfigError, match=r"other settings that change the answers: precision \('fp32' then, 'bf16' now\)"):
        out_mod.pin_runtime(out, manifest, {"device": "cpu", "precision": "bf16"}, False)
    again = out_mod.pin_runtime(out, manifest, {"device": "cpu", "precision": "bf16"}, True)  # --overwrite: start again
    assert again["runtime"]["precision"] == "bf16" and out_mod.read_index(out) == []


def test_the_shard_writer_commits_the_first_rows_within_seconds_and_each_row_once(tmp_path: Path) -> None:
    """Issue 30, 15: with 10,000-row shards nothing was committed for minutes, and the bar counted
    rows a shard behind. Shards now come after 2 s, then 4, 8 ... (at most rows_per_shard rows)."""
    now = [0.0]
    writer = out_mod.ShardWriter(str(tmp_path), ["/in/a.jsonl"], [100], "parquet", rows_per_shard=30, clock=lambda: now[0])
    assert writer.add([_row(0, n) for n in (1, 2, 3)]) == 3 and writer.written == 0  # within the first 2 s: held
    now[0] = 2.5
    assert writer.add([_row(0, 4), _row(0, 2)]) == 1 and writer.written == 4  # a row seen twice is counted once
    now[0] = 4.0
    writer.add([_row(0, n) for n in range(5, 40)])  # 35 rows: a full shard at once, the rest wait 8 s
    assert writer.written == 34
    now[0] = 9.0
    writer.add([])
    assert writer.written == 34
    now[0] = 12.5
    writer.add([_row(0, 40)])
    assert writer.written == 40
    writer.add([_row(0, 41)])
    writer.flush()
    records = out_mod.read_index(tmp_path)
    assert sum(r["rows"] for r in records) == 41 and len(records) == 4
    assert out_mod.check_complete([], out_mod.done_ranges(records)) == (0, [])
