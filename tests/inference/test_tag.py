from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hamner import Tagger
from hamner.cli import main
from hamner.data.tokenize import tokenize
from hamner.models.config import TaggerConfig
from hamner.models.tagger import Prediction, TextTagger

TWEET = "RT @JayKenMinaj: #NBA Kawhi Leonard wins at HOPE &amp; Co. in New York http://t.co/kd1OVQ :)"


def test_tokenize_styles_and_offsets() -> None:
    t17 = tokenize(TWEET, "twitter2017")
    t15 = tokenize(TWEET, "twitter2015")
    for toks in (t15, t17):
        assert all(TWEET[t.start : t.end] == t.text for t in toks)
    assert [t.text for t in t15[:4]] == ["RT", "@JayKenMinaj", ":", "#NBA"]
    assert [t.text for t in t17[:6]] == ["RT", "@", "JayKenMinaj", ":", "#", "NBA"]
    assert "http://t.co/kd1OVQ" in [t.text for t in t17]
    assert tokenize("   ") == [] and tokenize("") == []
    with pytest.raises(ValueError, match="style"):
        tokenize("x", "conll")


@pytest.fixture()
def checkpoint(tiny_encoder: Path, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = TextTagger.from_config(TaggerConfig(encoder=str(tiny_encoder)))
    return model.save_pretrained(tmp_path / "ckpt", extra={"trained_on": "twitter2017"})


def _fixed_tags(monkeypatch: pytest.MonkeyPatch, tagger: Tagger, rule: dict[str, str]) -> None:
    """Make the model predict B-/I- tags by a word -> tag rule, to check the offset bookkeeping."""

    def run(word_lists, visuals=None, batch_size=64, progress=False, desc="", **options):  # type: ignore[no-untyped-def]
        return [Prediction([rule.get(w, "O") for w in words], torch.zeros(len(words), 9)) for words in word_lists]

    monkeypatch.setattr(tagger.model, "run", run)


def test_entities_carry_character_offsets(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tagger = Tagger.from_pretrained(checkpoint)
    _fixed_tags(
        monkeypatch, tagger, {"Kawhi": "B-PER", "Leonard": "I-PER", "NBA": "B-ORG", "New": "B-LOC", "York": "I-LOC"}
    )
    post = tagger.tag(TWEET)
    got = [(e.text, e.type, e.start, e.end) for e in post.entities]
    assert got == [
        ("NBA", "ORG", 18, 21),
        ("Kawhi Leonard", "PER", 22, 35),
        ("New York", "LOC", 62, 70),
    ]
    assert all(TWEET[s:e] == text for text, _, s, e in got)


def test_real_model_output_is_consistent(checkpoint: Path) -> None:
    tagger = Tagger.from_pretrained(checkpoint)
    posts = tagger.tag_many([TWEET, "", "Obama in Paris"])
    assert posts[1].entities == [] and posts[1].tags == []
    for p in posts:
        assert len(p.tags) == len(p.tokens)
        assert all(p.text[e.start : e.end] == e.text and e.type in ("PER", "LOC", "ORG", "MISC") for e in p.entities)
    with pytest.raises(TypeError, match="list of texts"):
        tagger.tag_many("one post")  # type: ignore[arg-type]


def test_cli_tag_plain_text_and_jsonl(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts.txt"
    src.write_text(f"{TWEET}\n\nObama visits Paris\n")
    assert main(["tag", "--model", str(checkpoint), str(src), "--tokens"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3] and rows[1]["entities"] == []
    assert rows[2]["tokens"][0] == {"text": "Obama", "start": 0, "end": 5}
    jl = tmp_path / "posts.jsonl"
    jl.write_text(json.dumps({"id": "a", "text": "Obama visits Paris", "caption": "a man"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["tag", "--model", str(checkpoint), str(jl), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["id"] == "a"


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"text": "ok"', "posts.jsonl:2: not valid JSON"),
        ('{"txt": "ok"}', 'posts.jsonl:2: expected a JSON object with a string field "text"'),
        ('{"text": "ok", "imge": "a.jpg"}', "posts.jsonl:2: unknown fields ['imge']"),
        ('{"text": "ok", "image": 3}', 'posts.jsonl:2: field "image" must be a string'),
    ],
)
def test_cli_tag_malformed_line_names_the_line(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text('{"text": "Obama visits Paris"}\n' + line + "\n")
    assert main(["tag", "--model", str(checkpoint), "--format", "jsonl", str(src)]) == 2
    assert message in capsys.readouterr().err


def test_cli_evaluate_prints_per_type_table(
    checkpoint: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--model", str(checkpoint), "--split", "test", "--data-root", str(tiny_data_root)]) == 0
    out = capsys.readouterr().out
    assert "twitter2017 test: 6 posts" in out and all(t in out for t in ("PER", "LOC", "ORG", "MISC", "micro"))
    assert main(["evaluate", "--model", str(checkpoint), "--data-root", str(tiny_data_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["n_gold"] == 10
    assert (
        main(["evaluate", "--model", str(checkpoint), "--data-root", str(tiny_data_root), "--json", "--mode", "strict"])
        == 0
    )
    strict = json.loads(capsys.readouterr().out)
    assert strict["mode"] == "strict" and strict["micro"]["n_gold"] == 9  # the orphan I-LOC is not an entity


def test_cli_evaluate_text_only_model_refuses_visual_flags(
    checkpoint: Path, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", "--model", str(checkpoint), "--data-root", str(tiny_data_root)]
    assert main([*args, "--text-path"]) == 2
    assert "is a text-only model: --features and --text-path are for a multimodal one" in capsys.readouterr().err
