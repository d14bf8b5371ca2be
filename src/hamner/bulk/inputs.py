"""The input side of ``hamner bulk``: find the files, index them, cut them into parts, read a part.

Every input row is named by its file and its 1-based line (JSONL) or row (Parquet) number: that pair
is the row's key in the output and in the restart bookkeeping. A JSONL file is indexed once by the
driver in one sequential pass (SHA-256 and the byte offset of every ``part_rows``-th line), then read
in parts, each by a Ray task, through :class:`hamner.inference.stream.InputReader`: the same line
cutting, UTF-8 / BOM handling and per-line checks as ``hamner tag``, so a bad line becomes the same
error. A Parquet file is read one row group per part, its rows checked by the same record checks.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hamner.errors import ConfigError, first_surrogate
from hamner.inference.stream import FIELDS, JSONL_SUFFIXES, InputPost, InputReader

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
BLOCK = 8 << 20  # bytes read at a time while indexing

# Short names of the reasons a row has no (or an incomplete) answer, counted in the summary. The
# per-line messages come from hamner.inference.stream (the same text as hamner tag's error records).
ERROR_PREFIXES = (
    ("not valid UTF-8", "invalid_utf8"),
    ("not valid JSON", "invalid_json"),
    ("empty line in JSONL input", "invalid_json"),
    ("expected a JSON object with", "no_text"),
    ("expected a Parquet row with", "no_text"),
    ("unknown fields", "unknown_field"),
    ('field "', "bad_field"),
    ("the text holds an unpaired surrogate", "invalid_unicode"),
    ("the caption holds an unpaired surrogate", "invalid_unicode"),
    ("the image path holds an unpaired surrogate", "invalid_unicode"),
    ("the line has more than", "line_too_long"),
)
EMPTY_TEXT = "empty text: nothing to tag"


def error_kind(message: str) -> str:
    """The summary's name for a per-line error message (``untokenizable`` for what the word
    tokenizer gave up on, the only other message a text can get)."""
    for prefix, kind in ERROR_PREFIXES:
        if message.startswith(prefix):
            return kind
    return "untokenizable"


@dataclass(frozen=True)
class InputFile:
    """One input file as indexed: its rows, fingerprint and where its parts start."""

    path: str  # absolute
    format: str  # "jsonl" or "parquet"
    size: int
    sha256: str
    rows: int
    part_offsets: tuple[int, ...]  # JSONL: byte offset of each part's first line; Parquet: unused
    part_rows: tuple[int, ...]  # rows in each part

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "size": self.size, "sha256": self.sha256, "rows": self.rows}


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise ConfigError(
        f"{path}: not an input hamner bulk reads (JSONL: {', '.join(JSONL_SUFFIXES)}; Parquet: {', '.join(PARQUET_SUFFIXES)})"
    )


# A folder given to --input is read for these files only: JSONL by its line-format names and Parquet.
# A ".json" file (often one JSON document: a manifest, a config) is read only when named itself, and
# names starting with "_" or "." (a bulk output's _manifest.json and _index/, Spark's _SUCCESS,
# hidden and checksum files) are never taken from a folder or a glob.
FOLDER_SUFFIXES = (".jsonl", ".ndjson", *PARQUET_SUFFIXES)
MANIFEST_NAME = "_manifest.json"  # hamner.bulk.output.MANIFEST (not imported: output imports this module)


def _hidden(path: Path) -> bool:
    """A name a folder or glob never yields as input: it, or a folder it is in, starts with _ or ."""
    return any(part.startswith(("_", ".")) for part in path.parts[-2:])


def find_inputs(patterns: Sequence[str]) -> list[Path]:
    """The files named by paths, folders (their .jsonl, .ndjson and Parquet files) or glob patterns, in
    order, each once; a pattern that matches nothing is an error naming it. Names starting with ``_``
    or ``.`` are not taken from folders or globs, and a bulk output's manifest is refused."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES and not _hidden(p))
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file() and not _hidden(Path(p)))
        elif path.is_file():
            if path.name == MANIFEST_NAME:
                raise ConfigError(f"--input {pattern}: the manifest of a hamner bulk output, not posts")
            matches = [path]
        else:
            raise ConfigError(f"--input {pattern}: no such file or folder")
        if not matches:
            raise ConfigError(
                f"--input {pattern}: matches no JSONL or Parquet file (a folder gives its {', '.join(FOLDER_SUFFIXES)} files; "
                "name a .json file itself)"
            )
        found += [m.resolve() for m in matches]
    unique = list(dict.fromkeys(found))
    for p in unique:
        file_format(p)
    return unique


def index_file(path: Path, part_rows: int) -> InputFile:
    """Fingerprint and cut one file: a JSONL file in parts of ``part_rows`` lines (one pass over its
    bytes), a Parquet file in its row groups (its footer)."""
    fmt = file_format(path)
    digest = hashlib.sha256()
    size = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(BLOCK), b""):
                digest.update(block)
                size += len(block)
        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError subclasses for a bad footer
            raise ConfigError(f"{path}: not a readable Parquet file ({exc})") from exc
        names = meta.schema.to_arrow_schema().names
        if "text" not in names:
            raise ConfigError(f"{path}: a Parquet input needs a column 'text' (it has {names}); id, image and caption are optional")
        ignored = sorted(set(names) - set(FIELDS))
        if ignored:
            log.info("%s: columns %s are not read (hamner bulk reads %s)", path, ignored, ", ".join(FIELDS))
        groups = tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
        return InputFile(str(path), fmt, size, digest.hexdigest(), sum(groups), (), groups)
    offsets, counts = [0], []
    lines, in_part, last = 0, 0, b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
            start = 0
            while True:  # every line break: count it, and start a new part after each part_rows-th
                k = block.find(b"\n", start)
                if k < 0:
                    break
                lines += 1
                in_part += 1
                start = k + 1
                if in_part == part_rows:
                    offsets.append(size + start)
                    counts.append(in_part)
                    in_part = 0
            size += len(block)
            last = block[-1:]
    if last != b"\n":  # a last line without a line break is a line
        lines += 1
        in_part += 1
    if in_part:
        counts.append(in_part)
    else:
        offsets.pop()  # the file ends exactly at a part boundary (or is empty)
    return InputFile(str(path), fmt, size, digest.hexdigest(), lines, tuple(offsets), tuple(counts))


@dataclass(frozen=True)
class Part:
    """A piece of one input file read by one task: plain data, it travels to the Ray task."""

    source: int  # index of the file in the job's input list
    path: str
    format: str
    index: int  # part number in its file (the row group of a Parquet file)
    first_line: int  # 1-based number of the part's first row
    rows: int
    start: int  # JSONL: byte offset of the first line; Parquet: unused
    end: int  # JSONL: byte offset after the last line
    folder: str  # relative image paths are taken from here
    done: tuple[tuple[int, int], ...] = ()  # line ranges (inclusive) already written by an earlier run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Part:
        return cls(**{**data, "done": tuple(tuple(r) for r in data.get("done") or ())})


def make_parts(files: Sequence[InputFile], images_root: str | None) -> list[Part]:
    parts = []
    for source, f in enumerate(files):
        folder = images_root or str(Path(f.path).parent)
        first = 1
        for k, n in enumerate(f.part_rows):
            if f.format == "jsonl":
                start = f.part_offsets[k]
                end = f.part_offsets[k + 1] if k + 1 < len(f.part_offsets) else f.size
            else:
                start = end = 0
            parts.append(Part(source, f.path, f.format, k, first, n, start, end, folder))
            first += n
    return parts


class _Slice(io.RawIOBase):
    """The bytes [start, end) of a file, as a stream."""

    def __init__(self, fh: Any, start: int, end: int) -> None:  # a binary file (IO[bytes] has no readinto)
        self.fh, self.left = fh, end - start
        fh.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buffer)[: self.left]
        n = self.fh.readinto(view)
        self.left -= n or 0
        return n or 0


def _in(ranges: Sequence[tuple[int, int]], line: int) -> bool:
    return any(a <= line <= b for a, b in ranges)


def id_text(post_id: Any) -> str:
    """The output's ``id`` column is text: a string id as it is, any other JSON value as JSON (7 -> "7");
    an id holding an unpaired surrogate (which no output format can carry) as ASCII-escaped JSON."""
    if isinstance(post_id, str) and first_surrogate(post_id) is None:
        return post_id
    try:
        text = json.dumps(post_id, ensure_ascii=False, default=str)
    except ValueError:  # an integer of more digits than Python converts to text
        text = json.dumps(f"<an integer of {post_id.bit_length()} bits>")
    return text if first_surrogate(text) is None else json.dumps(json.loads(text))


def missing_id(path: str, line: int) -> str:
    """The id of a row without one: ``FILE:LINE`` (the input file as in the ``source`` column), unique
    in the job and unlike the ids of ``hamner tag``, which gives such a line its line number."""
    return f"{path}:{line}"


class BulkReader(InputReader):
    """``hamner tag``'s line reader, which also says which lines had no id, and never stops: a line
    its parser fails on (an integer of more than 4,300 digits, a ValueError) is a bad line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.with_id: set[int] = set()

    def _parse(self, lineno: int, raw: bytes) -> InputPost:
        try:
            return super()._parse(lineno, raw)
        except ValueError as exc:  # int("1" * 5000) refuses: "Exceeds the limit (4300 digits) ..."
            return InputPost(lineno, lineno, error=f"not valid JSON here (a number too long to read: {str(exc).split(';')[0]})")

    def post_from_record(self, lineno: int, rec: dict[str, Any], container: str = "a JSON object") -> InputPost:
        if rec.get("id") is not None:
            self.with_id.add(lineno)
        return super().post_from_record(lineno, rec, container)


def read_part(part: Part, on_bad_text: str = "error", max_line_bytes: int = 1 << 20) -> Iterator[InputPost]:
    """The part's posts, each with its line (row) number; a bad row is a post with ``error`` set.
    A row without an id (or with a null one) gets :func:`missing_id`."""
    for post, has_id in _read_part(part, on_bad_text, max_line_bytes):
        at = first_surrogate(post.image) if post.error is None and post.image is not None else None
        if at is not None:  # no file system can open it (hamner tag fails on it too)
            post.error = f"the image path holds an unpaired surrogate (U+{ord(post.image[at]):04X}) at character {at}: not valid Unicode"  # type: ignore[index]
        if not has_id:
            post.id = missing_id(part.path, post.line)
        yield post


def _read_part(part: Part, on_bad_text: str, max_line_bytes: int) -> Iterator[tuple[InputPost, bool]]:
    if part.format == "jsonl":
        with open(part.path, "rb") as fh:
            stream = io.BufferedReader(_Slice(fh, part.start, part.end), BLOCK // 8)
            reader = BulkReader(
                stream, part.path, "jsonl", Path(part.folder), on_bad_text=on_bad_text, max_line_bytes=max_line_bytes,
                first_line=part.first_line, blank_jsonl="post",
            )  # fmt: skip (a blank line is an empty post, as hamner tag answers it: an empty_text row)
            for post in reader:
                if not _in(part.done, post.line):
                    yield post, post.line in reader.with_id
        return
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(part.path)
    columns = [c for c in FIELDS if c in pf.schema_arrow.names]
    table = pf.read_row_group(part.index, columns=columns)
    checker = BulkReader(io.BytesIO(), part.path, "jsonl", Path(part.folder), on_bad_text=on_bad_text)
    for k, row in enumerate(table.to_pylist()):
        line = part.first_line + k
        if _in(part.done, line):
            continue
        rec = {key: value for key, value in row.items() if value is not None or key == "text"}
        yield checker.post_from_record(line, rec, container="a Parquet row"), line in checker.with_id
