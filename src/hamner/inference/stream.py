"""``hamner tag`` on files of any size: read, tag and write in chunks, one output line per input line.

The input is read in binary and cut on ``b"\\n"`` only (one trailing ``\\r`` of a CRLF is dropped; a
lone ``\\r`` stays inside its line), so output line *i* always answers input line *i*. The format is
chosen once per file: by ``--format``, else by the extension (``.jsonl``/``.ndjson``/``.json``: JSONL,
``.txt``: plain text), else (standard input, other names) by the first non-empty line: JSONL when it
is a JSON object, text otherwise. A UTF-8 byte order mark at the start is dropped. A blank or
whitespace-only line of JSONL is answered as an empty post (``"text": ""``, no entities; logged), not
an error (``blank_jsonl="post"``, what ``hamner tag`` asks): files often end with one, and output line
*i* must still answer input line *i*. ``blank_jsonl="error"`` makes it a bad line instead.

Every problem with a line (not UTF-8, bad JSON, a field of the wrong type, an unpaired surrogate, a
text the word tokenizer gives up on, a line over the size limit, more words than the tagger's
``max_words``, an image the tagger's ``on_bad_image="error"`` refuses) names the file, the line and the
post's id: it stops the run (``on_bad_line="error"``), after every line before it has been written
(those of its chunk included), or becomes an error record ``{"id", "line", "error"}`` in the output
(``"skip"``), logged. With ``on_bad_image="skip"`` a bad image is no bad line: the post is tagged from
its text and caption (its ``visual.status`` says why; logged with the file, line and id). Image paths
in JSONL are relative to the input file's folder (to the working directory for standard input). A
post's ``image`` and ``caption`` are echoed in its output record as the line gives them (the image not
resolved), so the output, corrected and kept beside the input, is a JSONL corpus with its images.

Memory holds one chunk of posts (plus the model), whatever the input size; each chunk is written
and flushed before the next is read. ``--resume`` continues an interrupted output file after its
last complete line (a partial last line is cut off), once the line number and id of that last
record match the input's.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

from hamner.errors import ConfigError, DataFormatError, ImageError, TextError, first_surrogate
from hamner.inference.tagger import TaggedPost, Tagger

log = logging.getLogger(__name__)

FORMATS = ("auto", "text", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TEXT_SUFFIXES = (".txt", ".text")
FIELDS = ("id", "text", "image", "caption")
BOM = b"\xef\xbb\xbf"
BLANK_JSONL = ("post", "error")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class InputPost:
    """One input line: a post to tag, or (``error`` set) the reason it cannot be tagged."""

    line: int
    id: Any
    text: str = ""
    image: str | None = None  # resolved against the input file's folder: what the tagger opens
    caption: str | None = None
    error: str | None = None
    given_image: str | None = None  # the image as the line gives it, echoed in the output
    nbytes: int = 0  # bytes of the input this line took, newline included (for the progress bar)
    blank: bool = False  # a blank or whitespace-only line of JSONL input: answered as an empty post


def choose_format(name: str, fmt: str) -> str | None:
    """The format fixed by ``--format`` or the file's extension; None: decide from the first line."""
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    suffix = Path(name).suffix.lower() if name != "<stdin>" else ""
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return None


class InputReader:
    """The posts of a binary stream, one per line, each with its line number and id."""

    def __init__(
        self,
        stream: IO[bytes],
        name: str,
        fmt: str = "auto",
        folder: Path | None = None,
        on_bad_text: str = "error",
        max_line_bytes: int = 1 << 20,
        skip_lines: int = 0,
        first_line: int = 1,
        blank_jsonl: str = "error",
    ) -> None:
        if on_bad_text not in ("error", "replace"):
            raise ConfigError(f"on_bad_text must be 'error' or 'replace', got {on_bad_text!r}")
        if blank_jsonl not in BLANK_JSONL:
            raise ConfigError(f"blank_jsonl must be one of {BLANK_JSONL}, got {blank_jsonl!r}")
        # a blank line of JSONL: an empty post ("post", hamner tag) or a bad line ("error", hamner bulk's rows so far)
        self.blank_jsonl = blank_jsonl
        self.stream, self.name, self.folder = stream, name, folder
        self.format = choose_format(name, fmt)
        self.detected = False  # the format was read from the first non-empty line (a hint in JSON errors)
        self.on_bad_text = on_bad_text
        self.max_line_bytes = max_line_bytes
        self.skip_lines = skip_lines  # lines already answered (--resume): read and counted, not tagged
        self.skipped_id: Any = None  # the id of the last skipped line, to check a resumed output against
        self.skipped_bytes = 0
        self.lines_read = 0
        self.first_line = first_line  # the number of the stream's first line (a slice of a file, for hamner bulk)

    def _lines(self) -> Iterator[tuple[int, bytes | None, int]]:
        """(line number, its bytes without the line break or None when over the limit, bytes read)."""
        lineno = self.first_line - 1
        while True:
            raw = self.stream.readline(self.max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            size = len(raw)
            if lineno == 1 and raw.startswith(BOM):
                log.info("%s: a UTF-8 byte order mark at the start is ignored", self.name)
                raw = raw[len(BOM) :]
            if not raw.endswith(b"\n") and len(raw) > self.max_line_bytes:
                while raw and not raw.endswith(b"\n"):  # the rest of the long line, in bounded pieces
                    raw = self.stream.readline(self.max_line_bytes + 1)
                    size += len(raw)
                yield lineno, None, size
                continue
            if raw.endswith(b"\n"):
                raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
            yield lineno, raw, size

    def __iter__(self) -> Iterator[InputPost]:
        for lineno, raw, size in self._lines():
            self.lines_read = lineno
            if lineno <= self.skip_lines:
                self.skipped_bytes += size
                if lineno == self.skip_lines:
                    self.skipped_id = self._parse(lineno, raw).id if raw is not None else lineno
                continue
            if raw is None:
                post = InputPost(lineno, lineno, error=f"the line has more than {self.max_line_bytes:,} bytes")
            else:
                post = self._parse(lineno, raw)
            post.nbytes = size
            yield post

    def _parse(self, lineno: int, raw: bytes) -> InputPost:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.on_bad_text != "replace":
                return InputPost(lineno, lineno, error=f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start} of the line)")
            log.warning("%s:%d: bytes that are not valid UTF-8 replaced by U+FFFD", self.name, lineno)
            line = raw.decode("utf-8", errors="replace")
        if self.format is None:
            if not line.strip():
                return InputPost(lineno, lineno, text=line)  # a blank first line decides nothing
            # JSONL only when the first non-empty line is a JSON object: a post that merely starts
            # with "{" ("{Obama} in Paris") makes the file text
            self.format = "jsonl" if isinstance(_json_or_error(line), dict) else "text"
            self.detected = True
            log.info("%s: read as %s (from its first line; --format chooses)", self.name, self.format)
        if self.format == "text":
            return self._checked(InputPost(lineno, lineno, text=line))
        if not line.strip():
            if self.blank_jsonl == "error":
                return InputPost(lineno, lineno, error="empty line in JSONL input (expected a JSON object)")
            # not an error: files often end with a blank line. Output line i still answers input line i.
            return InputPost(lineno, lineno, text="", blank=True)
        rec = _json_or_error(line)
        if isinstance(rec, str):
            hint = "; the format was chosen from the first line (a JSON object): --format text reads every line as text" if self.detected else ""
            return InputPost(lineno, lineno, error=rec + hint)
        if not isinstance(rec, dict):
            return InputPost(lineno, lineno, error='expected a JSON object with a string field "text"')
        return self.post_from_record(lineno, rec)

    def post_from_record(self, lineno: int, rec: dict[str, Any], container: str = "a JSON object") -> InputPost:
        """The checks of a JSONL line's object, for any record of the fields (``hamner bulk`` reads
        Parquet rows through it: ``container`` names what the record is in messages)."""
        post_id = rec.get("id", lineno)
        if not isinstance(rec.get("text"), str):
            return InputPost(lineno, post_id, error=f'expected {container} with a string field "text"')
        unknown = sorted(set(rec) - set(FIELDS))
        if unknown:
            return InputPost(lineno, post_id, error=f"unknown fields {unknown}; allowed: {', '.join(FIELDS)}")
        for key in ("image", "caption"):
            if rec.get(key) is not None and not isinstance(rec[key], str):
                return InputPost(lineno, post_id, error=f'field "{key}" must be a string')
        image = rec.get("image")
        if image is not None and self.folder is not None and not Path(image).is_absolute():
            image = str(self.folder / image)
        post = InputPost(lineno, post_id, text=rec["text"], image=image, caption=rec.get("caption"), given_image=rec.get("image"))
        return self._checked(post)

    def _checked(self, post: InputPost) -> InputPost:
        """Unpaired surrogates (only JSON escapes can make them) replaced or reported."""
        for key in ("text", "caption"):
            value = getattr(post, key)
            at = first_surrogate(value) if isinstance(value, str) else None
            if at is None:
                continue
            if self.on_bad_text == "replace":
                log.warning("%s:%d: unpaired surrogates in the %s replaced by U+FFFD", self.name, post.line, key)
                setattr(post, key, _SURROGATE.sub("\ufffd", value))
            else:
                post.error = f"the {key} holds an unpaired surrogate (U+{ord(value[at]):04X}) at character {at}: not valid Unicode"
        return post


def _json_or_error(line: str) -> Any:
    """The JSON value of a line, or (a str) why it is not valid JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return "not valid JSON (nested too deeply)"
    except ValueError:  # Python's limit on digits of an integer (CVE-2020-10735), e.g. a 5,000-digit id
        return (
            f"a number with more than {sys.get_int_max_str_digits():,} digits, too long to read; "
            "an id that long must be a JSON string"
        )


def resume_point(path: Path) -> tuple[int, dict[str, Any] | None]:
    """Cut a partial last line off an interrupted output file; (complete lines, the last record)."""
    with path.open("r+b") as fh:
        size = fh.seek(0, 2)
        end = size
        while end > 0:  # find the last line break, reading backwards in blocks
            start = max(0, end - (1 << 16))
            fh.seek(start)
            block = fh.read(end - start)
            k = block.rfind(b"\n")
            if k >= 0:
                end = start + k + 1
                break
            end = start
        if end < size:
            log.info("%s: a partial last line (%d bytes) is cut off", path, size - end)
            fh.truncate(end)
        fh.seek(0)
        lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
        if not lines:
            return 0, None
        fh.seek(max(0, end - (1 << 20)))
        last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record = json.loads(last)
    except json.JSONDecodeError:
        raise ConfigError(f"--resume: the last line of {path} is not JSON (--pretty output cannot be resumed)") from None
    return lines, record if isinstance(record, dict) else None


def dumps(record: dict[str, Any]) -> bytes:
    """One JSONL line; escaped to ASCII only when the record holds text UTF-8 cannot carry."""
    text = json.dumps(record, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("ascii")


class ByteProgress(tqdm):
    """``hamner tag``'s progress bar over the input file's bytes, finished once: by :meth:`close`.
    A plain tqdm bar draws the finished state when the last chunk's update reaches the total (when
    more than ``mininterval`` has passed since it last drew: any run longer than a moment), then
    again when it closes (with the run's overall rate): stderr read anywhere but a terminal (a log
    file, CI) showed the finished bar twice. The update that reaches the total only counts; closing
    draws it."""

    def __init__(self, total: int | None, disable: bool = False) -> None:
        super().__init__(total=total, unit="B", unit_scale=True, desc="tag", disable=disable)

    def update(self, n: float | None = 1) -> bool | None:
        if not self.disable and self.total is not None and n is not None and self.n + n >= self.total:
            self.n += n
            return None
        return super().update(n)


@dataclass
class StreamOptions:
    chunk_size: int = 256
    first_chunk: int = 16  # the first chunk is small: output starts as soon as the model has loaded
    on_bad_line: str = "error"  # or "skip": an error record for the line, logged
    offsets: str = "codepoints"
    tokens: bool = False
    pretty: Callable[[Any, dict[str, Any]], str] | None = None  # a formatter for people instead of JSONL


class TagStream:
    """Tags an :class:`InputReader`'s posts chunk by chunk into a binary sink."""

    def __init__(self, tagger: Tagger, reader: InputReader, sink: IO[bytes], options: StreamOptions) -> None:
        if options.on_bad_line not in ("error", "skip"):
            raise ConfigError(f"on_bad_line must be 'error' or 'skip', got {options.on_bad_line!r}")
        self.tagger, self.reader, self.sink, self.options = tagger, reader, sink, options
        # lines: output lines this run wrote (posts + errors), the last of them answering input line last_line
        self.counts = {"posts": 0, "errors": 0, "windowed": 0, "truncated": 0, "blank": 0, "images_skipped": 0, "lines": 0, "last_line": 0}
        self._skipped_seen = 0  # bytes of resumed-over lines already shown by the progress bar

    def where(self, post: InputPost) -> str:
        return f"{self.reader.name}:{post.line} (id {post.id!r})"

    def run(self, progress: Any = None, resume: tuple[str, int, dict[str, Any] | None] | None = None) -> dict[str, int]:
        """Tag every post; ``resume`` (output name, lines it has, its last record) is checked against
        the input before anything is written."""
        chunk: list[InputPost] = []
        limit = min(self.options.first_chunk, self.options.chunk_size)
        for post in self.reader:
            if resume is not None:
                self._check_resume(*resume)
                resume = None
            chunk.append(post)
            if len(chunk) >= limit:
                self._chunk(chunk, progress)
                chunk, limit = [], self.options.chunk_size
        if resume is not None:
            self._check_resume(*resume)
        if chunk:
            self._chunk(chunk, progress)
        return self.counts

    def _check_resume(self, output: str, lines: int, last: dict[str, Any] | None) -> None:
        """The output's last record must answer the input's line ``lines``, with the same id."""
        name = self.reader.name
        if self.reader.lines_read < lines:
            raise ConfigError(f"--resume: {output} has {lines} lines but {name} only {self.reader.lines_read}: not this input's output")
        if last is None or last.get("line") != lines or last.get("id") != self.reader.skipped_id:
            got = (last.get("line"), last.get("id")) if last is not None else None
            raise ConfigError(
                f"--resume: the last line of {output} answers (line, id) {got}, but line {lines} of {name} has id "
                f"{self.reader.skipped_id!r}: not this input's output (or made without line numbers)"
            )
        log.info("--resume: %d lines of %s already answered (last id %r)", lines, name, self.reader.skipped_id)

    def _chunk(self, chunk: list[InputPost], progress: Any) -> None:
        """Tag and write one chunk. Under ``on_bad_line="error"`` the first bad line (its text, or its
        image under ``on_bad_image="error"``) stops the run after every line before it is written."""
        stop_on_error = self.options.on_bad_line == "error"
        tokens: dict[int, list[Any]] = {}
        for k, post in enumerate(chunk):
            if post.error is None:
                try:
                    tokens[k] = self.tagger.tokenize(post.text)
                except TextError as exc:
                    post.error = exc.detail
            if post.error is not None and stop_on_error:
                chunk = chunk[: k + 1]  # the lines after it are not read further
                break
        visuals = self._visuals(chunk, tokens)
        stop = next((k for k, post in enumerate(chunk) if post.error is not None), None) if stop_on_error else None
        self._tag_and_write(chunk[:stop] if stop is not None else chunk, tokens, visuals, progress)
        if stop is not None:
            culprit = chunk[stop]
            raise DataFormatError(self.reader.name, culprit.line, f"{culprit.error}; post id {culprit.id!r}")

    def _visuals(self, chunk: list[InputPost], tokens: dict[int, list[Any]]) -> dict[int, Any] | None:
        """A multimodal model's visual inputs of each line with words (None for a text-only model).
        An image the ``error`` policy refuses makes its line a bad line (``post.error``); under ``skip``
        the post is tagged without it (logged by the extractor, naming the file, line and id)."""
        if not self.tagger.multimodal:
            return None
        good = [k for k in tokens if chunk[k].error is None]
        got = self.tagger.features_each(
            [chunk[k].image for k in good], [chunk[k].caption for k in good], [self.where(chunk[k]) for k in good]
        )  # fmt: skip
        visuals: dict[int, Any] = {}
        for k, item in zip(good, got, strict=True):
            if isinstance(item, ImageError):
                chunk[k].error = str(item)
            else:
                visuals[k] = item
                if item.status not in ("ok", "no_image"):
                    self.counts["images_skipped"] += 1
        return visuals

    def _tag_and_write(self, chunk: list[InputPost], tokens: dict[int, list[Any]], visuals: dict[int, Any] | None, progress: Any) -> None:
        good = [k for k in range(len(chunk)) if k in tokens and chunk[k].error is None]
        tagged = self.tagger.tag_tokenized(
            [chunk[k].text for k in good], [tokens[k] for k in good],
            [chunk[k].image for k in good], [chunk[k].caption for k in good],
            features=[visuals[k] for k in good] if visuals is not None else None,
        )  # fmt: skip
        posts: dict[int, TaggedPost] = dict(zip(good, tagged, strict=True))
        out = []
        for k, post in enumerate(chunk):
            got = posts.get(k)
            if got is None:
                log.warning("%s: %s; written as an error record", self.where(post), post.error)
                self.counts["errors"] += 1
                out.append(dumps({"id": post.id, "line": post.line, "error": post.error}))
                continue
            self.counts["posts"] += 1
            if post.blank:
                self.counts["blank"] += 1
                log.info("%s: a blank line in JSONL input; written as an empty post (no entities)", self.where(post))
            elif not got.tokens:
                log.warning("%s: empty post; it is written with no entities", self.where(post))
            if got.windows > 1:
                self.counts["windowed"] += 1
                log.debug("%s: %d words read in %d overlapping windows", self.where(post), len(got.tokens), got.windows)
            if got.words_past_limit:
                self.counts["truncated"] += 1
                log.warning(
                    "%s: the last %d of %d words were not read (--long-posts truncate); tagged O",
                    self.where(post), got.words_past_limit, len(got.tokens),
                )  # fmt: skip
            data = got.to_dict(with_tokens=self.options.tokens, offsets=self.options.offsets)
            if self.options.pretty is not None:
                out.append(self.options.pretty(post.id, data).encode("utf-8", errors="backslashreplace"))
            else:
                out.append(dumps({"id": post.id, "line": post.line, **data, **_echoed(post)}))
        self.sink.write(b"".join(out))
        self.sink.flush()
        self.counts["lines"] += len(chunk)
        if chunk:
            self.counts["last_line"] = chunk[-1].line
        if progress is not None:
            skipped, self._skipped_seen = self.reader.skipped_bytes - self._skipped_seen, self.reader.skipped_bytes
            progress.update(skipped + sum(p.nbytes for p in chunk))


def _echoed(post: InputPost) -> dict[str, str]:
    """The post's ``image`` and ``caption`` as its line gives them (the image not resolved: relative to
    the input file's folder, as a JSONL corpus reads it), so that a tagged and corrected file trains a
    model with its images."""
    out = {}
    if post.given_image is not None:
        out["image"] = post.given_image
    if post.caption is not None:
        out["caption"] = post.caption
    return out


def binary_stdout() -> IO[bytes]:
    """Standard output as bytes (what is written is UTF-8 whatever the locale)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        raise ConfigError("standard output cannot take bytes here; pass -o FILE")
    sys.stdout.flush()
    return buffer  # type: ignore[no-any-return]
