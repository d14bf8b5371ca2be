"""Cutting raw post text into the words the datasets use, with character offsets.

Both datasets were tokenised like NLTK's TweetTokenizer. Twitter-2015 keeps ``@user`` and
``#tag`` whole; Twitter-2017 splits the ``@`` / ``#`` off the name. The tokenizer's regular
expression is used directly (not ``tokenize()``, which rewrites HTML entities) so that every
word keeps its exact character offsets in the original text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

STYLES = ("twitter2015", "twitter2017")


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offsets into the original text: text[start:end] == self.text
    end: int


@lru_cache(maxsize=1)
def _word_re():  # type: ignore[no-untyped-def]
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=True).WORD_RE


def tokenize(text: str, style: str = "twitter2017") -> list[Token]:
    """Words of ``text`` with offsets, cut the way the ``style`` dataset was cut."""
    if style not in STYLES:
        raise ValueError(f"tokenizer style must be one of {STYLES}, got {style!r}")
    out: list[Token] = []
    for m in _word_re().finditer(text):
        word, start = m.group(), m.start()
        if style == "twitter2017" and len(word) > 1 and word[0] in "@#" and word[1] not in "@#":
            out.append(Token(word[0], start, start + 1))
            out.append(Token(word[1:], start + 1, m.end()))
        else:
            out.append(Token(word, start, m.end()))
    return out
