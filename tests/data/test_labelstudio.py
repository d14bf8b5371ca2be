"""hamner.data.labelstudio against exports written in Label Studio's JSON export format.

The fixture ``fixtures/labelstudio_export.json`` follows the layout of a label-studio 1.23.2
``exportType=JSON`` export (compared by hand with a real one; a real export has a few more
bookkeeping fields, e.g. ``unique_id``, ``draft_created_at``, ``allow_skip``, that read_export does
not use; test_labelstudio_roundtrip.py reads a real one). Each bad case below edits one task of it
and expects the error to name that task.
"""

from __future__ import annotations

import copy
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from hamner.data.labelstudio import LabelStudioError, labeling_config, predictions_for, read_export
from hamner.errors import ConfigError, DataFormatError

FIXTURE = Path(__file__).parent / "fixtures" / "labelstudio_export.json"


def load_fixture() -> list[dict[str, Any]]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def write(tmp_path: Path, tasks: Any, name: str = "export.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


def test_read_export_takes_the_latest_non_cancelled_annotation(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hamner.data.labelstudio"):
        records = read_export(FIXTURE)
    assert [r["id"] for r in records] == ["p1", "p2", 14]  # task 13 has no annotation
    first = records[0]
    # annotation 1 (updated 01-10) beats annotation 2 (01-09); annotation 3 is newer but cancelled
    assert first["entities"] == [{"start": 3, "end": 8, "type": "PER"}, {"start": 12, "end": 20, "type": "LOC"}]
    assert first["_where"] == f"{FIXTURE}: task 11"
    assert first["image"] is None and first["caption"] is None
    second = records[1]
    assert second["text"][second["entities"][0]["start"] : second["entities"][0]["end"]] == "Paris"  # after an emoji
    assert second["entities"] == [{"start": 2, "end": 7, "type": "LOC"}]
    assert second["image"] == "/data/local-files/?d=photos/12.jpg" and second["caption"] == "a city at night"
    assert records[2] == {"id": 14, "text": "nothing to see here", "entities": [], "image": None, "caption": None, "_where": f"{FIXTURE}: task 14"}
    assert "1 tasks left out (no annotation): task ids [13]" in caplog.text
    assert "{'choices': 1}" in caplog.text  # the image's choices item is counted, not read


def test_unannotated_error_names_the_task() -> None:
    with pytest.raises(LabelStudioError, match=r"export.json: task 13: no annotation"):
        read_export(FIXTURE.with_name("labelstudio_export.json"), unannotated="error")


def test_only_cancelled_annotations_are_counted_apart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tasks = load_fixture()
    for a in tasks[1]["annotations"]:
        a["was_cancelled"] = True
    with caplog.at_level(logging.WARNING):
        records = read_export(write(tmp_path, tasks))
    assert [r["id"] for r in records] == ["p1", 14]
    assert "1 tasks left out (only cancelled annotations): task ids [12]" in caplog.text


def bad(tmp_path: Path, edit: Any) -> Path:
    """The fixture with task 12's annotation result edited by ``edit(result)``."""
    tasks = load_fixture()
    edit(tasks[1]["annotations"][0]["result"])
    return write(tmp_path, tasks)


def region(start: int, end: int, labels: list[str], text: str | None = None, rid: str = "x") -> dict[str, Any]:
    value: dict[str, Any] = {"start": start, "end": end, "labels": labels}
    if text is not None:
        value["text"] = text
    return {"id": rid, "from_name": "label", "to_name": "text", "type": "labels", "value": value}


@pytest.mark.parametrize(
    ("new_region", "message"),
    [
        (region(2, 40, ["LOC"]), r"region 'x': span \(2, 40\) is off the text \(16 characters\)"),
        (region(-1, 3, ["LOC"]), r"region 'x': span \(-1, 3\) is off the text"),
        (region(7, 2, ["LOC"]), r"region 'x': end 2 is before start 7"),
        (region(4, 4, ["LOC"]), r"region 'x': empty span at 4"),
        (region(8, 10, ["LOC", "ORG"]), r"region 'x' \(8, 10\) has 2 labels \['LOC', 'ORG'\]; one entity type per span"),
        (region(8, 10, []), r"region 'x' \(8, 10\) has no label"),
        (region(8, "10", ["LOC"]), r"region 'x': start and end must be integers, got 8, '10'"),  # type: ignore[arg-type]
        (region(8, 10, ["LOC"], text="night"), r"region 'x': says 'night' but \(8, 10\) covers 'at'"),
        # "Paris" in UTF-16 units (the emoji is two): 3..8; a hint says so
        (region(3, 8, ["LOC"], text="Paris"), r"region 'x': says 'Paris' but \(3, 8\) covers 'aris ' \(the offsets look like UTF-16 code units, not code points\)"),
        (region(5, 10, ["ORG"]), r"regions 'c1' \(2, 7, LOC\) and 'x' \(5, 10, ORG\) overlap"),
        (region(2, 7, ["ORG"]), r"regions 'c1' \(2, 7, LOC\) and 'x' \(2, 7, ORG\) overlap"),
    ],
)
def test_bad_spans_name_the_task(tmp_path: Path, new_region: dict[str, Any], message: str) -> None:
    path = bad(tmp_path, lambda result: result.append(new_region))
    with pytest.raises(LabelStudioError, match=r"export.json: task 12 \(annotation 4\): " + message) as info:
        read_export(path)
    assert isinstance(info.value, DataFormatError)  # callers that catch data errors catch these


def test_a_region_without_value_names_the_task(tmp_path: Path) -> None:
    path = bad(tmp_path, lambda result: result.append({"id": "v", "type": "labels", "from_name": "label", "to_name": "text"}))
    with pytest.raises(LabelStudioError, match=r"task 12 \(annotation 4\): region 'v' has no value object"):
        read_export(path)


def test_several_labels_controls_need_a_choice(tmp_path: Path) -> None:
    other = region(8, 10, ["TIME"], rid="t")
    other["from_name"] = "time"
    path = bad(tmp_path, lambda result: result.append(other))
    with pytest.raises(LabelStudioError, match=r"task 12 \(annotation 4\): labels from several controls"):
        read_export(path)
    records = read_export(path, from_name="label")
    assert records[1]["entities"] == [{"start": 2, "end": 7, "type": "LOC"}]
    assert read_export(path, from_name="time")[1]["entities"] == [{"start": 8, "end": 10, "type": "TIME"}]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("data"), r'task 12: expected a "data" object'),
        (lambda t: t["data"].pop("text"), r'task 12: data has no string field "text"'),
        (lambda t: t["data"].update(image=3), r'task 12: data field "image" must be a string, got int'),
        (lambda t: t.update(annotations={}), r'task 12: "annotations" must be a list, got dict'),
        (lambda t: t["annotations"][0].pop("updated_at") and t["annotations"][0].pop("created_at"), r"task 12: annotation 4 has no created_at/updated_at"),
        (lambda t: t["annotations"][0].update(updated_at="yesterday"), r"task 12: annotation 4: timestamp 'yesterday' is not ISO 8601"),
        (lambda t: t["annotations"][0].update(result={}), r"task 12 \(annotation 4\): the annotation's \"result\" must be a list"),
        (lambda t: t["data"].update(id="p1"), r"task 12: post id 'p1' is also the id of .*export.json: task 11"),
    ],
)
def test_bad_tasks_name_the_task(tmp_path: Path, edit: Any, message: str) -> None:
    tasks = load_fixture()
    edit(tasks[1])
    with pytest.raises(LabelStudioError, match=message):
        read_export(write(tmp_path, tasks))


def test_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"x.json: expected a Label Studio JSON export \(a JSON array of tasks\), got a dict"):
        read_export(write(tmp_path, {"tasks": []}, "x.json"))
    (tmp_path / "y.json").write_text("[\n{oops", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"y.json:2: not valid JSON"):
        read_export(tmp_path / "y.json")
    with pytest.raises(LabelStudioError, match=r"z.json: item 0: expected a task"):
        read_export(write(tmp_path, [3], "z.json"))
    with pytest.raises(ConfigError, match="unannotated must be one of"):
        read_export(FIXTURE, unannotated="keep")


TAGGED = [
    {"id": "a", "line": 1, "text": "\U0001f600 Obama in Paris", "entities": [
        {"text": "Obama", "type": "PER", "start": 2, "end": 7}, {"text": "Paris", "type": "LOC", "start": 11, "end": 16}]},
    {"id": 2, "line": 2, "error": "not valid JSON (Expecting value at column 1)"},
    {"id": "c", "line": 3, "text": "nothing here", "entities": [], "image": "img/c.jpg", "caption": "a cat"},
]  # fmt: skip


def test_predictions_for_makes_import_tasks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        tasks = predictions_for(TAGGED, "ner", "post", "tiny-1", image_url_prefix="/data/local-files/?d=")
    assert "1 error records (posts hamner tag could not tag) left out: ids [2]" in caplog.text
    assert len(tasks) == 2
    first = tasks[0]
    assert first["data"] == {"text": "\U0001f600 Obama in Paris", "id": "a"}
    (pred,) = first["predictions"]
    assert pred["model_version"] == "tiny-1"
    assert [r["value"] for r in pred["result"]] == [
        {"start": 2, "end": 7, "text": "Obama", "labels": ["PER"]},
        {"start": 11, "end": 16, "text": "Paris", "labels": ["LOC"]},
    ]
    assert {(r["from_name"], r["to_name"], r["type"]) for r in pred["result"]} == {("ner", "post", "labels")}
    assert len({r["id"] for r in pred["result"]}) == 2
    assert tasks[1]["data"] == {"text": "nothing here", "id": "c", "image": "/data/local-files/?d=img/c.jpg", "caption": "a cat"}
    assert tasks[1]["predictions"][0]["result"] == []


def test_predictions_for_converts_utf16_offsets() -> None:
    utf16 = copy.deepcopy(TAGGED[:1])
    utf16[0]["entities"] = [{"text": "Obama", "type": "PER", "start": 3, "end": 8}]  # the emoji is two units
    (task,) = predictions_for(utf16, offsets="utf16")
    assert task["predictions"][0]["result"][0]["value"] == {"start": 2, "end": 7, "text": "Obama", "labels": ["PER"]}
    with pytest.raises(LabelStudioError, match=r"tagged.jsonl: line 1: entity 0 says 'Obama' but its offsets \(3, 8\) cover 'bama ' \(tagged with --offsets utf16"):
        predictions_for(utf16, source="tagged.jsonl")
    utf16[0]["entities"] = [{"type": "PER", "start": 1, "end": 8}]  # inside the surrogate pair
    with pytest.raises(LabelStudioError, match=r"entity 0 \(1, 8\) is not on a character boundary in UTF-16 units"):
        predictions_for(utf16, offsets="utf16")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": 1, "entities": []}, r'line 1: expected a string field "text"'),
        ({"id": 1, "text": "x"}, r'line 1: expected a list field "entities"'),
        ({"id": 1, "text": "ab", "entities": [{"type": "PER", "start": 0, "end": 5}]}, r"entity 0 \(0, 5\) is off the text \(2 characters\)"),
        ({"id": 1, "text": "ab", "entities": [{"type": "PER", "start": 0}]}, r"entity 0 must have integer start and end"),
    ],
)
def test_predictions_for_bad_records(record: dict[str, Any], message: str) -> None:
    with pytest.raises(LabelStudioError, match=message):
        predictions_for([record])


def test_predictions_survive_read_export(tmp_path: Path) -> None:
    """A task whose prediction was accepted as is (annotation result = prediction result) reads back
    as the tagged entities, in code points."""
    tasks = predictions_for(TAGGED)
    export = []
    for k, t in enumerate(tasks):
        ann = {"id": k, "result": t["predictions"][0]["result"], "was_cancelled": False, "created_at": "2025-01-01T00:00:00Z"}
        export.append({"id": 100 + k, "data": t["data"], "annotations": [ann]})
    records = read_export(write(tmp_path, export))
    assert [(r["id"], r["entities"]) for r in records] == [
        ("a", [{"start": 2, "end": 7, "type": "PER"}, {"start": 11, "end": 16, "type": "LOC"}]),
        ("c", []),
    ]
    assert records[1]["image"] == "img/c.jpg" and records[1]["caption"] == "a cat"


def test_labeling_config() -> None:
    xml = labeling_config(["PER", "B&B", 'say "hi"'], image_field="image", caption_field="caption")
    root = ET.fromstring(xml)
    assert [c.tag for c in root] == ["Image", "Labels", "Text", "Text"]
    labels = root.find("Labels")
    assert labels is not None and labels.get("name") == "label" and labels.get("toName") == "text"
    assert [lab.get("value") for lab in labels] == ["PER", "B&B", 'say "hi"']
    assert len({lab.get("background") for lab in labels}) == 3
    assert root.find("Image").get("value") == "$image"  # type: ignore[union-attr]
    plain = ET.fromstring(labeling_config(["PER"]))
    assert [c.tag for c in plain] == ["Labels", "Text"]
    with pytest.raises(ConfigError, match="at least one entity type"):
        labeling_config([])
    with pytest.raises(ConfigError, match=r"given twice: \['PER'\]"):
        labeling_config(["PER", "LOC", "PER"])


def test_cli_predictions_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hamner.cli import main

    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "\U0001f600 Obama in Paris", "image": "img/a.jpg", "caption": "a man"}\n', encoding="utf-8")
    tagged = tmp_path / "tagged.jsonl"
    tagged.write_text(json.dumps(TAGGED[0]) + "\n", encoding="utf-8")
    out = tmp_path / "tasks.json"
    argv = ["labelstudio", "predictions", str(tagged), "--posts", str(posts), "--image-url-prefix", "/data/local-files/?d=", "-o", str(out)]
    assert main(argv) == 0
    (task,) = json.loads(out.read_text(encoding="utf-8"))
    assert task["data"] == {"text": "\U0001f600 Obama in Paris", "id": "a", "image": "/data/local-files/?d=img/a.jpg", "caption": "a man"}
    assert len(task["predictions"][0]["result"]) == 2
    posts.write_text('{"id": "b", "text": "other"}\n', encoding="utf-8")
    assert main(argv) == 2
    assert f"{tagged}:1 answers post id 'a', but line 1 of {posts} has id 'b': not its input" in capsys.readouterr().err
    assert main(["labelstudio", "config", "PER", "LOC", "--image"]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    assert [c.tag for c in root] == ["Image", "Labels", "Text"]
