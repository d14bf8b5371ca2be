"""Turning words into sub-token ids for the encoder, and batches into padded tensors."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hamner.data.shape import shape_id, word_shape


@dataclass
class EncodedPost:
    """One post ready for the model; ``first_sub[i]`` is -1 for a word past the length limit."""

    input_ids: list[int]
    first_sub: list[int]
    shape_ids: list[int]
    tag_ids: list[int] | None = None  # gold tag of every word (untruncated)


class WordEncoder:
    """Tokenises each word on its own and keeps the position of its first sub-token.

    Words that the tokenizer turns into nothing (whitespace-only or zero-width tokens in the
    datasets) become the unknown token, so that every word keeps a vector and a tag.
    """

    def __init__(self, tokenizer, max_length: int, url_placeholder: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.url_placeholder = url_placeholder
        # an LRU cache of word -> sub-token ids, bounded so that a long-running server does not grow
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        if tokenizer.unk_token_id is None:
            raise ValueError("the tokenizer has no unknown token; cannot represent empty words")
        # the special tokens around one segment ([CLS] ... [SEP] for BERT), read off the tokenizer
        marker = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(full)) if full[i : i + len(marker)] == marker)
        self._prefix, self._suffix = list(full[:at]), list(full[at + len(marker) :])
        self._offset = len(self._prefix)  # position of the first real sub-token
        self._budget = max_length - len(self._prefix) - len(self._suffix)

    CACHE_SIZE = 200_000  # words; the Twitter datasets have about 30 k distinct words

    def word_ids(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            self._cache.move_to_end(word)
            return ids
        text = self.url_placeholder if self.url_placeholder and word_shape(word) == "url" else word
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] or [self.tokenizer.unk_token_id]
        self._cache[word] = ids
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return ids

    def encode(self, words: Sequence[str], tag_ids: list[int] | None = None) -> EncodedPost:
        sub: list[int] = []
        first: list[int] = []
        for w in words:
            ids = self.word_ids(w)
            if len(sub) + 1 > self._budget:  # not even the first sub-token fits
                first.append(-1)
                continue
            first.append(len(sub) + self._offset)
            sub.extend(ids[: self._budget - len(sub)])
        input_ids = self._prefix + sub + self._suffix
        return EncodedPost(input_ids, first, [shape_id(w) for w in words], tag_ids)


def collate(posts: Sequence[EncodedPost], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch; word positions past a post's length have ``word_mask`` False and tag 0."""
    b = len(posts)
    t = max(len(p.input_ids) for p in posts)
    w = max(len(p.first_sub) for p in posts)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)  # shape: (batch, subtokens)
    attention_mask = torch.zeros((b, t), dtype=torch.long)
    first_sub = torch.zeros((b, w), dtype=torch.long)  # shape: (batch, words)
    word_mask = torch.zeros((b, w), dtype=torch.bool)  # True where the word has a vector
    shape_ids = torch.zeros((b, w), dtype=torch.long)
    tags = torch.zeros((b, w), dtype=torch.long)
    for i, p in enumerate(posts):
        input_ids[i, : len(p.input_ids)] = torch.tensor(p.input_ids)
        attention_mask[i, : len(p.input_ids)] = 1
        fs = torch.tensor(p.first_sub)
        first_sub[i, : len(fs)] = fs.clamp(min=0)
        word_mask[i, : len(fs)] = fs >= 0
        shape_ids[i, : len(p.shape_ids)] = torch.tensor(p.shape_ids)
        if p.tag_ids is not None:
            tags[i, : len(p.tag_ids)] = torch.tensor(p.tag_ids)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "first_sub": first_sub,
        "word_mask": word_mask,
        "shape_ids": shape_ids,
        "tags": tags,
    }
