"""Annotated-corpus file formats, read into posts with gold BIO tags; every problem names file:line.

Four formats, detected from a file's content (or named: ``imgid``, ``conll``, ``jsonl``,
``labelstudio``):

- ``imgid``: the Twitter-2015/2017 benchmark format: ``IMGID:<id>`` starts a post, then one
  ``token<TAB>tag`` line per token, a blank line ends it (the last one may end at EOF);
- ``conll``: plain CoNLL: blank-line separated posts, one token a line, the token first and the tag
  last with any columns between (TAB separated when the file has TABs, else spaces), ``-DOCSTART-``
  lines skipped, ``IMGID:`` lines allowed;
- ``jsonl``: one post a line, ``{"id", "text", "entities": [{"start", "end", "type"}], "image",
  "caption"}`` with character offsets (the shape ``hamner tag`` writes); the text is cut into words
  the way the model cuts raw text, and the spans become BIO tags;
- ``labelstudio``: a Label Studio JSON export (``hamner.data.labelstudio.read_export``), whose tasks
  become records of the JSONL shape.

Tags may be BIO (IOB2), IOB1 or BIOES; they are converted to BIO (:func:`normalise`) and the
conversions counted. Readers never stop at the first problem: they collect every one in a
:class:`Problems` (errors and warnings), so that ``hamner data check`` can list them all; loading for
training raises on the first error list.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hamner.data.post import Post
from hamner.errors import DataFormatError

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("auto", "imgid", "conll", "jsonl", "labelstudio")
SCHEMES: tuple[str, ...] = ("auto", "bio", "iob1", "bioes")
DROP = "O"  # a type map value that drops the type (its tags become O)
MAX_SHOWN = 20  # problems listed in an error message


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    path: str
    line: int | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


@dataclass
class Problems:
    """Every problem found while reading, in reading order."""

    items: list[Problem] = field(default_factory=list)

    def error(self, path: str, line: int | None, message: str) -> None:
        self.items.append(Problem("error", str(path), line, message))

    def warning(self, path: str, line: int | None, message: str) -> None:
        self.items.append(Problem("warning", str(path), line, message))

    def in_order(self) -> list[Problem]:
        """The problems by file and line (a file's line problems and its tag problems are found in two passes)."""
        return sorted(self.items, key=lambda p: (p.path, p.line if p.line is not None else -1))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.in_order() if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.in_order() if p.level == "warning"]

    def raise_errors(self) -> None:
        """A :class:`DataFormatError` at the first error, listing the others (up to ``MAX_SHOWN``)."""
        errors = self.errors
        if not errors:
            return
        first = errors[0]
        more = "".join(f"\n  {p}" for p in errors[1:MAX_SHOWN])
        if len(errors) > MAX_SHOWN:
            more += f"\n  ... and {len(errors) - MAX_SHOWN} more (hamner data check lists them all)"
        raise DataFormatError(first.path, first.line, first.message + more)


@dataclass
class RawPost:
    """A post as its file has it: words, raw tags (any scheme, unmapped types), where each came from."""

    words: list[str]
    tags: list[str]
    path: str
    line: int  # the post's first line (a JSONL post's line; a task's place for Label Studio)
    token_lines: list[int] | None = None  # each token's line (column formats)
    imgid: str | None = None
    id: str | None = None
    image: str | None = None  # as written in the file (relative to its folder)
    caption: str | None = None
    where: str | None = None  # a location other than path:line (Label Studio: "file.json: task 12")
    bad_lines: int = 0  # lines of the post left out with an error

    def at(self, i: int) -> tuple[str, int | None]:
        """(path, line) of token ``i`` for a message."""
        if self.where is not None:
            return self.where, None
        return self.path, self.token_lines[i] if self.token_lines is not None else self.line

    @property
    def source(self) -> str:
        return self.where if self.where is not None else f"{self.path}:{self.line}"


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataFormatError(str(path), None, "file not found") from None
    except IsADirectoryError:
        raise DataFormatError(str(path), None, "is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(str(path), None, f"not UTF-8 ({exc})") from None


def detect_format(path: Path, text: str | None = None) -> str:
    """The format of a corpus file from its first non-blank characters: ``[`` a Label Studio
    export, ``{`` JSONL, ``IMGID:`` the benchmark format, anything else plain CoNLL."""
    text = read_text(path) if text is None else text
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        return "labelstudio"
    if head.startswith("{"):
        return "jsonl"
    if head.startswith("IMGID:"):
        return "imgid"
    return "conll"


def _lines(text: str) -> list[str]:
    # split on "\n" only: "\x85", "\u2028" and friends can be tokens and must not end a line
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def read_columns(path: Path, text: str, problems: Problems, benchmark: bool) -> list[RawPost]:
    """The ``imgid`` (``benchmark=True``: every post has an IMGID line, exactly ``token<TAB>tag``)
    and ``conll`` formats (IMGID lines optional, the token first and the tag last)."""
    name = str(path)
    posts: list[RawPost] = []
    seen_ids: dict[str, int] = {}
    lines = _lines(text)
    tab = benchmark or any("\t" in ln for ln in lines)
    columns: int | None = 2 if benchmark else None
    cur: RawPost | None = None

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            if not cur.words and cur.bad_lines:
                pass  # its lines' errors say it all
            elif not cur.words:
                if benchmark or cur.imgid is not None:
                    problems.error(name, cur.line, f"post IMGID:{cur.imgid} has no tokens")
                else:
                    problems.warning(name, cur.line, "a post of empty tokens only, left out")
            else:
                posts.append(cur)
        cur = None

    for lineno, line in enumerate(lines, start=1):
        if line == "" or (not tab and not line.strip()):
            flush()
            continue
        if not benchmark and "\t" not in line and not line.strip():
            problems.warning(
                name, lineno, f"a line of only whitespace ({line!r}) read as a blank line (the end of a post)"
            )
            flush()
            continue
        if line.startswith("IMGID:") and "\t" not in line:
            if cur is not None:
                problems.error(name, lineno, "IMGID line inside a post (missing blank line before it)")
                flush()
            imgid = line[len("IMGID:") :]
            if not imgid:
                problems.error(name, lineno, "empty IMGID")
            elif imgid in seen_ids:
                problems.error(name, lineno, f"IMGID {imgid} already used at line {seen_ids[imgid]}")
            else:
                seen_ids[imgid] = lineno
            cur = RawPost([], [], name, lineno, [], imgid=imgid or None)
            continue
        if not benchmark and line.split("\t" if tab else None, 1)[0] == "-DOCSTART-":
            flush()
            continue
        parts = line.split("\t") if tab else line.split()
        if benchmark and cur is None:
            problems.error(name, lineno, "a token line before any IMGID line")
        if cur is None:
            cur = RawPost([], [], name, lineno, [])
        if benchmark and len(parts) != 2:
            problems.error(name, lineno, f"expected 'token<TAB>tag', found {len(parts) - 1} TABs in {line[:80]!r}")
            cur.bad_lines += 1
            continue
        if len(parts) < 2:
            problems.error(
                name, lineno, f"expected 'token{'<TAB>' if tab else ' '}...tag', found one column in {line[:80]!r}"
            )
            cur.bad_lines += 1
            continue
        if columns is None:
            columns = len(parts)
        elif len(parts) != columns:
            problems.error(
                name, lineno, f"{len(parts)} columns where the file's first token line has {columns}: {line[:80]!r}"
            )
            cur.bad_lines += 1
            continue
        token, tag = parts[0], parts[-1].strip()
        if token == "":
            if benchmark or tag != "O":
                problems.error(name, lineno, "empty token" + (f" tagged {tag}" if tag != "O" else ""))
                cur.bad_lines += 1
            else:  # nothing to read or tag: a repair, said
                problems.warning(name, lineno, "empty token tagged O left out")
            continue
        cur.words.append(token)
        cur.tags.append(tag)
        assert cur.token_lines is not None
        cur.token_lines.append(lineno)
    flush()  # the Twitter-2015 files end without a blank line
    return posts


def read_jsonl(path: Path, text: str, problems: Problems, style: str) -> list[RawPost]:
    """One post a line (blank lines skipped); each line's record becomes a post (:func:`span_posts`)."""
    records: list[tuple[dict[str, Any], str, int]] = []
    for lineno, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.error(str(path), lineno, f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        records.append((record, str(path), lineno))
    return span_posts(records, problems, style)


def read_labelstudio(path: Path, problems: Problems, style: str) -> list[RawPost]:
    """A Label Studio export through ``hamner.data.labelstudio.read_export``: records of the JSONL
    shape, each with ``_where`` ("file.json: task 12") naming it in messages."""
    from hamner.data import labelstudio

    records = labelstudio.read_export(path)
    return span_posts([(r, str(path), i + 1) for i, r in enumerate(records)], problems, style)


def span_posts(records: Iterable[tuple[Any, str, int]], problems: Problems, style: str) -> list[RawPost]:
    """Posts from records ``{"id", "text", "entities": [{"start", "end", "type"}], "image",
    "caption"}`` given with their file and line (or ``_where``): the text cut into words by the
    tokenizer of ``style``, each span's words tagged B-/I-. A span off the text, spans that overlap
    or a field of the wrong kind is an error; a span cutting a word is widened to whole words, with
    a warning naming the post. ``hamner tag`` output (its ``line``, ``tokens``, ``relevance``...
    fields are ignored) reads the same way; offsets in UTF-16 units are recognised by the entity's
    ``text``."""
    from hamner.data.tokenize import tokenize
    from hamner.errors import TextError

    posts: list[RawPost] = []
    for record, path, line in records:
        where = record.get("_where") if isinstance(record, dict) else None
        loc = (str(where), None) if where else (path, line)

        def err(message: str, loc: tuple[str, int | None] = loc) -> None:
            problems.error(loc[0], loc[1], message)

        if not isinstance(record, dict):
            err(f"expected a JSON object, found {type(record).__name__}")
            continue
        if "error" in record and "text" not in record:
            err(
                f"an error record of 'hamner tag' ({str(record['error'])[:80]}), not a post: fix the post or remove the line"
            )
            continue
        text, ents = record.get("text"), record.get("entities", [])
        pid = record.get("id")
        name = f"post {pid}" if pid is not None else "the post"
        if not isinstance(text, str) or not text.strip():
            err(f"{name}: 'text' must be a non-empty string, found {text!r}"[:200])
            continue
        if not isinstance(ents, list):
            err(f"{name}: 'entities' must be a list of {{start, end, type}}, found {type(ents).__name__}")
            continue
        image, caption = record.get("image"), record.get("caption")
        if image is not None and not isinstance(image, str):
            err(f"{name}: 'image' must be a file path (a string), found {type(image).__name__}")
            continue
        if caption is not None and not isinstance(caption, str):
            err(f"{name}: 'caption' must be a string, found {type(caption).__name__}")
            continue
        try:
            tokens = tokenize(text, style)
        except TextError as exc:
            err(f"{name}: {exc.detail}")
            continue
        if not tokens:
            err(f"{name}: the text has no words")
            continue
        tags = ["O"] * len(tokens)
        spans: list[tuple[int, int, str]] = []
        bad = False
        for k, e in enumerate(ents):
            span = _span(e, text)
            if isinstance(span, str):
                err(f"{name}: entity {k + 1}: {span}")
                bad = True
                continue
            spans.append(span)
        spans.sort()
        for (s1, e1, t1), (s2, e2, t2) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                err(f"{name}: entities overlap: {t1} [{s1}:{e1}] {text[s1:e1]!r} and {t2} [{s2}:{e2}] {text[s2:e2]!r}")
                bad = True
        if bad:
            continue
        for start, end, typ in spans:
            covered = [i for i, t in enumerate(tokens) if t.start < end and t.end > start]
            if not covered:
                err(f"{name}: entity {typ} [{start}:{end}] {text[start:end]!r} covers no word")
                bad = True
                continue
            lo, hi = tokens[covered[0]].start, tokens[covered[-1]].end
            if (lo, hi) != (start, end) and text[start:end].strip() and (lo, hi) != _trimmed(text, start, end):
                problems.warning(
                    loc[0],
                    loc[1],
                    f"{name}: entity {typ} [{start}:{end}] {text[start:end]!r} cuts a word; widened to {text[lo:hi]!r} [{lo}:{hi}]",
                )
            if any(tags[i] != "O" for i in covered):
                err(f"{name}: entity {typ} [{start}:{end}] shares a word with another entity")
                bad = True
                continue
            for j, i in enumerate(covered):
                tags[i] = f"{'B' if j == 0 else 'I'}-{typ}"
        if bad:
            continue
        posts.append(
            RawPost(
                [t.text for t in tokens],
                tags,
                path,
                line,
                None,
                imgid=None,
                id=None if pid is None else str(pid),
                image=image,
                caption=caption,
                where=str(where) if where else None,
            )  # fmt: skip
        )
    return posts


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without leading and trailing whitespace (a span with spaces around cuts no word)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _span(e: Any, text: str) -> tuple[int, int, str] | str:
    """(start, end, type) of an entity record in code points, or what is wrong with it."""
    if not isinstance(e, dict):
        return f"expected {{start, end, type}}, found {e!r}"[:120]
    start, end, typ = e.get("start"), e.get("end"), e.get("type", e.get("label"))
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        return f"start and end must be integers, found {start!r} and {end!r}"
    if not isinstance(typ, str) or not typ or typ != typ.strip() or "-" in typ and typ[:2] in ("B-", "I-"):
        return f"type must be a name such as PER, found {typ!r}"
    said = e.get("text")
    if isinstance(said, str) and text[start:end] != said:  # offsets in UTF-16 units (hamner tag --offsets utf16)?
        from hamner.data.tokenize import utf16_offsets

        table = utf16_offsets(text)
        if table is not None and start in table and end in table:
            start, end = table.index(start), table.index(end)
    if not 0 <= start < end <= len(text):
        return f"span [{start}:{end}] is off the text ({len(text)} characters)"
    if isinstance(said, str) and text[start:end] != said:
        return f"span [{start}:{end}] is {text[start:end]!r} but the entity's text says {said!r}"
    return start, end, typ


@dataclass
class TagReport:
    """What :func:`normalise` did to a file's tags."""

    scheme: str = "bio"
    converted: int = 0  # tags rewritten to BIO (IOB1 entity starts, BIOES S-/E-)
    orphan_i: int = 0  # BIO: I- tags that continue no entity, kept (read as conlleval reads them)
    dropped: Counter[str] = field(default_factory=Counter)  # entities of types the type map drops
    renamed: Counter[str] = field(default_factory=Counter)  # "OLD->NEW": entities renamed by the type map


def detect_scheme(posts: list[RawPost]) -> str:
    """BIOES when any S-/E- tag is there; IOB1 when more entities start with I- than with B-; else BIO."""
    b = i_starts = 0
    for p in posts:
        prev = "O"
        for t in p.tags:
            if t[:2] in ("S-", "E-"):
                return "bioes"
            if t.startswith("B-"):
                b += 1
            elif t.startswith("I-") and prev[2:] != t[2:]:
                i_starts += 1
            prev = t
    return "iob1" if i_starts > b else "bio"


def normalise(
    raw: list[RawPost],
    problems: Problems,
    scheme: str = "auto",
    type_map: Mapping[str, str] | None = None,
    declared: Iterable[str] | None = None,
) -> tuple[list[Post], TagReport]:
    """BIO posts with mapped types: each tag checked (a malformed tag or, with a ``declared`` label
    set, a type outside it is an error at its line), converted from ``scheme`` to BIO, its type
    renamed, merged or dropped (mapped to ``O``) by ``type_map``. A post with an error is left out
    (the error is reported)."""
    type_map = dict(type_map or {})
    allowed = None if declared is None else set(declared)
    if scheme == "auto":
        scheme = detect_scheme(raw)
    if scheme not in SCHEMES[1:]:
        raise ValueError(f"tag scheme must be one of {SCHEMES}, got {scheme!r}")
    prefixes = ("B", "I", "E", "S") if scheme == "bioes" else ("B", "I")
    expected = "O, B-TYPE, I-TYPE, E-TYPE or S-TYPE" if scheme == "bioes" else "O, B-TYPE or I-TYPE"
    report = TagReport(scheme=scheme)
    out: list[Post] = []
    for p in raw:
        tags: list[str] = []
        ok = True
        open_type: str | None = None  # the type of the entity the previous tag leaves open
        for i, tag in enumerate(p.tags):
            if tag == "O":
                tags.append("O")
                open_type = None
                continue
            prefix, sep, typ = tag.partition("-")
            if prefix not in prefixes or not sep or not typ:
                what = "BIO" if scheme in ("bio", "iob1") else "BIOES"
                problems.error(*p.at(i), f"tag {tag!r} is not {what} (expected {expected})")
                ok = False
                break
            mapped = type_map.get(typ, typ)
            if allowed is not None and mapped != DROP and mapped not in allowed:
                known = ", ".join(sorted(allowed))
                via = f" (mapped from {typ!r})" if mapped != typ else ""
                problems.error(
                    *p.at(i), f"unknown entity type {mapped!r}{via} in tag {tag!r}; the label set is {known}"
                )
                ok = False
                break
            new_prefix = {"S": "B", "E": "I"}.get(prefix, prefix)
            if new_prefix != prefix:
                report.converted += 1
            if prefix == "I" and open_type != typ:  # an I- that continues nothing
                if scheme == "iob1":  # IOB1 starts entities with I-
                    new_prefix = "B"
                    report.converted += 1
                else:  # kept as the gold has it; conlleval reads it as an entity start
                    report.orphan_i += 1
            if prefix in ("B", "S") or open_type != typ:  # an entity starts here
                if mapped == DROP:
                    report.dropped[typ] += 1
                elif mapped != typ:
                    report.renamed[f"{typ}->{mapped}"] += 1
            tags.append("O" if mapped == DROP else f"{new_prefix}-{mapped}")
            open_type = None if prefix in ("S", "E") else typ
        if ok:
            out.append(
                Post(
                    words=p.words,
                    tags=tags,
                    imgid=p.imgid,
                    source=p.source,
                    caption=p.caption,
                    id=p.id if p.id is not None else p.imgid,
                    image=p.image,
                )  # fmt: skip
            )
    return out, report


def read_raw(path: str | Path, fmt: str, problems: Problems, style: str = "twitter2017") -> tuple[list[RawPost], str]:
    """A corpus file's posts as written, and the format they were read in (``fmt`` or detected)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataFormatError(str(path), None, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "labelstudio":
        return read_labelstudio(path, problems, style), fmt
    text = read_text(path)
    if fmt == "auto":
        fmt = detect_format(path, text)
        if fmt == "labelstudio":
            return read_labelstudio(path, problems, style), fmt
    if fmt == "jsonl":
        return read_jsonl(path, text, problems, style), fmt
    return read_columns(path, text, problems, benchmark=fmt == "imgid"), fmt
