"""Identical and near-identical posts between two lists of posts.

Two posts are **identical** when their texts are the same once lower-cased, URLs and a leading "RT"
dropped and whitespace collapsed (a retweet of the same tweet is identical), and **near-identical**
when their word sets (words of letters and digits, URLs and "RT" dropped; both of at least 4 words)
have a Jaccard similarity of at least the threshold, identical ones included.

Used by ``scripts/dataset_overlap.py`` (the report over all six splits) and by joint training
(``data.joint``), which drops the training posts near-identical to another dataset's dev or test post.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

URL = re.compile(r"^(https?://|www\.)", re.I)
WORD = re.compile(r"^[\w]+$")
MIN_WORDS = 4  # word sets smaller than this are too short for the Jaccard test (only identity counts)


def normalised(words: Sequence[str]) -> str:
    """The text that identity compares: lower-cased, URLs and a leading RT dropped."""
    toks = [w.lower() for w in words if not URL.match(w)]
    if toks and toks[0] == "rt":
        toks = toks[1:]
    return " ".join(toks)


def word_set(words: Sequence[str]) -> frozenset[str]:
    """The words that the Jaccard test compares."""
    return frozenset(w.lower() for w in words if not URL.match(w) and WORD.match(w) and w.lower() != "rt")


def relative_source(source: str) -> str:
    """``twitter2015/test.txt:123`` from a reader's ``/data/root/twitter2015/test.txt:123``: where a
    post is, without the machine's paths (and without its text)."""
    path, _, line = source.rpartition(":")
    parts = path.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}"


@dataclass(frozen=True)
class Match:
    """Post ``query`` of the first list is identical or near-identical to post ``other`` of the second."""

    query: int
    other: int
    identical: bool
    jaccard: float


def near_duplicates(
    queries: Sequence[Sequence[str]],
    others: Sequence[Sequence[str]],
    threshold: float = 0.8,
    same_list: bool = False,
    document_frequency: Counter[str] | None = None,
) -> list[Match | None]:
    """For each query post (a list of words), its closest identical or near-identical post among
    ``others``, or None. ``same_list``: the two lists are the same posts (a post never matches itself).

    Candidates are the posts sharing one of the query's rarest words (an inverted index): a set with
    Jaccard >= t shares at least one of any ceil((1 - t) * |s|) + 1 of its words, so the search stays
    exact while comparing few pairs. ``document_frequency`` ranks rarity (default: over both lists).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    norm_o = [normalised(w) for w in others]
    sets_q = [word_set(w) for w in queries]
    sets_o = [word_set(w) for w in others]
    df = document_frequency
    if df is None:
        df = Counter(w for s in (*sets_q, *sets_o) for w in s)
    exact_index: dict[str, list[int]] = defaultdict(list)
    for j, text in enumerate(norm_o):
        exact_index[text].append(j)
    inverted: dict[str, list[int]] = defaultdict(list)
    for j, s in enumerate(sets_o):
        for w in s:
            inverted[w].append(j)
    out: list[Match | None] = []
    for i, (words, s) in enumerate(zip(queries, sets_q, strict=True)):
        same = [j for j in exact_index.get(normalised(words), []) if not (same_list and j == i)]
        if same:
            out.append(Match(i, same[0], True, 1.0))
            continue
        best, best_j = 0.0, -1
        if len(s) >= MIN_WORDS:
            rare = sorted(s, key=lambda w: (df[w], w))[: max(3, int(len(s) * (1 - threshold)) + 1)]
            for j in {j for w in rare for j in inverted.get(w, [])}:
                t = sets_o[j]
                if (same_list and j == i) or len(t) < MIN_WORDS:
                    continue
                jac = len(s & t) / len(s | t)
                if jac > best or (jac == best and j < best_j):
                    best, best_j = jac, j
        out.append(Match(i, best_j, False, best) if best >= threshold else None)
    return out
