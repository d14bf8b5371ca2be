"""Reader for the Twitter-2015/2017 CoNLL files (UMT release format).

Format (see the data README): ``IMGID:<id>`` starts a post, then one ``token<TAB>tag`` line per
token, a blank line ends the post. The 2015 files do not end with a blank line; some tokens are
only whitespace or zero-width characters, so lines are split on TAB only. Orphan ``I-`` tags are
kept exactly as the gold has them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hamner.data.labels import DEFAULT_TYPE_MAP
from hamner.errors import DataFormatError

log = logging.getLogger(__name__)


@dataclass
class Post:
    """One tweet: its words, gold BIO tags (already mapped to the model's types) and image id."""

    words: list[str]
    tags: list[str]
    imgid: str | None = None
    source: str = ""  # "file:line" of the IMGID line, for error messages
    caption: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def map_tag(tag: str, type_map: Mapping[str, str], path: str, line: int) -> str:
    """Map a raw tag (``B-OTHER``) through the label map (``B-MISC``); unknown tags raise."""
    if tag == "O":
        return tag
    prefix, sep, typ = tag.partition("-")
    if prefix not in ("B", "I") or not sep or not typ:
        raise DataFormatError(path, line, f"tag {tag!r} is not BIO (expected O, B-TYPE or I-TYPE)")
    if typ not in type_map:
        known = ", ".join(sorted(type_map))
        raise DataFormatError(path, line, f"unknown entity type {typ!r} in tag {tag!r}; the label map knows {known}")
    return f"{prefix}-{type_map[typ]}"


def read_conll(path: str | Path, type_map: Mapping[str, str] | None = None) -> list[Post]:
    """Read one split file; every malformed line raises :class:`DataFormatError` with file:line."""
    type_map = DEFAULT_TYPE_MAP if type_map is None else type_map
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataFormatError(str(path), None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(str(path), None, f"not UTF-8 ({exc})") from None
    name = str(path)
    posts: list[Post] = []
    words: list[str] = []
    tags: list[str] = []
    imgid: str | None = None
    start_line = 0
    seen_ids: dict[str, int] = {}

    def flush(end_line: int) -> None:
        nonlocal words, tags, imgid
        if imgid is None and not words:
            return
        if not words:
            raise DataFormatError(name, start_line, f"post IMGID:{imgid} has no tokens")
        posts.append(Post(words=words, tags=tags, imgid=imgid, source=f"{name}:{start_line}"))
        words, tags, imgid = [], [], None

    # split on "\n" only: "\x85", "\u2028" and friends can be tokens and must not end a line
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line == "":
            flush(lineno)
            continue
        if line.startswith("IMGID:") and "\t" not in line:
            if imgid is not None or words:
                raise DataFormatError(name, lineno, "IMGID line inside a post (missing blank line before it)")
            imgid = line[len("IMGID:") :]
            if not imgid:
                raise DataFormatError(name, lineno, "empty IMGID")
            if imgid in seen_ids:
                raise DataFormatError(name, lineno, f"IMGID {imgid} already used at line {seen_ids[imgid]}")
            seen_ids[imgid] = lineno
            start_line = lineno
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataFormatError(name, lineno, f"expected 'token<TAB>tag', found {len(parts) - 1} TABs in {line!r}")
        token, tag = parts
        if token == "":
            raise DataFormatError(name, lineno, "empty token")
        if not words and imgid is None:
            start_line = lineno
        words.append(token)
        tags.append(map_tag(tag, type_map, name, lineno))
    flush(len(lines) + 1)  # the 2015 files end without a blank line
    log.debug("read %d posts from %s", len(posts), name)
    return posts


def read_captions(path: str | Path) -> dict[str, str]:
    """Read a caption file with lines ``<IMGID>.<ext> :<caption>``; returns IMGID -> caption."""
    path = Path(path)
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM is not part of the first IMGID
    except FileNotFoundError:
        raise DataFormatError(str(path), None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(str(path), None, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        name, sep, caption = line.partition(" :")
        if not sep or not name:
            raise DataFormatError(str(path), lineno, f"expected '<IMGID>.jpg :<caption>', found {line[:80]!r}")
        imgid = name.rsplit(".", 1)[0] if "." in name else name
        if imgid in out:
            raise DataFormatError(str(path), lineno, f"second caption for {name}")
        out[imgid] = caption.strip()
    return out
