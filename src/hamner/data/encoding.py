"""Turning words into sub-token ids for the encoder, and batches into padded tensors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from hamner.data.entity_types import entity_type_ids
from hamner.data.shape import shape_id, word_shape
from hamner.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class EncodedPost:
    """One post ready for the model; ``first_sub[i]`` is -1 for a word past the length limit."""

    input_ids: list[int]
    first_sub: list[int]
    shape_ids: list[int]
    tag_ids: list[int] | None = None  # gold tag of every word (untruncated)
    # Multimodal extras (None for the text path). A second segment of image words makes the input
    # [CLS] words [SEP] image words [SEP]; ``token_type_ids`` then mark the segments and
    # ``sem_positions`` are the image words' sub-token positions in ``input_ids``.
    token_type_ids: list[int] | None = None
    sem_positions: list[int] | None = None
    sem_input_ids: list[int] | None = None  # the image words as a sequence of their own ([CLS] ... [SEP])
    visual: Any = None  # the post's hamner.vision.ImageFeatures (collated by the multimodal model)
    # where the image words' sub-tokens sit in ``input_ids`` (the second segment), whatever the
    # semantic mode; None without a second segment
    segment_positions: list[int] | None = None
    # every word's UTF-8 bytes + 1 (0 pads), when the model has a char channel; else None
    char_ids: list[list[int]] | None = None
    # every word's spaCy entity-type class (hamner.data.entity_types; 0 pads), when the model has
    # the entity-type channel; else None
    entity_ids: list[int] | None = None


@lru_cache(maxsize=1 << 16)
def _word_bytes(word: str, limit: int) -> tuple[int, ...]:
    raw = word.encode("utf-8", errors="surrogatepass")
    if len(raw) > limit:
        tail = limit // 2
        raw = raw[: limit - tail] + (raw[-tail:] if tail else b"")
    return tuple(map(_PLUS_ONE, raw))


_PLUS_ONE = (1).__add__


def word_bytes(word: str, limit: int) -> list[int]:
    """The word's UTF-8 bytes shifted by one (0 is padding), at most ``limit`` of them: a longer word
    keeps its first ``limit - limit // 2`` and last ``limit // 2`` bytes, so both a prefix and a
    suffix (plural, possessive, "-ville") survive. A word with no bytes gets no ids (its char vector
    is then zero)."""
    return list(_word_bytes(word, limit))


class WordEncoder:
    """Tokenises each word on its own and keeps the position of its first sub-token.

    Words that the tokenizer turns into nothing (whitespace-only or zero-width tokens in the
    datasets) become the unknown token, so that every word keeps a vector and a tag.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self, tokenizer, max_length: int, url_placeholder: str | None = None, max_word_chars: int = 0,
        entity_types: bool = False, marker: str = "",
    ) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.url_placeholder = url_placeholder
        self.max_word_chars = max_word_chars  # 0: no char ids
        self.entity_types = entity_types  # give every post its words' spaCy entity types
        self._marker_ids: dict[str, list[int]] = {}
        # the marker's sub-tokens go right after the leading special tokens of every post that does
        # not name another marker (model.marker; "" = none)
        self.marker = marker
        # word -> sub-token ids, bounded so that a long-running server does not grow (see word_ids)
        self._cache: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        if tokenizer.unk_token_id is None:
            raise ValueError("the tokenizer has no unknown token; cannot represent empty words")
        self._backend = self._fast_backend(tokenizer)
        # the special tokens around one segment ([CLS] ... [SEP] for BERT), read off the tokenizer
        marker = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(full)) if full[i : i + len(marker)] == marker)
        self._prefix, self._suffix = list(full[:at]), list(full[at + len(marker) :])
        self._offset = len(self._prefix)  # position of the first real sub-token
        self._budget = max_length - len(self._prefix) - len(self._suffix)
        # the same for a pair of segments: prefix A middle B pair_suffix (+ their token types)
        pair = tokenizer("a", "b", add_special_tokens=True)
        pair_ids = list(pair["input_ids"])
        second = tokenizer("b", add_special_tokens=False)["input_ids"]
        b_at = next(i for i in range(at + len(marker), len(pair_ids)) if pair_ids[i : i + len(second)] == second)
        self._middle = pair_ids[at + len(marker) : b_at]
        self._pair_suffix = pair_ids[b_at + len(second) :]
        types = pair.get("token_type_ids")
        self._types = (int(types[at]), int(types[b_at])) if types is not None else None
        self.pair_overhead = len(self._middle) + len(self._pair_suffix) - len(self._suffix)
        self.marker_ids()  # a marker that leaves no room for words fails here, not on the first post

    @classmethod
    def for_model(cls, tokenizer, max_length: int, config: Any) -> WordEncoder:  # type: ignore[no-untyped-def]
        """The word encoder of a model of ``config`` (a TaggerConfig): its URL placeholder, the
        per-word channels it switches on and its marker."""
        c = config
        return cls(
            tokenizer, max_length, c.url_placeholder, c.max_word_chars if c.use_chars else 0, c.use_entity_types, c.marker
        )  # fmt: skip

    def marker_ids(self, marker: str | None = None) -> list[int]:
        """The sub-tokens of ``marker`` (None: this encoder's own :attr:`marker`); none for ""."""
        text = self.marker if marker is None else marker
        if not text:
            return []
        ids = self._marker_ids.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ConfigError(f"model.marker {text!r} is no sub-token at all for this tokenizer")
            if len(ids) >= self._budget:
                raise ConfigError(
                    f"model.marker {text!r} takes {len(ids)} sub-tokens, leaving no room for words in {self.max_length}"
                )
            self._marker_ids[text] = ids
        return ids

    CACHE_SIZE = 200_000  # words; the Twitter datasets have about 30 k distinct words
    #: words on which the fast path must give the tokenizer's own ids before it is used
    PROBE_WORDS = ("Obama", "@user", "#NBA", "http://t.co/x1", "don't", "Ünïcödé", "😀", "東京", "\u200b", " ", "ｆｕｌｌ", "RT", "l0l!!!")

    @staticmethod
    def _fast_backend(tokenizer: Any) -> Any:
        """The Rust tokenizer behind a fast Hugging Face tokenizer, when calling it directly gives the
        same ids as the tokenizer (checked on :data:`PROBE_WORDS`): 2-3x less time per new word than
        the Python wrapper, which a first pass over unseen posts spends on every word. None otherwise."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not getattr(tokenizer, "is_fast", False):
            return None
        try:
            if backend.padding is not None or backend.truncation is not None:
                # the wrapper switches these off for each call; a copy of the backend without them
                # (the tokenizer itself is left as it is: it belongs to the caller)
                backend = type(backend).from_str(backend.to_str())
                backend.no_padding()
                backend.no_truncation()
            for word in WordEncoder.PROBE_WORDS:
                if backend.encode(word, add_special_tokens=False).ids != tokenizer(word, add_special_tokens=False)["input_ids"]:
                    log.debug("the tokenizer's backend disagrees with it on %r: words are encoded through the tokenizer", word)
                    return None
        except Exception:  # noqa: BLE001 - any surprise: the wrapper, which is always right
            return None
        return backend

    def _encode_word(self, text: str) -> list[int]:
        if self._backend is not None:
            return list(self._backend.encode(text, add_special_tokens=False).ids)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def word_ids(self, word: str) -> list[int]:
        """The word's sub-token ids (the unknown token for a word that gives none), cached: a dict
        read without the lock (atomic under the GIL) for a word seen before; a new word is encoded,
        then stored under the lock, which drops the older half of the words past ``CACHE_SIZE``
        (a long-running server does not grow without bound)."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        text = self.url_placeholder if self.url_placeholder and word_shape(word) == "url" else word
        ids = self._encode_word(text) or [self.tokenizer.unk_token_id]
        with self._lock:
            self._cache[word] = ids
            if len(self._cache) > self.CACHE_SIZE:
                keep = list(self._cache.items())[len(self._cache) // 2 :]  # insertion order: the newer half
                self._cache = dict(keep)
        return ids

    def subtokens(self, words: Sequence[str], limit: int) -> list[int]:
        """The sub-tokens of ``words`` one after another, cut at ``limit``."""
        out: list[int] = []
        for w in words:
            if len(out) >= limit:
                break
            out.extend(self.word_ids(w)[: limit - len(out)])
        return out

    def encode(
        self,
        words: Sequence[str],
        tag_ids: list[int] | None = None,
        second: Sequence[str] | None = None,
        second_limit: int = 0,
        entity_ids: Sequence[int] | None = None,
        marker: str | None = None,
    ) -> EncodedPost:
        """Sub-tokens of one post; ``second`` (image words, at most ``second_limit`` sub-tokens)
        becomes a second segment after the post's words. No second words: the one-segment input.
        With the entity-type channel, ``entity_ids`` are the words' classes when already known
        (:meth:`entity_ids_of` over many posts at once); without them spaCy reads this post.
        ``marker``: the text put before the words (a dataset marker); None: the encoder's own."""
        mark = self.marker_ids(marker)
        budget, offset = self._budget - len(mark), self._offset + len(mark)
        sub: list[int] = []
        first: list[int] = []
        for w in words:
            ids = self.word_ids(w)
            if len(sub) + 1 > budget:  # not even the first sub-token fits
                first.append(-1)
                continue
            first.append(len(sub) + offset)
            sub.extend(ids[: budget - len(sub)])
        prefix = self._prefix + mark
        shapes = [shape_id(w) for w in words]
        chars = [word_bytes(w, self.max_word_chars) for w in words] if self.max_word_chars else None
        ents = self.post_entity_ids(words, entity_ids)
        extra = self.subtokens(second, second_limit) if second else []
        if not extra:
            return EncodedPost(prefix + sub + self._suffix, first, shapes, tag_ids, char_ids=chars, entity_ids=ents)
        head = prefix + sub + self._middle
        input_ids = head + extra + self._pair_suffix
        types = None
        if self._types is not None:
            types = [self._types[0]] * len(head) + [self._types[1]] * (len(extra) + len(self._pair_suffix))
        positions = list(range(len(head), len(head) + len(extra)))
        return EncodedPost(
            input_ids, first, shapes, tag_ids, token_type_ids=types, sem_positions=positions,
            segment_positions=list(positions), char_ids=chars, entity_ids=ents,
        )  # fmt: skip

    def input_length(self, words: Sequence[str]) -> int:
        """``len(self.encode(words).input_ids)`` for a one-segment input, without building it."""
        total = sum(len(self.word_ids(w)) for w in words)
        mark = len(self.marker_ids())
        return len(self._prefix) + mark + min(total, self._budget - mark) + len(self._suffix)

    def entity_ids_of(self, word_lists: Sequence[Sequence[str]], progress: bool = False) -> list[list[int]] | None:
        """Every post's entity-type classes, spaCy reading the posts in batches; None without the
        channel. Pass each post's list to :meth:`encode` (a slice of it for a window of the post)."""
        return entity_type_ids(word_lists, progress) if self.entity_types else None

    def post_entity_ids(self, words: Sequence[str], given: Sequence[int] | None = None) -> list[int] | None:
        """The entity-type classes of one post's words: ``given``, else spaCy's on these words; None
        without the channel (``given`` is then ignored)."""
        if not self.entity_types:
            return None
        if given is None:
            return entity_type_ids([words])[0]
        if len(given) != len(words):
            raise ValueError(f"{len(given)} entity types for a post of {len(words)} words")
        return list(given)

    def encode_alone(self, words: Sequence[str], limit: int) -> tuple[list[int], list[int]]:
        """``words`` as a one-segment input of their own (special tokens included) and the positions
        of their sub-tokens in it; two empty lists for no words."""
        sub = self.subtokens(words, limit)
        if not sub:
            return [], []
        return self._prefix + sub + self._suffix, list(range(self._offset, self._offset + len(sub)))

    @property
    def budget(self) -> int:
        """Sub-tokens of the post's words that fit in one input (the special tokens and the
        encoder's own marker excluded)."""
        return self._budget - len(self.marker_ids())

    @property
    def num_prefix(self) -> int:
        return len(self._prefix)


def _padded(rows: Sequence[Sequence[Any]], width: int, fill: Any) -> list[list[Any]]:
    return [[*row, *([fill] * (width - len(row)))] for row in rows]


def collate(posts: Sequence[EncodedPost], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch; word positions past a post's length have ``word_mask`` False and tag 0.
    Each tensor is made from one padded list (one ``torch.tensor`` call per field, not per post)."""
    b, t = len(posts), max(len(p.input_ids) for p in posts)
    w = max(len(p.first_sub) for p in posts)
    out = {
        "input_ids": torch.tensor(
            _padded([p.input_ids for p in posts], t, pad_id), dtype=torch.long
        ),  # shape: (batch, subtokens)
        "attention_mask": torch.tensor(_padded([[1] * len(p.input_ids) for p in posts], t, 0), dtype=torch.long),
        "first_sub": torch.tensor(
            _padded([[max(f, 0) for f in p.first_sub] for p in posts], w, 0), dtype=torch.long
        ),  # shape: (batch, words)
        "word_mask": torch.tensor(
            _padded([[f >= 0 for f in p.first_sub] for p in posts], w, False), dtype=torch.bool
        ),  # True where the word has a vector
        "shape_ids": torch.tensor(_padded([p.shape_ids for p in posts], w, 0), dtype=torch.long),
        "tags": torch.tensor(_padded([p.tag_ids or [] for p in posts], w, 0), dtype=torch.long),
    }
    if any(p.char_ids is not None for p in posts):
        c = max(max((len(word) for p in posts for word in (p.char_ids or [])), default=0), 1)
        empty = [0] * c
        chars = [_padded(p.char_ids or [], c, 0) + [empty] * (w - len(p.char_ids or [])) for p in posts]
        out["char_ids"] = (
            torch.tensor(chars, dtype=torch.long) if w else torch.zeros((b, 0, c), dtype=torch.long)
        )  # shape: (batch, words, bytes)
    if any(p.entity_ids is not None for p in posts):
        out["entity_ids"] = torch.tensor(
            _padded([p.entity_ids or [] for p in posts], w, 0), dtype=torch.long
        )  # shape: (batch, words)
    if any(p.token_type_ids is not None for p in posts):
        types = torch.zeros((b, t), dtype=torch.long)
        for i, p in enumerate(posts):
            if p.token_type_ids is not None:
                types[i, : len(p.token_type_ids)] = torch.tensor(p.token_type_ids)
        out["token_type_ids"] = types
    if any(p.sem_positions for p in posts):
        s = max(len(p.sem_positions or []) for p in posts)
        pos = torch.zeros((b, s), dtype=torch.long)  # shape: (batch, image sub-tokens)
        mask = torch.zeros((b, s), dtype=torch.bool)
        for i, p in enumerate(posts):
            if p.sem_positions:
                pos[i, : len(p.sem_positions)] = torch.tensor(p.sem_positions)
                mask[i, : len(p.sem_positions)] = True
        out["sem_positions"], out["sem_mask"] = pos, mask
    if any(p.sem_input_ids for p in posts):
        s = max(len(p.sem_input_ids or []) for p in posts)
        ids = torch.full((b, s), pad_id, dtype=torch.long)
        attn = torch.zeros((b, s), dtype=torch.long)
        for i, p in enumerate(posts):
            if p.sem_input_ids:
                ids[i, : len(p.sem_input_ids)] = torch.tensor(p.sem_input_ids)
                attn[i, : len(p.sem_input_ids)] = 1
        out["sem_input_ids"], out["sem_attention_mask"] = ids, attn
    return out
