"""A model of six entity types of one's own (BRAND, DRUG, EVENT, LOC, ORG, PER, trained on a JSONL
corpus) through every way of running it: ``hamner tag`` (its output, images and captions kept, read
back as a corpus), the server, ``hamner bulk`` on Ray, ``hamner evaluate`` and an ONNX export. Each
answers with the checkpoint's own types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from hamner.cli import main
from hamner.data.corpus import check_corpus, corpus_spec
from hamner.inference.tagger import Tagger
from six_types import SIX_TYPES

LABELS = ["O", *[f"{p}-{t}" for t in SIX_TYPES for p in "BI"]]
# one post per type, in the corpus's pattern (the tiny model tags these as its training set says)
POSTS = [("nike", "BRAND"), ("music", "DRUG"), ("festival", "EVENT"), ("paris", "LOC"), ("google", "ORG"), ("obama", "PER")]


def posts_file(folder: Path) -> Path:
    """The six posts as JSONL; the first with an image (relative to the file) and a caption, the second
    with a caption only."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (200, 30, 30)).save(folder / "img" / "shoe.png")
    lines = []
    for i, (name, _) in enumerate(POSTS):
        rec: dict[str, Any] = {"id": f"p{i}", "text": f"the {name} today"}
        if i == 0:
            rec |= {"image": "img/shoe.png", "caption": "a red shoe"}
        if i == 1:
            rec["caption"] = "a concert"
        lines.append(json.dumps(rec))
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def expected(i: int) -> list[tuple[str, str, int, int]]:
    name, typ = POSTS[i]
    return [(name, typ, 4, 4 + len(name))]


def spans(entities: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    return [(e["text"], e["type"], e["start"], e["end"]) for e in entities]


def corpus_of(model: Path) -> Path:
    """The corpus the fixture trained ``model`` on (base/brands beside base/runs/brands/text-only/seed1/best)."""
    return model.parents[4] / "brands"


def test_the_checkpoint_holds_its_six_types(six_type_model: Path) -> None:
    import yaml

    meta = json.loads((six_type_model / "hamner_config.json").read_text())
    assert meta["tagger"]["labels"] == LABELS
    card = (six_type_model / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["entity_types"] == SIX_TYPES and set(front["test"]) == {"micro", *SIX_TYPES}


def test_tag_answers_with_the_six_types_and_its_output_is_a_corpus_with_images(six_type_model: Path, tmp_path: Path) -> None:
    posts = posts_file(tmp_path)
    out = tmp_path / "tagged.jsonl"  # beside the input: its image paths stay right
    assert main(["tag", "--model", str(six_type_model), str(posts), "-o", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in records] == list(range(1, 7))  # output line i answers input line i
    assert [spans(r["entities"]) for r in records] == [expected(i) for i in range(6)]
    # image and caption echoed as the input gives them (the image not resolved), only where given
    assert (records[0]["image"], records[0]["caption"]) == ("img/shoe.png", "a red shoe")
    assert "image" not in records[1] and records[1]["caption"] == "a concert"
    assert not {"image", "caption"} & set(records[2])
    # the tagged file is a JSONL corpus: its six types, the image found relative to the file, the captions
    report = check_corpus(corpus_spec(None, files={"train": out}))
    assert not [p for p in report.problems.items if p.level == "error"], report.problems.items
    split = report.splits["train"]
    assert split["entities"] == dict.fromkeys(SIX_TYPES, 1)
    assert (split["images_found"], split["images_missing"], split["captions"]) == (1, 0, 2)
    assert report.labels == tuple(SIX_TYPES)
    # --resume after an interruption in the middle of line 4 gives the same file
    full = out.read_bytes()
    out.write_bytes(full[: full.index(b"\n", full.index(b'"line": 3')) + 10])
    assert main(["tag", "--model", str(six_type_model), str(posts), "-o", str(out), "--no-progress", "--resume"]) == 0
    assert out.read_bytes() == full


def test_tag_echoes_the_image_and_caption_of_one_post_given_by_flags(six_type_model: Path, tmp_path: Path, capsys: Any) -> None:
    posts_file(tmp_path)
    args = ["tag", "--model", str(six_type_model), "--text", "the nike today", "--image", str(tmp_path / "img" / "shoe.png")]
    assert main([*args, "--caption", "a red shoe"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert spans(got["entities"]) == expected(0)
    assert (got["image"], got["caption"]) == (str(tmp_path / "img" / "shoe.png"), "a red shoe")


def test_serve_answers_with_the_six_types(six_type_model: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from hamner.serve.app import create_app
    from hamner.serve.service import ServeConfig, TaggingService

    service = TaggingService.from_pretrained(six_type_model, ServeConfig(detect_objects=False))
    with TestClient(create_app(service)) as client:
        info = client.get("/v1/model").json()
        assert info["labels"] == LABELS and info["entity_types"] == SIX_TYPES  # the page's legend, in this order
        schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelResponse"]["properties"]
        assert "entity_types" in schema and "label order" in schema["entity_types"]["description"]
        for i, (name, _) in enumerate(POSTS):
            r = client.post("/v1/tag", json={"text": f"the {name} today"})
            assert r.status_code == 200, r.text
            assert spans(r.json()["entities"]) == expected(i)


def test_bulk_on_ray_answers_with_the_six_types(six_type_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    from bulk_helpers import read_output, worker_env
    from hamner.bulk.job import BulkOptions, run_bulk

    posts = posts_file(tmp_path)
    options = BulkOptions(
        model=str(six_type_model), inputs=[str(posts)], output=str(tmp_path / "out"), progress=False, num_cpus=2,
        runtime_env={"env_vars": worker_env()},
    )  # fmt: skip
    summary = run_bulk(options)  # an embedded Ray on 127.0.0.1, shut down after
    rows = read_output(tmp_path / "out")
    assert summary["rows"] == 6 and summary["error_rows"] == 0 and summary["entities"] == 6
    assert [spans(r["entities"]) for r in rows] == [expected(i) for i in range(6)]
    assert all(r["relevance"] is None and r["error"] is None for r in rows)


def test_evaluate_lists_the_six_types_in_the_checkpoints_order(six_type_model: Path, tmp_path: Path, capsys: Any) -> None:
    gold = corpus_of(six_type_model) / "test.jsonl"
    assert main(["evaluate", "--model", str(six_type_model), "--gold", str(gold)]) == 0
    table = capsys.readouterr().out.splitlines()
    first = table.index(next(line for line in table if line.startswith("type")))
    assert [line.split()[0] for line in table[first + 1 :]] == [*SIX_TYPES, "micro"]
    assert main(["evaluate", "--model", str(six_type_model), "--gold", str(gold), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["per_type"]) == SIX_TYPES and report["micro"]["n_gold"] == 12
    # a gold file with only two of the types: the other four are still rows (zeros), in order
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"id": i, "text": f"the {n} today", "entities": [{"start": 4, "end": 4 + len(n), "type": t}]}) + "\n"
                           for i, (n, t) in enumerate(POSTS[3:5])))  # fmt: skip
    assert main(["evaluate", "--model", str(six_type_model), "--gold", str(two), "--json"]) == 0
    per_type = json.loads(capsys.readouterr().out)["per_type"]
    assert list(per_type) == SIX_TYPES and [per_type[t]["n_gold"] for t in SIX_TYPES] == [0, 0, 0, 1, 1, 0]


def test_an_onnx_export_tags_as_pytorch(six_type_model: Path, tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(six_type_model), "--out", str(out)]) == 0
    assert json.loads((out / "hamner_config.json").read_text())["tagger"]["labels"] == LABELS
    texts = [f"the {name} today" for name, _ in POSTS] + ["obama and nike at the festival in paris with google"]
    want = Tagger.from_pretrained(six_type_model).tag_many(texts)
    got = Tagger.from_pretrained(out).tag_many(texts)
    assert [g.to_dict(with_tokens=True) for g in got] == [w.to_dict(with_tokens=True) for w in want]
    assert [spans(g.to_dict()["entities"]) for g in got[:6]] == [expected(i) for i in range(6)]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--gold", str(corpus_of(six_type_model) / "test.jsonl"), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["per_type"]) == SIX_TYPES
