"""Semantic words: what the image shows, as plain words the text encoder can read.

HamLearning's semantic level embeds words describing the image in the text encoder's space, so that
text and image semantics are aligned by construction. Sources, in this order:

- ``detector``: the detected objects' class names, most confident first, each name once;
- ``imagenet``: the backbone's top-k ImageNet classes (first synonym of each: "tabby, tabby cat" ->
  "tabby"), most probable first;
- ``caption``: a caption of the image (e.g. BLIP-2), cut into words like a tweet;
- ``ocr``: text read off the image, cut the same way.

Every word keeps its source so that the model (or a user) can tell them apart.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hamner.data.tokenize import tokenize

SOURCES = ("detector", "imagenet", "caption", "ocr")


@dataclass
class SemanticWords:
    words: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # one of SOURCES per word

    def __post_init__(self) -> None:
        if len(self.words) != len(self.sources):
            raise ValueError(f"SemanticWords: {len(self.words)} words but {len(self.sources)} sources")
        bad = sorted(set(self.sources) - set(SOURCES))
        if bad:
            raise ValueError(f"SemanticWords: unknown source(s) {bad}; expected {SOURCES}")

    def __len__(self) -> int:
        return len(self.words)

    def from_source(self, source: str) -> list[str]:
        return [w for w, s in zip(self.words, self.sources, strict=True) if s == source]

    def to_dict(self) -> dict[str, list[str]]:
        return {"words": list(self.words), "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, data: dict[str, list[str]]) -> SemanticWords:
        return cls(list(data["words"]), list(data["sources"]))


def imagenet_short_name(name: str) -> str:
    """``"tabby, tabby cat"`` -> ``"tabby"``: the first synonym of an ImageNet class line."""
    return name.split(",")[0].strip()


def _visible(word: str) -> bool:
    """False for a token made only of spaces, control or format characters (zero-width, BOM, NUL...)."""
    return any(unicodedata.category(c)[0] not in "CZ" for c in word)


def text_words(text: str | None, limit: int) -> list[str]:
    """A caption or OCR text cut into words the way tweets are (offsets dropped), at most ``limit``.

    Invisible tokens (zero-width characters, a BOM, control characters) are not words here.
    """
    if not text or not text.strip():
        return []
    return [t.text for t in tokenize(text, style="twitter2017") if _visible(t.text)][:limit]


def build_semantic_words(
    detected: Iterable[str] = (),
    imagenet: Sequence[str] = (),
    caption: str | None = None,
    ocr: str | None = None,
    *,
    max_text_words: int = 40,
) -> SemanticWords:
    """Assemble the semantic words of one image from its sources (see the module docstring).

    ``detected`` and ``imagenet`` are names ordered most confident first; repeated names appear once.
    Multi-word names ("stop sign") become several words with the same source.
    """
    words: list[str] = []
    sources: list[str] = []

    def add_names(names: Iterable[str], source: str) -> None:
        for name in dict.fromkeys(n.strip() for n in names if n.strip()):
            for w in name.split():
                words.append(w)
                sources.append(source)

    add_names(detected, "detector")
    add_names((imagenet_short_name(n) for n in imagenet), "imagenet")
    for text, source in ((caption, "caption"), (ocr, "ocr")):
        for w in text_words(text, max_text_words):
            words.append(w)
            sources.append(source)
    return SemanticWords(words, sources)
