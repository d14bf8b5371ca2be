"""Cutting raw post text into the words the datasets use, with character offsets.

Both datasets were tokenised like NLTK's TweetTokenizer. Twitter-2015 keeps ``@user`` and
``#tag`` whole; Twitter-2017 splits the ``@`` / ``#`` off the name. The tokenizer's regular
expression is used directly (not ``tokenize()``, which rewrites HTML entities) so that every
word keeps its exact character offsets in the original text.

Offsets count Unicode code points (Python string indices), not UTF-16 units or bytes.

The expression backtracks on some inputs (its HTML-tag branch scans ahead from every ``<``: a post
of "<-" repeated 30,000 times takes minutes, and NLTK stops it after 5 s with a TimeoutError). So a
text longer than :data:`PIECE_CHARS` is cut at whitespace into pieces of at most that many
characters, each tokenized on its own, which bounds the work per character. No word spans
whitespace except a spaced ellipsis (". . ."), which is never cut; only a run of more than
:data:`PIECE_CHARS` characters without whitespace is cut inside (into words of that length).
A time-out that still happens raises :class:`hamner.errors.TextError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from hamner.errors import TextError

STYLES = ("twitter2015", "twitter2017")
PIECE_CHARS = 500  # longest text given to the regular expression at once


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offsets into the original text: text[start:end] == self.text
    end: int


@lru_cache(maxsize=1)
def _word_re():  # type: ignore[no-untyped-def]
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=True).WORD_RE


def load_word_tokenizer() -> None:
    """Import and compile the word tokenizer now (importing nltk takes 1-2 s): a tagger does it with
    its model, so that its first post does not wait for it."""
    _word_re()


def _cuttable(text: str, k: int) -> bool:
    """True before a line break, or before the first space after a character other than a dot: a
    spaced ellipsis (". . .") only joins dots across spaces and tabs, and no other word spans whitespace."""
    c = text[k]
    return c in "\r\n" or (c.isspace() and not text[k - 1].isspace() and text[k - 1] != ".")


def _pieces(text: str, limit: int = PIECE_CHARS) -> Iterator[tuple[int, str]]:
    """(offset, piece) covering ``text``: pieces of at most ``limit`` characters, cut where
    :func:`_cuttable` allows (no word, spaced ellipses included, is cut)."""
    pos = 0
    while len(text) - pos > limit:
        cut = pos + limit
        k = cut
        while k > pos and not _cuttable(text, k):
            k -= 1
        if k > pos:
            cut = k
        yield pos, text[pos:cut]
        pos = cut
    yield pos, text[pos:]


def tokenize(text: str, style: str = "twitter2017") -> list[Token]:
    """Words of ``text`` with offsets, cut the way the ``style`` dataset was cut."""
    if style not in STYLES:
        raise ValueError(f"tokenizer style must be one of {STYLES}, got {style!r}")
    out: list[Token] = []
    word_re = _word_re()
    for offset, piece in _pieces(text):
        try:
            matches = list(word_re.finditer(piece))
        except TimeoutError:
            raise TextError(
                None,
                f"the word tokenizer timed out on the {len(piece)} characters at offset {offset} (a pathological text)",
            ) from None
        for m in matches:
            word, start = m.group(), m.start() + offset
            if style == "twitter2017" and len(word) > 1 and word[0] in "@#" and word[1] not in "@#":
                out.append(Token(word[0], start, start + 1))
                out.append(Token(word[1:], start + 1, start + len(word)))
            else:
                out.append(Token(word, start, start + len(word)))
    return out


def utf16_offsets(text: str) -> list[int] | None:
    """For each code-point offset 0..len(text), the same place in UTF-16 code units (what JavaScript's
    String indices count: a character past U+FFFF, e.g. most emoji, is two units); None when the
    two agree everywhere (no such character)."""
    if text.isascii() or all(ord(c) <= 0xFFFF for c in text):
        return None
    out, units = [0], 0
    for c in text:
        units += 2 if ord(c) > 0xFFFF else 1
        out.append(units)
    return out
