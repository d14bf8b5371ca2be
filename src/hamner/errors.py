"""Exceptions that name the place where the input was wrong."""

from __future__ import annotations


class HamnerError(Exception):
    """Base class for every error this package raises on purpose."""


class DataFormatError(HamnerError, ValueError):
    """A data file does not follow the expected format; names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.detail = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(HamnerError, ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


class ChecksumError(HamnerError):
    """A downloaded file does not match the SHA-256 the project carries."""


class ImageError(HamnerError):
    """An image could not be used; names the image and why.

    ``kind`` is one of ``missing`` (no such file), ``unreadable`` (not an image, or a decoder
    error), ``truncated`` (the file ends early) or ``too_large`` (more pixels than the configured
    limit: a decompression bomb). The ``skip`` policy counts images by this kind.
    """

    KINDS = ("missing", "unreadable", "truncated", "too_large")

    def __init__(self, source: str, kind: str, message: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"ImageError kind must be one of {self.KINDS}, got {kind!r}")
        self.source = str(source)
        self.kind = kind
        self.detail = message
        super().__init__(f"{self.source}: {kind} image: {message}")


class CacheError(HamnerError):
    """A feature cache is missing, incomplete, corrupt or was made with other settings."""


class TextError(HamnerError, ValueError):
    """A post's text cannot be tagged: an unpaired surrogate (not valid Unicode), or the word
    tokenizer gave up on it. ``index`` is the post's place in the list given to the tagger, when
    known; ``detail`` says what is wrong without it."""

    def __init__(self, index: int | None, message: str) -> None:
        self.index = index
        self.detail = message
        super().__init__(f"post {index}: {message}" if index is not None else message)


class PostTooLong(TextError):
    """A post has more words than the tagger's ``max_words``: a bound on what one post may cost (its
    encoder windows grow with its words). ``words`` is the post's word count, ``limit`` the bound."""

    def __init__(self, index: int | None, words: int, limit: int, chars_read: int | None = None) -> None:
        # chars_read: the words were counted only that far into the text (counting stops past the limit)
        self.words, self.limit, self.chars_read = words, limit, chars_read
        why = "max_words, a bound on one post's cost; hamner tag --max-words N raises it, 0 lifts it"
        if chars_read is None:
            message = f"the post has {words:,} words, more than the limit of {limit:,} per post ({why})"
        else:
            message = f"the post has more than the limit of {limit:,} words per post ({words:,} in its first {chars_read:,} characters; {why})"
        super().__init__(index, message)


def first_surrogate(text: str) -> int | None:
    """The index of the first unpaired surrogate in ``text`` (JSON's "\\ud83d" escape makes one), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return int(exc.start)
    return None
