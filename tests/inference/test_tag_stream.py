"""``hamner tag`` on real files (issue 18): one output line per input line, whatever the input holds;
every bad line named by file, line and id, or written as an error record; streaming and --resume.
Under hostile input (issue 30, the second half): nothing of the user's lost, no post allowed to cost
without bound."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_text_checkpoint
from hamner.cli import main
from hamner.data import tokenize as tokenize_module
from hamner.errors import ConfigError, PostTooLong, TextError
from hamner.inference.tagger import Tagger, entity_span
from hamner.models.tagger import Prediction
from synthetic import tiny_hamlearning_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_text_checkpoint(tmp_path_factory.mktemp("stream-ckpt"))


def tag(ckpt: Path, *args: str) -> int:
    try:
        return main(["tag", "--model", str(ckpt), "--no-progress", *args])
    except SystemExit as exc:  # argparse: an unknown option
        return int(exc.code or 0)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def test_every_record_says_its_line_and_each_input_line_gets_one(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_bytes(b"Obama in Paris\r\n\r\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 0
    rows = records(out)
    assert [(r["id"], r["line"]) for r in rows] == [(1, 1), (2, 2), (3, 3)]
    assert rows[0]["text"] == "Obama in Paris" and rows[1]["entities"] == []  # CRLF: the \r is not text


def test_the_progress_bar_is_drawn_finished_once(ckpt: Path, tmp_path: Path) -> None:
    """hamner tag's bar over the input's bytes: its finished state is drawn once, when it closes (the
    last chunk's update drew it as well, so the run's stderr showed the finished bar twice). Every
    update is drawn here (TQDM_MININTERVAL=0), as on a slow run."""
    import re
    import subprocess
    import sys

    src = tmp_path / "posts.txt"
    src.write_text("".join(f"Obama in Paris {i}\n" for i in range(40)))  # two chunks: 16 posts, then 24
    cmd = [sys.executable, "-m", "hamner.cli", "tag", "--model", str(ckpt), str(src), "-o", str(tmp_path / "out.jsonl")]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "TQDM_MININTERVAL": "0"})
    draws = [d for d in re.split(r"[\r\n]", run.stderr) if d.startswith("tag:")]
    size = src.stat().st_size
    finished = [d for d in draws if f"{size}/{size}" in d]
    assert len(finished) == 1 and draws[-1] == finished[0], draws
    assert any(f"/{size}" in d and d not in finished for d in draws)  # and it was drawn before it finished


def test_a_lone_carriage_return_does_not_split_a_line(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_bytes(b"Obama\rin Paris\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 0
    rows = records(out)
    assert [r["text"] for r in rows] == ["Obama\rin Paris", "the nba game"]


def test_a_byte_order_mark_is_dropped(ckpt: Path, tmp_path: Path) -> None:
    jl = tmp_path / "posts.jsonl"
    jl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "a", "text": "Obama in Paris"}).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(jl), "-o", str(out)) == 0
    assert records(out)[0]["id"] == "a" and records(out)[0]["text"] == "Obama in Paris"
    txt = tmp_path / "posts.txt"
    txt.write_bytes(b"\xef\xbb\xbfObama in Paris\n")
    assert tag(ckpt, str(txt), "-o", str(out), "--tokens") == 0
    row = records(out)[0]
    assert row["text"] == "Obama in Paris" and row["tokens"][0] == {"text": "Obama", "start": 0, "end": 5}


def test_a_plain_text_line_starting_with_a_brace_is_text(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_text('Obama in Paris\n{not json} says Obama\n{"text": "still text"}\n')
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 0
    assert [r["text"] for r in records(out)] == ["Obama in Paris", "{not json} says Obama", '{"text": "still text"}']


def test_invalid_utf8_names_the_line_or_is_an_error_record(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "posts.txt"
    src.write_bytes(b"Obama in Paris\nbad \xff byte\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 2
    assert "posts.txt:2: not valid UTF-8 (byte 0xff at byte 4 of the line); post id 2" in capsys.readouterr().err
    assert [r["line"] for r in records(out)] == [1]  # the lines before it are answered
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-line", "skip") == 0
    rows = records(out)
    assert len(rows) == 3 and rows[1] == {"id": 2, "line": 2, "error": "not valid UTF-8 (byte 0xff at byte 4 of the line)"}
    assert "posts.txt:2 (id 2): not valid UTF-8 (byte 0xff at byte 4 of the line); written as an error record" in caplog.text
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-text", "replace") == 0
    assert records(out)[1]["text"] == "bad \ufffd byte"


def test_an_unpaired_surrogate_is_reported_not_a_crash(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text('{"id": "x1", "text": "Obama in Paris"}\n{"id": "x2", "text": "Obama \\ud83d"}\n{"id": "x3", "text": "the nba"}\n')
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 2
    assert "posts.jsonl:2: the text holds an unpaired surrogate (U+D83D) at character 6: not valid Unicode; post id 'x2'" in capsys.readouterr().err
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-line", "skip") == 0
    rows = records(out)
    assert [r["id"] for r in rows] == ["x1", "x2", "x3"] and "unpaired surrogate" in rows[1]["error"] and "entities" in rows[2]
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-text", "replace") == 0
    assert records(out)[1]["text"] == "Obama \ufffd"


def test_a_tokenizer_time_out_is_one_bad_line(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tokenize_module._word_re()

    class Stuck:
        def finditer(self, text: str) -> Any:
            if "STUCK" in text:
                raise TimeoutError("TweetTokenizer exceeded its 5.0s time limit")
            return real.finditer(text)

    monkeypatch.setattr(tokenize_module, "_word_re", lambda: Stuck())
    src = tmp_path / "posts.txt"
    src.write_text("Obama in Paris\nSTUCK here\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-line", "skip") == 0
    rows = records(out)
    assert len(rows) == 3 and rows[1]["line"] == 2 and "word tokenizer timed out" in rows[1]["error"]


def test_a_pathological_post_is_tagged(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_text("Obama in Paris\n" + "<-" * 30000 + "\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out), "--max-words", "0") == 0  # 60,000 words: past the default bound
    rows = records(out)
    assert len(rows) == 2 and rows[1]["windows"] > 1 and "error" not in rows[1]


def test_a_line_over_the_size_limit_is_a_bad_line(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_text("Obama in Paris\n" + "x " * 5000 + "\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out), "--max-line-bytes", "1000", "--on-bad-line", "skip") == 0
    rows = records(out)
    assert [r["line"] for r in rows] == [1, 2, 3] and rows[1]["error"] == "the line has more than 1,000 bytes"
    assert rows[2]["text"] == "the nba game"


def test_long_posts_say_how_they_were_read(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_text(" ".join(["in"] * 150) + " obama in paris\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out), "--tokens") == 0
    rows = records(out)
    assert rows[0]["windows"] >= 3 and len(rows[0]["tags"]) == 153 and "windows" not in rows[1]
    assert tag(ckpt, str(src), "-o", str(out), "--long-posts", "truncate") == 0
    rows = records(out)
    assert rows[0]["words_not_read"] == 153 - 62 and "words_not_read" not in rows[1]


def test_utf16_offsets(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.txt"
    src.write_text("\U0001F525 Obama in Paris\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out), "--tokens", "--offsets", "utf16") == 0
    assert records(out)[0]["tokens"][1] == {"text": "Obama", "start": 3, "end": 8}
    assert tag(ckpt, str(src), "-o", str(out), "--tokens") == 0
    assert records(out)[0]["tokens"][1] == {"text": "Obama", "start": 2, "end": 7}


class InterruptedStdin:
    """Standard input that delivers some lines, then the user presses Ctrl-C."""

    def __init__(self, lines: list[str], interrupt_after: int) -> None:
        self.lines, self.after = lines, interrupt_after
        self.buffer = self  # read as bytes (the streaming reader) or as text (the old one)

    def _line(self, i: int) -> str:
        if i >= self.after:
            raise KeyboardInterrupt
        return self.lines[i]

    def readline(self, limit: int = -1) -> bytes:
        self.n = getattr(self, "n", 0) + 1
        return self._line(self.n - 1).encode()

    def __iter__(self) -> Any:
        return (self._line(i) for i in range(len(self.lines)))


def test_output_is_written_chunk_by_chunk(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [f"Obama in Paris {i}\n" for i in range(20)]
    monkeypatch.setattr("sys.stdin", InterruptedStdin(lines, interrupt_after=7))
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        tag(ckpt, "-", "-o", str(out), "--chunk-size", "3")
    assert [r["line"] for r in records(out)] == [1, 2, 3, 4, 5, 6]  # two chunks written before the interruption


def test_resume_continues_after_the_last_complete_line(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "text": f"Obama in Paris {i}"}) + "\n" for i in range(9)))
    full = tmp_path / "full.jsonl"
    assert tag(ckpt, str(src), "-o", str(full), "--chunk-size", "2") == 0
    data = full.read_bytes()
    cut = tmp_path / "cut.jsonl"
    ends = [i for i, b in enumerate(data) if b == ord("\n")]
    cut.write_bytes(data[: ends[3] + 10])  # four complete lines and a partial fifth
    assert tag(ckpt, str(src), "-o", str(cut), "--resume") == 0
    assert cut.read_bytes() == data
    assert tag(ckpt, str(src), "-o", str(cut), "--resume") == 0  # complete: nothing to add
    assert cut.read_bytes() == data
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"q{i}", "text": "x"}) + "\n" for i in range(9)))
    assert tag(ckpt, str(other), "-o", str(cut), "--resume") == 2
    assert "not this input's output" in capsys.readouterr().err
    assert cut.read_bytes() == data


@pytest.fixture(scope="module")
def mm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("mm-stream"))


def test_image_paths_are_relative_to_the_jsonl_file(mm: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "batch"
    (folder / "pics").mkdir(parents=True)
    (folder / "pics" / "a.png").write_bytes(Path(mm["image"]).read_bytes())
    src = folder / "posts.jsonl"
    src.write_text(json.dumps({"id": 1, "text": "obama in paris", "image": "pics/a.png"}) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out.jsonl"
    assert tag(mm["ckpt"], str(src), "-o", str(out)) == 0
    assert records(out)[0]["visual"]["status"] == "ok"


def test_a_missing_image_names_the_line_and_id(mm: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text(json.dumps({"id": "ok", "text": "obama"}) + "\n" + json.dumps({"id": "m", "text": "obama", "image": "nope.png"}) + "\n")
    assert tag(mm["ckpt"], str(src)) == 2
    err = capsys.readouterr().err
    assert "posts.jsonl:2: " in err and "nope.png" in err and "post id 'm'" in err


def test_stdin_is_read_as_bytes(ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Stdin:
        buffer = io.BytesIO(b"\xef\xbb\xbf" + b'{"id": "s", "text": "Obama in Paris"}\r\n')

    monkeypatch.setattr("sys.stdin", Stdin())
    assert tag(ckpt) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "s"


# ----- issue 30: hostile input ---------------------------------------------------------------------
def jsonl(path: Path, rows: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


# 1 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "resume"])
def test_an_output_that_is_the_input_is_refused_before_anything_is_written(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    src = tmp_path / "posts.jsonl"
    data = b'{"id": 1, "text": "Obama in Paris"}\n{"id": 2, "text": "the nba game"}'  # no final newline: --resume would cut it
    src.write_bytes(data)
    out = src
    if how in ("symlink", "hardlink"):
        out = tmp_path / "out.jsonl"
        os.symlink(src, out) if how == "symlink" else os.link(src, out)
    assert tag(ckpt, str(src), "-o", str(out), *(["--resume"] if how == "resume" else [])) == 2
    err = capsys.readouterr().err
    assert f"-o {out} is the input file {src} (the same file on disk): writing it would destroy the input" in err
    assert src.read_bytes() == data


def test_an_output_that_is_the_file_of_standard_input_or_output_is_refused(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "posts.txt"
    src.write_bytes(b"Obama in Paris\n")
    with src.open("rb") as fh:

        class Stdin:
            buffer = fh

            def fileno(self) -> int:
                return fh.fileno()

        monkeypatch.setattr("sys.stdin", Stdin())
        assert tag(ckpt, "-o", str(src)) == 2
    assert "-o " + str(src) + " is standard input's file" in capsys.readouterr().err
    assert src.read_bytes() == b"Obama in Paris\n"
    with src.open("ab") as fh:  # hamner tag FILE >> FILE: it would read its own output without end

        class Stdout:
            def fileno(self) -> int:
                return fh.fileno()

        monkeypatch.setattr("sys.stdout", Stdout())
        assert tag(ckpt, str(src)) == 2
    assert f"standard output is the input file {src}" in capsys.readouterr().err
    assert src.read_bytes() == b"Obama in Paris\n"


# 2 ------------------------------------------------------------------------------------------------
def bad_image_input(mm: dict[str, Any], tmp_path: Path, bad: str = "nope.png") -> Path:
    return jsonl(tmp_path / "posts.jsonl", [
        {"id": "a", "text": "obama in paris"},
        {"id": "b", "text": "stop sign", "image": str(mm["image"])},
        {"id": "c", "text": "red clock", "image": bad},
        {"id": "d", "text": "blue square", "image": str(mm["image"])},
        {"id": "e", "text": "one"},
    ])  # fmt: skip


def test_a_bad_image_keeps_every_line_before_it(
    mm: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    src = bad_image_input(mm, tmp_path)
    out = tmp_path / "out.jsonl"
    assert tag(mm["ckpt"], str(src), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "posts.jsonl:3: " in err and "nope.png" in err and "post id 'c'" in err
    assert [r["id"] for r in records(out)] == ["a", "b"]  # the lines before it, in the same chunk, are written
    assert "stopped: 2 output lines written to" in caplog.text and "answering lines 1-2 of" in caplog.text
    # and --resume continues after them once the line is fixed
    src.write_text(src.read_text().replace('"nope.png"', json.dumps(str(mm["image"]))))
    assert tag(mm["ckpt"], str(src), "-o", str(out), "--resume") == 0
    assert [r["id"] for r in records(out)] == ["a", "b", "c", "d", "e"]


def test_on_bad_line_skip_covers_a_bad_image_with_an_error_record(mm: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = bad_image_input(mm, tmp_path)
    out = tmp_path / "out.jsonl"
    assert tag(mm["ckpt"], str(src), "-o", str(out), "--on-bad-line", "skip") == 0
    rows = records(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[2]) == {"id", "line", "error"} and "nope.png" in rows[2]["error"] and "missing image" in rows[2]["error"]
    assert rows[3]["visual"]["status"] == "ok"
    assert "posts.jsonl:3 (id 'c'): " in caplog.text


def test_on_bad_image_skip_tags_the_post_without_its_image_and_names_the_line(
    mm: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    src = bad_image_input(mm, tmp_path, bad=str(broken))
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.INFO):
        assert tag(mm["ckpt"], str(src), "-o", str(out), "--on-bad-image", "skip") == 0
    rows = records(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5] and rows[2]["visual"]["status"] == "unreadable" and "error" not in rows[2]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("posts.jsonl:3 (id 'c')" in m and "broken.png" in m for m in warned), warned
    assert not any("post-" in m for m in warned)
    assert "1 images skipped (--on-bad-image skip)" in caplog.text


# 4 ------------------------------------------------------------------------------------------------
def test_a_post_past_max_words_is_a_bad_line(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts.txt"
    src.write_text("Obama in Paris\n" + "!" * 1500 + "\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 2  # on by default
    err = capsys.readouterr().err
    assert "posts.txt:2: the post has 1,500 words, more than the limit of 1,000 per post" in err and "post id 2" in err
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-line", "skip") == 0
    rows = records(out)
    assert [r["line"] for r in rows] == [1, 2, 3] and "1,500 words" in rows[1]["error"] and "entities" in rows[2]
    assert tag(ckpt, str(src), "-o", str(out), "--max-words", "0") == 0  # 0: no limit
    assert records(out)[1]["windows"] > 1
    assert tag(ckpt, str(src), "-o", str(out), "--max-words", "-1") == 2  # argparse


def test_the_tagger_raises_post_too_long(ckpt: Path) -> None:
    tagger = Tagger.from_pretrained(ckpt, max_words=5)
    with pytest.raises(PostTooLong) as info:
        tagger.tag_many(["Obama in Paris", "a b c d e f"])
    assert isinstance(info.value, TextError) and info.value.index == 1 and (info.value.words, info.value.limit) == (6, 5)
    assert [len(p.tokens) for p in tagger.tag_many(["a b c d e"])] == [5]
    assert len(Tagger.from_pretrained(ckpt, max_words=0).tag("a " * 2000).tokens) == 2000
    with pytest.raises(ConfigError, match="max_words"):
        Tagger.from_pretrained(ckpt, max_words=-1)


def test_words_are_counted_only_as_far_as_the_limit(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = " ".join(["Obama in Paris, @nba #NBA . . . <3 :) http://t.co/x \u200b" * 40] * 5) + "!" * 3000
    assert Tagger.from_pretrained(ckpt, max_words=100_000).tokenize(text) == tokenize_module.tokenize(text, "twitter2017")
    calls: list[int] = []
    real = tokenize_module.tokenize
    monkeypatch.setattr("hamner.inference.tagger.tokenize", lambda piece, style: calls.append(len(piece)) or real(piece, style))
    with pytest.raises(PostTooLong, match=r"the post has more than the limit of 999 words per post \(1,000 in its first 1,000 characters;"):
        Tagger.from_pretrained(ckpt, max_words=999).tokenize("!" * 1_000_000)
    assert sum(calls) == 1000  # two pieces of the million characters read, not the rest


# 5 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--batch-size", "--chunk-size", "--image-workers", "--max-image-pixels"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_non_positive_sizes_are_usage_errors(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    src = tmp_path / "posts.txt"
    src.write_text("Obama in Paris\n")
    assert tag(ckpt, str(src), option, value) == 2
    assert f"argument {option}: expected a positive integer" in capsys.readouterr().err


def test_the_tagger_refuses_a_non_positive_batch_size(ckpt: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        Tagger.from_pretrained(ckpt, batch_size=0)


# 8 ------------------------------------------------------------------------------------------------
def test_blank_lines_of_jsonl_are_answered_as_empty_posts(ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = jsonl(tmp_path / "posts.jsonl", [{"id": "a", "text": "Obama in Paris"}], tail="\n  \t\n" + json.dumps({"id": "b", "text": "x"}) + "\n\n \r\n")
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.INFO):
        assert tag(ckpt, str(src), "-o", str(out)) == 0
    rows = records(out)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6]  # output line i answers input line i
    blank = {"id": 2, "line": 2, "text": "", "entities": []}
    assert rows[1] == blank and rows[2] == {**blank, "id": 3, "line": 3} and rows[5] == {**blank, "id": 6, "line": 6}
    assert "posts.jsonl:6 (id 6): a blank line in JSONL input; written as an empty post" in caplog.text
    assert "4 blank JSONL lines answered as empty posts" in caplog.text


# 11 -----------------------------------------------------------------------------------------------
def test_a_first_post_that_starts_with_a_brace_but_is_not_json_makes_the_file_text(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts"
    src.write_text("{Obama} in Paris\nthe nba game\n")
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out)) == 0
    assert [r["text"] for r in records(out)] == ["{Obama} in Paris", "the nba game"]


def test_a_json_error_in_a_detected_jsonl_file_suggests_format_text(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts"
    src.write_text('{"text": "Obama in Paris"}\nplain text line\n')
    assert tag(ckpt, str(src)) == 2  # the first line made it JSONL: the second is a bad JSONL line, not text
    assert "posts:2: not valid JSON" in (err := capsys.readouterr().err) and "--format text" in err
    assert tag(ckpt, str(src), "--format", "text") == 0
    explicit = tmp_path / "posts.jsonl"  # the user chose JSONL (by extension): no hint
    explicit.write_text(src.read_text())
    assert tag(ckpt, str(explicit)) == 2
    assert "--format text" not in capsys.readouterr().err


# 16 -----------------------------------------------------------------------------------------------
def test_entities_do_not_begin_or_end_with_zero_width_characters(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert entity_span("\u200bObama\u2060", 0, 7) == (1, 6) and entity_span("\u200b\ufeff", 0, 2) == (2, 2)
    tagger = Tagger.from_pretrained(ckpt)
    rule = {"\u200b": "I-PER", "Obama": "B-PER", "Paris": "B-LOC", "\ufeff": "B-ORG"}

    def run(word_lists, visuals=None, batch_size=64, progress=False, desc="", **options):  # type: ignore[no-untyped-def]
        tags = [[rule.get(w, "O") for w in words] for words in word_lists]
        tags[0][1] = "I-PER"  # the zero width space after Obama continues his entity
        return [Prediction(t, torch.zeros(len(t), 9)) for t in tags]

    monkeypatch.setattr(tagger.model, "run", run)
    text = "Obama\u200b in Paris \ufeff"
    post = tagger.tag(text)
    assert [t.text for t in post.tokens] == ["Obama", "\u200b", "in", "Paris", "\ufeff"]
    # the lone invisible ORG is no entity; PER stops before the zero width space
    assert [(e.text, e.type, e.start, e.end) for e in post.entities] == [("Obama", "PER", 0, 5), ("Paris", "LOC", 10, 15)]


def test_a_huge_integer_is_a_located_error_not_advice_about_the_interpreter(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text('{"id": ' + "9" * 5000 + ', "text": "Obama"}\n{"id": 2, "text": "Paris"}\n')
    out = tmp_path / "out.jsonl"
    assert tag(ckpt, str(src), "-o", str(out), "--on-bad-line", "skip") == 0
    rows = records(out)
    assert rows[0]["line"] == 1 and "an id that long must be a JSON string" in rows[0]["error"]
    assert "set_int_max_str_digits" not in rows[0]["error"] and rows[1]["text"] == "Paris"


def test_max_image_pixels_reaches_the_image_limit(mm: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = jsonl(tmp_path / "posts.jsonl", [{"id": "big", "text": "stop sign", "image": str(mm["image"])}])
    out = tmp_path / "out.jsonl"
    assert tag(mm["ckpt"], str(src), "-o", str(out)) == 0
    assert tag(mm["ckpt"], str(src), "-o", str(out), "--max-image-pixels", "100") == 2
    err = capsys.readouterr().err
    assert "posts.jsonl:1: " in err and "too_large" in err and "post id 'big'" in err
