from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hamner.data.conll import read_captions, read_conll
from hamner.data.datasets import load_captions, load_split, resolve_data_root
from hamner.errors import ConfigError, DataFormatError

# tweets, then B- tags per type (OTHER is mapped to MISC), from ../shared/data/README.md
EXPECTED = {
    ("twitter2015", "train"): (4000, {"PER": 2217, "LOC": 2091, "ORG": 927, "MISC": 931}),
    ("twitter2015", "valid"): (1000, {"PER": 552, "LOC": 522, "ORG": 247, "MISC": 220}),
    ("twitter2015", "test"): (3257, {"PER": 1816, "LOC": 1697, "ORG": 839, "MISC": 720}),
    ("twitter2017", "train"): (3373, {"PER": 2943, "LOC": 731, "ORG": 1674, "MISC": 701}),
    ("twitter2017", "valid"): (723, {"PER": 626, "LOC": 173, "ORG": 375, "MISC": 150}),
    ("twitter2017", "test"): (723, {"PER": 621, "LOC": 178, "ORG": 395, "MISC": 157}),
}
ORPHAN_I = {("twitter2015", "train"): 186, ("twitter2015", "valid"): 53, ("twitter2015", "test"): 135}


def orphan_count(tags: list[str]) -> int:
    return sum(1 for i, t in enumerate(tags) if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]))


@pytest.mark.parametrize("dataset,split", sorted(EXPECTED))
def test_split_sizes_and_type_counts(data_root: Path, dataset: str, split: str) -> None:
    posts = load_split(dataset, split, data_root)
    n, counts = EXPECTED[(dataset, split)]
    assert len(posts) == n
    assert Counter(t[2:] for p in posts for t in p.tags if t.startswith("B-")) == counts
    assert sum(orphan_count(p.tags) for p in posts) == ORPHAN_I.get((dataset, split), 0)
    assert all(len(p.words) == len(p.tags) and p.imgid for p in posts)


def test_last_post_of_2015_without_final_blank_line_is_kept(data_root: Path) -> None:
    raw = (data_root / "twitter2015" / "test.txt").read_text(encoding="utf-8")
    assert not raw.endswith("\n\n")
    last_id = raw.rsplit("IMGID:", 1)[1].split("\n", 1)[0]
    assert load_split("twitter2015", "test", data_root)[-1].imgid == last_id


def test_whitespace_only_tokens_are_words(data_root: Path) -> None:
    words = [w for p in load_split("twitter2017", "train", data_root) for w in p.words]
    odd = [w for w in words if not w.strip() or w in ("\u200b", "\u200d")]
    assert odd, "the 2017 train split has zero-width tokens"
    valid15 = [w for p in load_split("twitter2015", "valid", data_root) for w in p.words]
    assert "\xa0" in valid15


def test_captions_cover_every_post(data_root: Path) -> None:
    for ds in ("twitter2015", "twitter2017"):
        caps = load_captions(ds, data_root)
        ids = {p.imgid for s in ("train", "valid", "test") for p in load_split(ds, s, data_root)}
        assert ids <= set(caps)
        empty = sorted(k for k, v in caps.items() if not v)  # kept as "" rather than dropped
        assert empty == (["71406", "770560"] if ds == "twitter2015" else [])


def test_label_map_is_explicit(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("IMGID:1\nA\tB-OTHER\nb\tI-OTHER\n")
    assert read_conll(f)[0].tags == ["B-MISC", "I-MISC"]
    assert read_conll(f, {"OTHER": "OTHER"})[0].tags == ["B-OTHER", "I-OTHER"]
    with pytest.raises(DataFormatError, match=r"x.txt:2: unknown entity type 'OTHER'"):
        read_conll(f, {"PER": "PER"})


def test_orphan_i_tags_are_kept(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("IMGID:1\nA\tO\nb\tI-PER\n")
    assert read_conll(f)[0].tags == ["O", "I-PER"]


@pytest.mark.parametrize(
    "body,line,message",
    [
        ("IMGID:1\nA\tO\tX\n", 2, "expected 'token<TAB>tag'"),
        ("IMGID:1\nA O\n", 2, "expected 'token<TAB>tag'"),
        ("IMGID:1\nA\tB-FOO\n", 2, "unknown entity type 'FOO'"),
        ("IMGID:1\nA\tX-PER\n", 2, "not BIO"),
        ("IMGID:1\nA\tO\nIMGID:2\nB\tO\n", 3, "IMGID line inside a post"),
        ("IMGID:1\nA\tO\n\nIMGID:1\nB\tO\n", 4, "already used"),
        ("IMGID:1\n\tO\n", 2, "empty token"),
        ("IMGID:1\n\nIMGID:2\nA\tO\n", 1, "has no tokens"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(body)
    with pytest.raises(DataFormatError, match=message) as info:
        read_conll(f)
    assert info.value.line == line and str(f) in str(info.value)


def test_tokens_split_on_tab_only(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_bytes("IMGID:1\n\xa0\tO\na b\tO\n\u2028\tO".encode())
    assert read_conll(f)[0].words == ["\xa0", "a b", "\u2028"]


def test_caption_reader(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("12.jpg :a man : smiling\n13_1.jpg :a dog\n")
    assert read_captions(f) == {"12": "a man : smiling", "13_1": "a dog"}
    f.write_text("12.jpg a man\n")
    with pytest.raises(DataFormatError, match=r"c.txt:1"):
        read_captions(f)


def test_data_root_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HAMNER_DATA_ROOT", raising=False)
    with pytest.raises(ConfigError, match="HAMNER_DATA_ROOT"):
        resolve_data_root(None)
    monkeypatch.setenv("HAMNER_DATA_ROOT", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    with pytest.raises(ConfigError, match="not a directory"):
        resolve_data_root(tmp_path / "nope")
