"""The reader of the Twitter-2015/2017 files, and the post record every corpus reader gives
(:class:`Post`, defined in :mod:`hamner.data.post` so that :mod:`hamner.data.formats` can build it
without importing this module back).

Format (see the data README): ``IMGID:<id>`` starts a post, then one ``token<TAB>tag`` line per
token, a blank line ends the post. The 2015 files do not end with a blank line; some tokens are
only whitespace or zero-width characters, so lines are split on TAB only. Orphan ``I-`` tags are
kept exactly as the gold has them. The readers of every format are in :mod:`hamner.data.formats`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from hamner.data.formats import Problems, normalise, read_raw
from hamner.data.labels import DEFAULT_TYPE_MAP
from hamner.data.post import Post
from hamner.errors import DataFormatError

__all__ = ["Post", "read_captions", "read_conll"]

log = logging.getLogger(__name__)


def read_conll(path: str | Path, type_map: Mapping[str, str] | None = None) -> list[Post]:
    """Read one file of the benchmark format; the first problem raises :class:`DataFormatError`
    with file:line. ``type_map`` lists every type the file may have (default: PER LOC ORG MISC, and
    OTHER read as MISC); a type that maps to none of its values is an error."""
    type_map = DEFAULT_TYPE_MAP if type_map is None else type_map
    problems = Problems()
    raw, _ = read_raw(path, "imgid", problems)
    posts, _ = normalise(raw, problems, "bio", type_map, declared=type_map.values())
    problems.raise_errors()
    log.debug("read %d posts from %s", len(posts), path)
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
