"""BIO tag sets, dataset label maps and conversion between tags and spans."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

#: The four entity types every model of this package predicts.
ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")

#: Twitter-2015 calls the fourth type OTHER; Twitter-2017 calls it MISC. Both mean the same.
DEFAULT_TYPE_MAP: dict[str, str] = {"PER": "PER", "LOC": "LOC", "ORG": "ORG", "MISC": "MISC", "OTHER": "MISC"}


def bio_labels(types: tuple[str, ...] | list[str] = ENTITY_TYPES) -> list[str]:
    """The tag set ``O, B-T1, I-T1, ...`` in a fixed order (index 0 is ``O``)."""
    labels = ["O"]
    for t in types:
        labels += [f"B-{t}", f"I-{t}"]
    return labels


@dataclass(frozen=True)
class Span:
    """An entity over word indices ``[start, end)``."""

    type: str
    start: int
    end: int


def spans_from_bio(tags: list[str]) -> list[Span]:
    """Entities in the conlleval (seqeval default) reading of a BIO sequence.

    An ``I-`` tag that does not continue an entity of the same type starts a new one, as
    conlleval and the published Twitter-2015 numbers count it.
    """
    spans: list[Span] = []
    cur_type: str | None = None
    cur_start = 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, typ = tag.partition("-")
        if prefix not in ("B", "I", "O") or (prefix != "O" and not typ):
            raise ValueError(f"tag {i} is {tag!r}; expected O, B-TYPE or I-TYPE")
        continues = prefix == "I" and cur_type == typ
        if cur_type is not None and not continues:
            spans.append(Span(cur_type, cur_start, i))
            cur_type = None
        if prefix == "B" or (prefix == "I" and not continues):
            cur_type, cur_start = typ, i
    return spans


def spans_from_bio_strict(tags: list[str]) -> list[Span]:
    """Entities in strict IOB2: an entity starts only at ``B-``; orphan ``I-`` tags are ignored."""
    spans: list[Span] = []
    cur_type: str | None = None
    cur_start = 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, typ = tag.partition("-")
        if cur_type is not None and not (prefix == "I" and typ == cur_type):
            spans.append(Span(cur_type, cur_start, i))
            cur_type = None
        if prefix == "B":
            cur_type, cur_start = typ, i
    return spans


def keep_types(tags: list[str], types: Collection[str]) -> tuple[list[str], Counter[str]]:
    """``tags`` with every entity of a type outside ``types`` turned into O, and those entities
    counted by type (conlleval reading): how a corpus that does not annotate a type is scored on
    its own types (a prediction of that type is neither right nor wrong there)."""
    dropped = Counter(s.type for s in spans_from_bio(tags) if s.type not in types)
    if not dropped:
        return list(tags), dropped
    return [t if t == "O" or t[2:] in types else "O" for t in tags], dropped
