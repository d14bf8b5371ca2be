"""The post record every corpus reader gives (:mod:`hamner.data.formats`, :mod:`hamner.data.conll`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Post:
    """One post: its words, gold BIO tags (already mapped to the model's types) and image id."""

    words: list[str]
    tags: list[str]
    imgid: str | None = None
    source: str = ""  # "file:line" of the post's first line (its IMGID line), for error messages
    caption: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    id: str | None = None  # the post's id (a JSONL post's "id"; the IMGID otherwise)
    image: str | None = None  # an image path, relative to the corpus file's folder (JSONL "image")
