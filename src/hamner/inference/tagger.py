"""Tagging new posts: raw text in, entities with types and character offsets out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hamner.data.labels import spans_from_bio
from hamner.data.tokenize import Token, tokenize
from hamner.models.tagger import TextTagger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int  # character offsets into the post's text
    end: int


@dataclass
class TaggedPost:
    text: str
    entities: list[Entity]
    tokens: list[Token] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    words_past_limit: int = 0  # trailing words the encoder could not read (tagged O)

    def to_dict(self, with_tokens: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "entities": [asdict(e) for e in self.entities]}
        if with_tokens:
            out["tokens"] = [asdict(t) for t in self.tokens]
            out["tags"] = self.tags
        return out


class Tagger:
    """``Tagger.from_pretrained(dir).tag("...")``: the Python API over a trained checkpoint."""

    def __init__(self, model: TextTagger, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._warned_visual = False

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu", batch_size: int = 32) -> Tagger:
        return cls(TextTagger.from_pretrained(directory), device, batch_size)

    @property
    def style(self) -> str:
        return self.model.config.tokenizer_style

    def tag(self, text: str, image: str | Path | None = None, caption: str | None = None) -> TaggedPost:
        """Entities of one post. ``image`` and ``caption`` are used by multimodal checkpoints only."""
        return self.tag_many([text], [image], [caption])[0]

    def tag_many(
        self,
        texts: Sequence[str],
        images: Sequence[str | Path | None] | None = None,
        captions: Sequence[str | None] | None = None,
        progress: bool = False,
    ) -> list[TaggedPost]:
        """Tag several posts in batches. An empty or whitespace-only text gives no entities."""
        if isinstance(texts, str):
            raise TypeError("tag_many expects a list of texts; use tag() for one post")
        if not self._warned_visual and any(x is not None for x in list(images or []) + list(captions or [])):
            log.warning("this checkpoint is a text-only model: image and caption inputs are ignored")
            self._warned_visual = True
        tokens = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"post {i}: text must be a string, got {type(t).__name__}")
            tokens.append(tokenize(t, self.style))
        nonempty = [i for i, toks in enumerate(tokens) if toks]
        tags: dict[int, list[str]] = {}
        if nonempty:
            words = [[tok.text for tok in tokens[i]] for i in nonempty]
            for i, pred in zip(nonempty, self.model.predict(words, self.batch_size, progress, "tag"), strict=True):
                tags[i] = pred
        out = []
        for i, text in enumerate(texts):
            toks, tg = tokens[i], tags.get(i, [])
            past = sum(1 for f in self.model.word_encoder.encode([t.text for t in toks]).first_sub if f < 0) if toks else 0
            if past:
                log.warning("post %d: its last %d of %d words are past the encoder's %d sub-token limit and are tagged O", i, past, len(toks), self.model.max_subtokens)
            ents = [
                Entity(
                    text[toks[s.start].start : toks[s.end - 1].end], s.type, toks[s.start].start, toks[s.end - 1].end
                )
                for s in spans_from_bio(tg)
            ]
            out.append(TaggedPost(text, ents, toks, tg, past))
        return out
