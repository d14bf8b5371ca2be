"""Whatever a row holds, it comes out of every stage of hamner bulk exactly once, tagged or with its
error: the stages run directly (no Ray) over a file of every bad input, for a text-only and a
HamLearning model (the end-to-end run through Ray is in test_bulk_job.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")

from bulk_helpers import fuzz_file, read_output  # noqa: E402
from conftest import tiny_text_checkpoint  # noqa: E402
from hamner.bulk.inputs import index_file, make_parts  # noqa: E402
from hamner.bulk.output import write_shard  # noqa: E402
from hamner.bulk.stages import ImageStage, TagStage, read_parts  # noqa: E402
from synthetic import tiny_hamlearning_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "text-only": tiny_text_checkpoint(tmp_path_factory.mktemp("fuzz-text")),
        "hamlearning": Path(str(tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("fuzz-mm"))["ckpt"])),
    }


def batches(table: Any, size: int) -> list[Any]:
    return [table.slice(k, size) for k in range(0, table.num_rows, size)]


def run_stages(model: Path, path: Path, out: Path, on_bad_image: str = "error", on_bad_text: str = "error") -> list[dict[str, Any]]:
    """The pipeline of a job, stage by stage, in small odd-sized batches; the rows written."""
    parts = make_parts([index_file(path, 7)], None)
    read = pa.concat_tables(
        [read_parts(pa.table({"part": [json.dumps(p.to_dict())]}), on_bad_text=on_bad_text, max_line_bytes=4000) for p in parts]
    )
    from hamner.bulk.stages import is_multimodal

    if is_multimodal(str(model)):
        image = ImageStage(str(model), on_bad_image=on_bad_image)
        read = pa.concat_tables([image(b) for b in batches(read, 5)])
    tag = TagStage(str(model), batch_size=4)
    for b in batches(read, 6):
        tagged = tag(b)
        write_shard(tagged.to_pylist(), str(out), [str(path)], "parquet")
    return read_output(out)


@pytest.mark.parametrize("on_bad_text", ["error", "replace"])
@pytest.mark.parametrize("on_bad_image", ["error", "skip"])
@pytest.mark.parametrize("kind", ["text-only", "hamlearning"])
def test_every_row_of_every_bad_input_comes_out_once(
    models: dict[str, Path], tmp_path: Path, kind: str, on_bad_image: str, on_bad_text: str
) -> None:
    if kind == "text-only" and on_bad_image == "skip":
        pytest.skip("a text-only model reads no image")
    path = fuzz_file(tmp_path / "in")
    lines = path.read_bytes().count(b"\n") + 1
    rows = run_stages(models[kind], path, tmp_path / "out", on_bad_image, on_bad_text)
    assert [r["line"] for r in rows] == list(range(1, lines + 1))
    for r in rows:
        assert r["error"] is not None or r["entities"] is not None, r
        assert (r["error"] is None) == (r["error_kind"] is None), r
        assert r["id"] is not None
    by_id = {r["id"]: r for r in rows}
    assert by_id["ok"]["error"] is None and by_id["last"]["error"] is None
    if on_bad_text == "error":
        assert by_id["cap-surr"]["error_kind"] == "invalid_unicode"  # item 12: a row, not a dead job
    assert by_id["img-surr"]["error_kind"] == "invalid_unicode"
    for control in ("fs", "gs", "rs", "us"):  # item 13: the stages agree on what an empty text is
        assert by_id[control]["error"] is None or by_id[control]["error_kind"] in ("empty_text", "image_missing"), by_id[control]


def test_a_lone_surrogate_in_a_caption_is_a_row_error_in_the_read_stage(tmp_path: Path) -> None:
    """Item 12 of issue 30: the read stage put the bad row's caption into the Arrow table and died."""
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": "a", "text": "Merkel in Berlin"}\n{"id": "b", "text": "Merkel in Berlin", "caption": "bad \\udc00 caption"}\n'
        '{"id": "c", "text": "Merkel", "image": "x\\udc00.png", "caption": "\\ud800"}\n'
    )
    (part,) = make_parts([index_file(path, 10)], None)
    rows = read_parts(pa.table({"part": [json.dumps(part.to_dict())]})).to_pylist()
    assert [(r["id"], r["error_kind"], r["caption"], r["image"]) for r in rows] == [
        ("a", None, None, None), ("b", "invalid_unicode", None, None), ("c", "invalid_unicode", None, None),
    ]  # fmt: skip
    assert "caption holds an unpaired surrogate" in rows[1]["error"]


def test_a_text_of_one_separator_character_is_tagged_by_a_hamlearning_model(models: dict[str, Path], tmp_path: Path) -> None:
    """Item 13 of issue 30: the image stage dropped "\\u001c" (str.strip empties it) while the
    tokenizer found a word, and the tagging stage read visual inputs that were not there (EOFError)."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "text": "\\u001c"}\n{"id": "b", "text": "\\u001f Merkel"}\n{"id": "c", "text": "\\u00a0"}\n')
    rows = run_stages(models["hamlearning"], path, tmp_path / "out")
    assert [(r["id"], r["error_kind"], r["image_status"]) for r in rows] == [
        ("a", None, "no_image"), ("b", None, "no_image"), ("c", "empty_text", None),
    ]  # fmt: skip


def test_missing_visual_inputs_are_a_row_error_not_a_crash(models: dict[str, Path]) -> None:
    from hamner.bulk.stages import post_schema

    row = {"source": 0, "line": 1, "id": "a", "text": "Merkel", "image": None, "caption": None, "error": None, "error_kind": None}
    table = pa.Table.from_pylist([row, {**row, "line": 2, "visual": b"not torch data"}], schema=post_schema(with_visual=True))
    out = TagStage(str(models["hamlearning"]))(table).to_pylist()
    assert [r["error_kind"] for r in out] == ["internal", "internal"] and all(r["entities"] is None for r in out)
    assert "did not read this row" in out[0]["error"]
