"""``hamner tag`` on real files (issue 18): one output line per input line, whatever the input holds;
every bad line named by file, line and id, or written as an error record; streaming and --resume."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_text_checkpoint
from hamner.cli import main
from hamner.data import tokenize as tokenize_module
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


def test_the_format_is_chosen_once_for_a_file_without_extension(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "posts"
    src.write_text('{"text": "Obama in Paris"}\nplain text line\n')
    assert tag(ckpt, str(src)) == 2  # the first line made it JSONL: the second is a bad JSONL line, not text
    assert "posts:2: not valid JSON" in capsys.readouterr().err


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
    assert tag(ckpt, str(src), "-o", str(out)) == 0
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
