"""Word shape classes: the case and form cues that an uncased encoder cannot see."""

from __future__ import annotations

import re
from functools import lru_cache

SHAPES: tuple[str, ...] = (
    "<pad>",
    "lower",  # paris
    "Title",  # Paris
    "UPPER",  # NBA, RT
    "X",  # a single upper-case letter
    "miXed",  # iPhone, McDonald
    "@mention",  # @user (Twitter-2015 keeps the @ on the name)
    "#hashtag",  # #NBA (Twitter-2015 keeps the # on the tag)
    "url",
    "digits",  # 2017
    "alnum",  # 2k17, 5-7, U2
    "punct",  # , . ! ? # @ :
    "other",  # emoji, symbols, whitespace-only and zero-width tokens
)
SHAPE_INDEX: dict[str, int] = {s: i for i, s in enumerate(SHAPES)}

_URL = re.compile(r"^(https?://|www\.)", re.IGNORECASE)


def word_shape(word: str) -> str:
    """The shape class of one word (see :data:`SHAPES`)."""
    if _URL.match(word):
        return "url"
    if len(word) > 1 and word[0] == "@":
        return "@mention"
    if len(word) > 1 and word[0] == "#":
        return "#hashtag"
    letters = [c for c in word if c.isalpha()]
    has_digit = any(c.isdigit() for c in word)
    if not letters:
        if has_digit:
            return "digits" if all(c.isdigit() for c in word) else "alnum"
        if word.strip() and all(not c.isalnum() and c.isprintable() and ord(c) < 0x2000 for c in word):
            return "punct"
        return "other"
    if has_digit:
        return "alnum"
    if all(c.islower() for c in letters):
        return "lower"
    if all(c.isupper() for c in letters):
        return "X" if len(letters) == 1 else "UPPER"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "Title"
    return "miXed"


@lru_cache(maxsize=1 << 16)
def shape_id(word: str) -> int:
    """The index of the word's shape in :data:`SHAPES` (cached: words repeat)."""
    return SHAPE_INDEX[word_shape(word)]
