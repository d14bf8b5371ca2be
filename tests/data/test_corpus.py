"""Corpora by path: formats detected from content, tag schemes, type maps, label sets, and every bad
input named by file and line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hamner.cli import main
from hamner.data.corpus import check_corpus, corpus_spec, label_types, load_posts, split_files
from hamner.data.formats import Problems, detect_format, read_raw
from hamner.data.labels import ENTITY_TYPES, bio_labels
from hamner.errors import ConfigError, DataFormatError
from hamner.training.config import DataConfig

OLD_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
# sha256 of every split's (IMGID, words, tags), read by load_split at e94b0a7 (before corpora by path)
OLD_SPLIT_HASHES = {
    ("twitter2015", "train"): "9af22d12fe36df0e", ("twitter2015", "dev"): "2d0241ec3ba46a8b",
    ("twitter2015", "test"): "0d934ced22b373b9", ("twitter2017", "train"): "ac527fb5c6b12e1a",
    ("twitter2017", "dev"): "d3fe4a008a142e97", ("twitter2017", "test"): "6ba18dddcb6b7f5e",
}  # fmt: skip


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


def tags_of(path: Path, **kw: object) -> list[list[str]]:
    spec = corpus_spec(None, None, {"test": path}, **kw)  # type: ignore[arg-type]
    return [p.tags for p in load_posts(spec, "test")]


# ----- the benchmarks through the general path -------------------------------------------------


@pytest.mark.parametrize("dataset,split", sorted(OLD_SPLIT_HASHES))
def test_benchmark_presets_read_the_same_posts_tags_and_label_order(data_root: Path, dataset: str, split: str) -> None:
    cfg = DataConfig(dataset=dataset, root=str(data_root))
    spec = cfg.corpus()
    posts = load_posts(spec, split)
    h = hashlib.sha256()
    for p in posts:
        h.update(json.dumps([p.imgid, p.words, p.tags], ensure_ascii=False).encode() + b"\n")
    assert h.hexdigest()[:16] == OLD_SPLIT_HASHES[(dataset, split)]
    assert spec.labels == ENTITY_TYPES and bio_labels(label_types(spec.labels, posts, "x")) == OLD_LABELS


def test_the_default_data_section_is_twitter2017(data_root: Path) -> None:
    cfg = DataConfig(root=str(data_root))
    assert cfg.dataset == "twitter2017" and cfg.corpus().preset == "twitter2017"
    with pytest.raises(ConfigError, match="unknown dataset 'btc'.*data.path"):
        DataConfig(dataset="btc")


def test_btc_by_path_from_the_data_root(data_root: Path) -> None:
    if not (data_root / "btc" / "train.txt").exists():
        pytest.skip("no BTC in the data root")
    cfg = DataConfig(path="btc", root=str(data_root))
    assert cfg.dataset == "btc"
    report = check_corpus(cfg.corpus())
    assert report.labels == ("LOC", "ORG", "PER") and not report.problems.errors
    assert report.splits["train"]["posts"] == 6338 and report.splits["train"]["entities"] == {
        "LOC": 2030,
        "ORG": 2665,
        "PER": 4084,
    }


# ----- formats ---------------------------------------------------------------------------------


def test_formats_are_detected_from_content(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a", "IMGID:1\nA\tO\n")) == "imgid"
    assert detect_format(write(tmp_path / "b", "\n-DOCSTART- -X- O O\n\nA NN O\n")) == "conll"
    assert detect_format(write(tmp_path / "c", '{"text": "a"}\n')) == "jsonl"
    assert detect_format(write(tmp_path / "d", '[{"data": {"text": "a"}, "annotations": []}]')) == "labelstudio"


def test_plain_conll_token_first_tag_last_docstart_skipped(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    )
    posts = load_posts(corpus_spec(None, None, {"test": f}), "test")
    assert [p.words for p in posts] == [["EU", "rejects"], ["Peter"]]
    assert [p.tags for p in posts] == [["B-ORG", "O"], ["B-PER"]]
    assert posts[1].source == f"{f}:6"


def test_bioes_and_iob1_are_converted_and_counted(tmp_path: Path) -> None:
    f = write(tmp_path / "bioes.txt", "New\tB-LOC\nYork\tE-LOC\nis\tO\nObama\tS-PER\n")
    assert tags_of(f) == [["B-LOC", "I-LOC", "O", "B-PER"]]
    g = write(tmp_path / "iob1.txt", "New\tI-LOC\nYork\tI-LOC\nParis\tB-LOC\nand\tO\nObama\tI-PER\n")
    assert tags_of(g) == [["B-LOC", "I-LOC", "B-LOC", "O", "B-PER"]]
    report = check_corpus(corpus_spec(None, None, {"test": g}))
    assert report.splits["test"]["tags"]["scheme"] == "iob1" and report.splits["test"]["tags"]["converted"] == 2


def test_type_map_renames_merges_and_drops(tmp_path: Path) -> None:
    f = write(tmp_path / "x.txt", "Apple\tB-COMPANY\nin\tO\nParis\tB-CITY\non\tO\nMonday\tB-DATE\nNBA\tB-ORG\n")
    assert tags_of(f, type_map={"COMPANY": "ORG", "CITY": "LOC", "DATE": "O"}) == [
        ["B-ORG", "O", "B-LOC", "O", "O", "B-ORG"]
    ]


def test_jsonl_spans_become_word_tags_with_image_and_caption(tmp_path: Path) -> None:
    f = jsonl(tmp_path / "posts.jsonl", [
        {"id": "a", "text": "Obama visits New York today", "entities": [{"start": 0, "end": 5, "type": "PER"},
         {"start": 13, "end": 21, "type": "LOC"}], "image": "img/a.png", "caption": "a man"},
        {"id": "b", "text": "nothing here", "entities": []},
    ])  # fmt: skip
    posts = load_posts(corpus_spec(None, None, {"test": f}), "test")
    assert posts[0].words == ["Obama", "visits", "New", "York", "today"]
    assert posts[0].tags == ["B-PER", "O", "B-LOC", "I-LOC", "O"]
    assert (posts[0].id, posts[0].image, posts[0].caption) == ("a", "img/a.png", "a man")
    assert posts[1].tags == ["O", "O"] and posts[1].source == f"{f}:2"


def test_hamner_tag_output_is_trainable_after_correction(tmp_path: Path) -> None:
    """What ``hamner tag --tokens --offsets utf16`` writes: id, line, text, entities with their
    text, tokens and tags; UTF-16 offsets are recognised by the entity's text."""
    text = "\U0001f600 Obama in Paris"
    record = {
        "id": 7, "line": 1, "text": text, "tokens": [], "tags": [],
        "entities": [{"text": "Obama", "type": "PER", "start": 3, "end": 8}, {"text": "Paris", "type": "LOC", "start": 12, "end": 17}],
    }  # fmt: skip
    f = jsonl(tmp_path / "tagged.jsonl", [record])
    assert tags_of(f) == [["O", "B-PER", "O", "B-LOC"]]


def test_label_studio_export_goes_to_its_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path / "export.json", '[{"id": 12, "data": {"text": "Obama"}, "annotations": []}]')
    from hamner.data import labelstudio

    monkeypatch.setattr(labelstudio, "read_export", lambda path: [  # its own checks: tests/data/test_labelstudio.py
        {
            "id": 12,
            "text": "Obama in Paris",
            "entities": [{"start": 0, "end": 5, "type": "PER"}],
            "_where": f"{path}: task 12",
        },
        {"id": 13, "text": "bad", "entities": [{"start": 0, "end": 9, "type": "PER"}], "_where": f"{path}: task 13"},
    ])
    problems = Problems()
    raw, fmt = read_raw(f, "auto", problems)
    assert fmt == "labelstudio" and raw[0].tags == ["B-PER", "O", "O"]
    assert [str(p) for p in problems.errors] == [
        f"{f}: task 13: error: post 13: entity 1: span [0:9] is off the text (3 characters)"
    ]


# ----- corpus folders and files --------------------------------------------------------------


def test_a_folder_with_train_valid_test_files(tmp_path: Path) -> None:
    for name in ("train.conll", "valid.conll", "test.conll", "README.md"):
        write(tmp_path / "c" / name, "A\tB-X\n")
    assert sorted(split_files(tmp_path / "c")) == ["dev", "test", "train"]
    write(tmp_path / "c" / "dev.txt", "A\tO\n")
    with pytest.raises(ConfigError, match="several dev files .*dev.txt, valid.conll.*data.dev"):
        split_files(tmp_path / "c")
    spec = DataConfig(path=str(tmp_path / "c"), dev=str(tmp_path / "c" / "dev.txt")).corpus()
    assert spec.name == "c" and spec.files["dev"].name == "dev.txt"


def test_declared_labels_fix_the_order_and_refuse_others(tmp_path: Path) -> None:
    f = write(tmp_path / "train.txt", "A\tB-ORG\nb\tO\n\nC\tB-PER\n\nD\tB-EVENT\n")
    spec = corpus_spec(None, None, {"train": f}, labels=["PER", "ORG"])
    with pytest.raises(
        DataFormatError, match="unknown entity type 'EVENT' in tag 'B-EVENT'; the label set is ORG, PER"
    ) as info:
        load_posts(spec, "train")
    assert info.value.path == str(f) and info.value.line == 6
    posts = load_posts(corpus_spec(None, None, {"train": f}, labels=["PER", "ORG", "EVENT"]), "train")
    assert label_types(["PER", "ORG", "EVENT"], posts, "t") == ("PER", "ORG", "EVENT")
    assert label_types(None, posts, "t") == ("EVENT", "ORG", "PER")


# ----- bad input: each names the file and line -----------------------------------------------


@pytest.mark.parametrize(
    "name,body,line,message",
    [
        ("x.conll", "A\tB-PER\nB\tQ-PER\n", 2, "tag 'Q-PER' is not BIO"),
        ("x.conll", "A\tNN\tB-PER\nB\tO\n", 2, "2 columns where the file's first token line has 3"),
        ("x.conll", "A\tO\nB\n", 2, "found one column"),
        ("x.conll", "A\tO\n\tB-PER\n", 2, "empty token tagged B-PER"),
        ("x.jsonl", '{"text": "a b", "entities": []}\n{"text": "a b", "entities": [\n', 2, "not JSON"),
        ("x.jsonl", '{"text": "a b", "entities": []}\n{"id": 3, "text": "a b", "entities": [{"start": 2, "end": 9, "type": "X"}]}\n', 2, "post 3: entity 1: span \\[2:9\\] is off the text"),
        ("x.jsonl", '\n{"id": 4, "text": "New York City", "entities": [{"start": 0, "end": 8, "type": "LOC"}, {"start": 4, "end": 13, "type": "LOC"}]}\n', 2, "post 4: entities overlap"),
        ("x.jsonl", '{"id": 5, "text": "a b", "entities": [{"start": 0, "end": 1, "type": "B-X"}]}\n', 1, "type must be a name"),
        ("x.jsonl", '{"id": 6, "line": 1, "error": "bad UTF-8"}\n', 1, "an error record of 'hamner tag'"),
        ("x.jsonl", '{"id": 7, "text": "", "entities": []}\n', 1, "'text' must be a non-empty string"),
    ],
)  # fmt: skip
def test_bad_input_is_an_error_at_its_file_and_line(
    tmp_path: Path, name: str, body: str, line: int, message: str
) -> None:
    f = write(tmp_path / name, body)
    with pytest.raises(DataFormatError, match=message) as info:
        load_posts(corpus_spec(None, None, {"test": f}), "test")
    assert info.value.path == str(f) and info.value.line == line


def test_every_problem_of_a_file_is_listed_not_only_the_first(tmp_path: Path) -> None:
    f = write(tmp_path / "x.conll", "A\tX-1\n\nB\tO\nC\n\nD\tO\n")
    report = check_corpus(corpus_spec(None, None, {"test": f}))
    assert [(p.line, p.level) for p in report.problems.errors] == [(1, "error"), (4, "error")]


def test_a_span_cutting_a_word_is_widened_with_a_warning_naming_the_post(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = jsonl(
        tmp_path / "x.jsonl",
        [{"id": "p9", "text": "Obama visits Paris", "entities": [{"start": 0, "end": 3, "type": "PER"}]}],
    )
    assert tags_of(f) == [["B-PER", "O", "O"]]
    assert f"{f}:1: warning: post p9: entity PER [0:3] 'Oba' cuts a word; widened to 'Obama' [0:5]" in caplog.text


def test_empty_corpus_and_training_split_without_entities_are_errors(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty" / "train.txt", "\n\n")
    with pytest.raises(DataFormatError, match="the train split has no posts") as info:
        load_posts(corpus_spec(None, tmp_path / "empty"), "train")
    assert info.value.path == str(empty)
    flat = write(tmp_path / "flat" / "train.txt", "A\tO\nb\tO\n")
    posts = load_posts(corpus_spec(None, tmp_path / "flat"), "train")
    with pytest.raises(DataFormatError, match="has no entity: nothing to learn") as info:
        label_types(None, posts, str(flat))
    assert info.value.path == str(flat)


def test_a_dev_type_unseen_in_training_is_reported_with_what_it_costs(tmp_path: Path) -> None:
    write(tmp_path / "c" / "train.txt", "A\tB-PER\n")
    write(tmp_path / "c" / "dev.txt", "A\tB-PER\n\nB\tB-DRUG\nc\tI-DRUG\n\nD\tB-DRUG\n")
    report = check_corpus(corpus_spec(None, tmp_path / "c"))
    assert [str(p) for p in report.problems.items] == [
        f"{tmp_path / 'c' / 'dev.txt'}: warning: type DRUG is not in the training split: its 2 gold entities will count as missed"
    ]


# ----- the command line ------------------------------------------------------------------------


def test_data_check_prints_counts_images_and_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = tmp_path / "c"
    (c / "img").mkdir(parents=True)
    (c / "img" / "a.png").write_bytes(b"x")
    jsonl(c / "train.jsonl", [
        {"id": "a", "text": "Obama in Paris", "entities": [{"start": 0, "end": 5, "type": "PER"}], "image": "img/a.png"},
        {"id": "b", "text": "Apple news", "entities": [{"start": 0, "end": 5, "type": "BRAND"}], "image": "img/b.png"},
    ])  # fmt: skip
    write(c / "test.conll", "Paris\tB-LOC\n\nX\tB-\n")
    assert main(["data", "check", str(c)]) == 1
    out = capsys.readouterr().out
    assert "label set BRAND, PER" in out
    assert f"{c / 'train.jsonl'}:2: warning: post b: image {c / 'img' / 'b.png'} not found" in out
    assert f"{c / 'test.conll'}:3: error: tag 'B-' is not BIO" in out
    assert "type LOC is not in the training split: its 1 gold entities will count as missed" in out
    assert main(["data", "check", str(c / "train.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["test"]["images_found"] == 1 and report["splits"]["test"]["images_missing"] == 1


def test_evaluate_on_a_gold_file_of_any_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "legacy" / "text-only"
    gold = jsonl(tmp_path / "gold.jsonl", [
        {"id": 1, "text": "police in London city", "entities": [{"start": 10, "end": 16, "type": "LOC"}]},
        {"id": 2, "text": "Apple and Google in Paris", "entities": [{"start": 0, "end": 5, "type": "ORG"}, {"start": 20, "end": 25, "type": "DRUG"}]},
    ])  # fmt: skip
    assert main(["evaluate", "--model", str(ckpt), "--gold", str(gold), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (
        got["per_type"]["LOC"]["tp"] == 1
        and got["per_type"]["DRUG"]["n_gold"] == 1
        and got["per_type"]["DRUG"]["tp"] == 0
    )
    conll = write(tmp_path / "gold.conll", "police\tO\nin\tO\nLondon\tS-LOC\ncity\tO\n")
    assert main(["evaluate", "--model", str(ckpt), "--gold", str(conll), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["f1"] == 1.0
