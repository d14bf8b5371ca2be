"""The text path: encoder -> first-sub-token word vectors (+ word channels) -> linear -> CRF.

Callers import these names from :mod:`hamner.models.tagger`, which also loads the multimodal class
(:mod:`hamner.models.hamlearning` builds on this one), so that loading a checkpoint finds either."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from hamner.data.encoding import EncodedPost, WordEncoder, collate
from hamner.data.entity_types import ENTITY_CLASSES
from hamner.data.shape import SHAPES
from hamner.errors import ConfigError
from hamner.models.card import CARD_FILE, model_card
from hamner.models.config import TaggerConfig
from hamner.models.crf import CRF
from hamner.models.encoder import encoder_from_config, load_encoder, resolve_encoder_path
from hamner.models.registry import model_class, register
from hamner.requirements import check_requirements

log = logging.getLogger(__name__)

CONFIG_FILE = "hamner_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@runtime_checkable
class PostTaggingModel(Protocol):
    """What tagging asks of a model, whatever runs it: a :class:`TextTagger` (or HamLearning), an ONNX
    export (:class:`hamner.inference.onnx.OnnxTagger`) or an ensemble of either
    (:class:`hamner.models.ensemble.EnsembleTagger`)."""

    config: TaggerConfig

    def run(
        self,
        word_lists: Sequence[Sequence[str]],
        visuals: Sequence[Any] | None = None,
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        long_posts: str = "window",
        between_batches: Callable[[], Any] | None = None,
    ) -> list[Prediction]:
        """Tags and what the model saw for every post, in input order (see :meth:`TextTagger.run`)."""
        ...


@register("text")
class TextTagger(nn.Module):
    """Word-level BIO tagger over a Hugging Face encoder; the base the multimodal model extends."""

    def __init__(self, config: TaggerConfig, encoder: Any, tokenizer: Any) -> None:
        super().__init__()
        self.config = config
        self.encoder: Any = encoder  # a transformers PreTrainedModel
        self.tokenizer = tokenizer
        # the encoder cannot read more positions than it has: cap the sub-token budget there
        positions = getattr(encoder.config, "max_position_embeddings", None)
        self.max_subtokens = min(config.max_length, int(positions)) if isinstance(positions, int) else config.max_length
        if self.max_subtokens < config.max_length:
            log.warning(
                "model.max_length %d is more than the encoder's %d positions; using %d sub-tokens",
                config.max_length, positions, self.max_subtokens,
            )
        self.word_encoder = WordEncoder.for_model(tokenizer, self.max_subtokens, config)
        hidden = int(encoder.config.hidden_size)
        self.shape_emb = nn.Embedding(len(SHAPES), config.shape_dim, padding_idx=0) if config.use_shape else None
        self.char_cnn = CharCNN(config.char_dim, config.char_filters, config.char_kernel) if config.use_chars else None
        self.entity_emb = (
            nn.Embedding(len(ENTITY_CLASSES), config.entity_type_dim, padding_idx=0) if config.use_entity_types else None
        )
        width = hidden + config.channel_width
        self.dropout = nn.Dropout(config.dropout)
        self.emission = nn.Linear(width, len(config.labels))
        self.crf = CRF(len(config.labels))

    # ----- construction -------------------------------------------------------------------------
    @staticmethod
    def class_for(config: TaggerConfig) -> type[TextTagger]:
        """The model class a config describes: HamLearning when any visual level is on (the choice
        is :func:`hamner.models.registry.model_class`'s)."""
        cls: type[TextTagger] = model_class(config)
        return cls

    @classmethod
    def from_config(cls, config: TaggerConfig) -> TextTagger:
        """A new tagger (of the class the config describes) whose encoder carries pretrained weights."""
        from transformers import AutoTokenizer

        check_requirements()
        path = resolve_encoder_path(config.encoder)
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = _drop_pooler(load_encoder(path))
        return cls.class_for(config)(config, encoder, tokenizer)

    def save_pretrained(
        self, directory: str | Path, extra: dict[str, Any] | None = None, card: str | None = None
    ) -> Path:
        """Write config, labels, encoder config, tokenizer files, safetensors weights and a model card.

        ``card`` is the model card's text (``README.md``); by default one is made from the config and
        ``extra`` (:func:`hamner.models.card.model_card`), without test scores: the trainer rewrites
        it once the test split has been scored.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "model_class": type(self).__name__,
            "tagger": self.config.to_dict(),
            **(extra or {}),
        }
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self.encoder.config.save_pretrained(out / "encoder")
        self.tokenizer.save_pretrained(out / "tokenizer")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        (out / CARD_FILE).write_text(card if card is not None else model_card(self.config, meta))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> TextTagger:
        """Rebuild a tagger from ``save_pretrained`` output alone (no pretrained encoder needed)."""
        from transformers import AutoConfig, AutoTokenizer

        check_requirements()
        d = Path(directory)
        cfg_file = d / CONFIG_FILE
        if not cfg_file.exists():
            raise ConfigError(f"{d} is not a hamner checkpoint: {CONFIG_FILE} is missing")
        meta = json.loads(cfg_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{cfg_file}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
        config = TaggerConfig.from_dict(meta["tagger"])
        enc_cfg = AutoConfig.from_pretrained(d / "encoder")
        encoder = _drop_pooler(encoder_from_config(enc_cfg))
        tokenizer = AutoTokenizer.from_pretrained(d / "tokenizer")
        model = cls.class_for(config)(config, encoder, tokenizer)
        state = load_file(str(d / WEIGHTS_FILE), device=map_location)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or wrong:
            raise ConfigError(
                f"{d / WEIGHTS_FILE}: weights do not fit the config "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]})"
            )
        model.load_state_dict(state)
        return model

    # ----- forward --------------------------------------------------------------------------------
    def word_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Word vectors from the first sub-token of each word, with the word channels appended."""
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        states = out.last_hidden_state  # shape: (batch, subtokens, hidden)
        idx = batch["first_sub"].unsqueeze(-1).expand(-1, -1, states.size(-1))  # shape: (batch, words, hidden)
        words = torch.gather(states, 1, idx)  # shape: (batch, words, hidden)
        return self.add_channels(words, batch)

    def add_channels(self, words: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Append the shape, char and entity-type channels (those switched on) to encoder word vectors."""
        parts = [words]
        if self.shape_emb is not None:
            parts.append(self.shape_emb(batch["shape_ids"]))  # shape: (batch, words, shape_dim)
        if self.char_cnn is not None:
            if "char_ids" not in batch:
                raise ConfigError("the model has a char channel (model.use_chars) but the batch has no char_ids")
            parts.append(self.char_cnn(batch["char_ids"]))  # shape: (batch, words, char_filters)
        if self.entity_emb is not None:
            if "entity_ids" not in batch:
                raise ConfigError("the model has an entity-type channel (model.use_entity_types) but the batch has no entity_ids")
            parts.append(self.entity_emb(batch["entity_ids"]))  # shape: (batch, words, entity_type_dim)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else words  # shape: (batch, words, width)

    def emissions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.dropout(self.word_features(batch))
        return self.emission(h)  # shape: (batch, words, labels)

    def fuse(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Emissions and what the model saw (nothing visual for the text path)."""
        return {"emissions": self.emissions(batch), "relevance": None, "level_weights": None, "attention": [], "levels": []}

    # ----- inputs ---------------------------------------------------------------------------------
    def encode_post(
        self, words: Sequence[str], tag_ids: list[int] | None = None, visual: Any = None,
        entity_ids: Sequence[int] | None = None, marker: str | None = None,
    ) -> EncodedPost:  # fmt: skip
        """One post as model input; the text path ignores ``visual``. ``entity_ids``: the words'
        entity-type classes when already known; ``marker``: the text before the words, None for
        the model's own ``model.marker`` (see :meth:`WordEncoder.encode`)."""
        return self.word_encoder.encode(words, tag_ids, entity_ids=entity_ids, marker=marker)

    @contextlib.contextmanager
    def marked(self, marker: str) -> Iterator[None]:
        """Within the block, the model reads posts with ``marker`` before them and saves it as its
        ``model.marker`` (the trainer's joint datasets: each one's dev split and checkpoint). Not
        for a model that other threads are tagging with."""
        before = self.config.marker
        self.config.marker = self.word_encoder.marker = marker
        try:
            yield
        finally:
            self.config.marker = self.word_encoder.marker = before

    def collate(self, posts: Sequence[EncodedPost]) -> dict[str, torch.Tensor]:
        return collate(posts, self.tokenizer.pad_token_id or 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        em = self.emissions(batch)
        out = {"emissions": em}
        if "tags" in batch:
            out["loss"] = self.crf.nll(em, batch["tags"], batch["word_mask"])
        return out

    # share of the sub-token budget that consecutive windows over a long post have in common
    WINDOW_OVERLAP = 0.25
    LONG_POSTS = ("window", "truncate")

    def plan_windows(self, words: Sequence[str], long_posts: str = "window") -> list[tuple[int, int]]:
        """The word ranges ``[start, end)`` the encoder reads of one post, each within its sub-token
        budget. A post that fits gets one range (exactly the words training reads). A longer one gets
        overlapping ranges to its end (``window``: consecutive ranges share about ``WINDOW_OVERLAP`` of
        the budget), or only the first (``truncate``: the words after it are not even split into
        sub-tokens). A word is in a range when its first sub-token fits, as in :meth:`WordEncoder.encode`."""
        if long_posts not in self.LONG_POSTS:
            raise ValueError(f"long_posts must be one of {self.LONG_POSTS}, got {long_posts!r}")
        budget = self.word_encoder.budget
        total = 0
        for w in words:  # a post that fits: one range (what the loop below finds), in one pass
            total += len(self.word_encoder.word_ids(w))
            if total > budget:
                break  # words past the budget are not split into sub-tokens here either
        else:
            return [(0, len(words))]
        overlap = max(1, int(budget * self.WINDOW_OVERLAP))
        lengths: list[int] = []  # sub-tokens of each word, computed as the ranges reach it

        def length(j: int) -> int:
            while len(lengths) <= j:
                lengths.append(len(self.word_encoder.word_ids(words[len(lengths)])))
            return lengths[j]

        n, start, ranges = len(words), 0, []
        while True:
            used, end = 0, start
            while end < n and (end == start or used + 1 <= budget):
                used += length(end)
                end += 1
            ranges.append((start, end))
            if end >= n or long_posts == "truncate":
                return ranges
            nxt, shared = end, 0
            while nxt > start + 1 and shared < overlap:  # step back over the shared words
                nxt -= 1
                shared += length(nxt)
            start = nxt

    def encode_inputs(
        self, word_lists: Sequence[Sequence[str]], visuals: Sequence[Any] | None, long_posts: str
    ) -> tuple[list[list[tuple[int, int]]], list[EncodedPost], list[int]]:
        """Each post's windows, the encoder inputs of all of them (in post order) and the order to
        batch them in (by length: less padding)."""
        if visuals is not None and len(visuals) != len(word_lists):
            raise ValueError(f"{len(word_lists)} posts but {len(visuals)} visual inputs")
        vis = list(visuals) if visuals is not None else [None] * len(word_lists)
        plans, units, ents = self.plan_inputs(word_lists, long_posts)
        encoded = [
            self.encode_post(word_lists[i][s:e], None, vis[i], ents[i][s:e] if ents is not None else None) for i, s, e in units
        ]
        order = sorted(range(len(encoded)), key=lambda u: len(encoded[u].input_ids))  # less padding
        return plans, encoded, order

    def plan_inputs(
        self, word_lists: Sequence[Sequence[str]], long_posts: str
    ) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int, int]], list[list[int]] | None]:
        """Each post's windows, the encoder inputs they make (post, first word, end word), in post
        order, and each post's entity-type classes (None without that channel)."""
        plans = [self.plan_windows(words, long_posts) for words in word_lists]
        units = [(i, s, e) for i, plan in enumerate(plans) for s, e in plan]  # one encoder input each
        # entity types of whole posts (spaCy sees a long post's full context), one slice per window
        return plans, units, self.word_encoder.entity_ids_of(word_lists)

    @torch.no_grad()
    def run(
        self,
        word_lists: Sequence[Sequence[str]],
        visuals: Sequence[Any] | None = None,
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        long_posts: str = "window",
        between_batches: Callable[[], Any] | None = None,
    ) -> list[Prediction]:
        """Tags and what the model saw for every post (in input order); ``visuals`` holds each post's
        :class:`hamner.vision.ImageFeatures` (or None) for a multimodal model. A post longer than the
        encoder's sub-token budget is read over overlapping windows (see :meth:`plan_windows` and
        :meth:`merge_windows`), or, with ``long_posts="truncate"``, only as far as the budget goes (the
        rest tagged O and counted in ``Prediction.words_not_read``). ``between_batches`` is called
        before every batch but the first, in the calling thread (the tagger re-reads its thread count
        there, so that one long call follows the machine's load)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        plans, encoded, order = self.encode_inputs(word_lists, visuals, long_posts)
        got: list[Prediction | None] = [None] * len(encoded)
        labels = self.config.labels
        for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
            if start and between_batches is not None:
                between_batches()
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in self.collate([encoded[u] for u in idx]).items()}
            parts = self.fuse(batch)
            paths = self.crf.decode(parts["emissions"], batch["word_mask"])
            # one copy to the host per batch (not one per post: each would wait for the GPU)
            emissions = parts["emissions"].float().cpu()
            rel = parts["relevance"].float().cpu().tolist() if parts["relevance"] is not None else None
            lw = parts["level_weights"].float().cpu().tolist() if parts["level_weights"] is not None else None
            attention = [a.float().cpu() for a in parts["attention"]]
            for j, (u, path) in enumerate(zip(idx, paths, strict=True)):
                got[u] = Prediction(
                    tags=[labels[t] for t in path],
                    emissions=emissions[j, : len(path)],
                    relevance=rel[j] if rel is not None else None,
                    level_weights=dict(zip(parts["levels"], lw[j], strict=True)) if lw is not None else None,
                    attention=[a[j, : len(path)] for a in attention],
                )
        self.train(was_training)
        return self.assemble(word_lists, plans, got)

    def assemble(
        self, word_lists: Sequence[Sequence[str]], plans: Sequence[list[tuple[int, int]]], got: Sequence[Prediction | None]
    ) -> list[Prediction]:
        """Each post's prediction from those of its encoder inputs (``got``, in the order of
        ``plans``): a long post's windows merged, a truncated post's unread words tagged O."""
        out: list[Prediction] = []
        k = 0
        for words, plan in zip(word_lists, plans, strict=True):
            preds = [p for p in got[k : k + len(plan)] if p is not None]
            k += len(plan)
            if len(plan) > 1:
                out.append(self.merge_windows(plan, preds))
                continue
            pred = preds[0]
            pred.words_not_read = len(words) - plan[0][1]
            pred.tags += ["O"] * (len(words) - len(pred.tags))
            out.append(pred)
        return out

    def merge_windows(self, plan: Sequence[tuple[int, int]], preds: Sequence[Prediction]) -> Prediction:
        """One prediction over a long post from its windows' (``plan``'s) predictions. Each word's
        emissions (and attention maps) come from the window where it has the most context, the fewer
        of its words to the left and to the right being the larger (the earlier window on a tie), and
        the CRF then decodes the whole post at once. ``relevance`` and ``level_weights`` are those of
        the first window, the post's beginning: what a short post reports, and what truncation read."""
        n = plan[-1][1]
        best, source = [-1] * n, [0] * n
        for w, (s, e) in enumerate(plan):
            for j in range(s, e):
                context = min(j - s, e - 1 - j)
                if context > best[j]:
                    best[j], source[j] = context, w
        rows = [(source[j], j - plan[source[j]][0]) for j in range(n)]  # (window, word in it) of each word
        emissions = torch.stack([preds[w].emissions[i] for w, i in rows])  # shape: (words, labels)
        path = self.decode_one(emissions)
        first = preds[0]
        return Prediction(
            tags=[self.config.labels[t] for t in path],
            emissions=emissions,
            relevance=first.relevance,
            level_weights=first.level_weights,
            attention=[torch.stack([preds[w].attention[it][i] for w, i in rows]) for it in range(len(first.attention))],
            windows=len(plan),
        )

    def decode_one(self, emissions: torch.Tensor) -> list[int]:
        """The CRF's best tag ids for one post's (words, labels) emissions."""
        crf_device = next(self.crf.parameters()).device
        n = emissions.size(0)
        return self.crf.decode(emissions[None].to(crf_device), torch.ones(1, n, dtype=torch.bool, device=crf_device))[0]

    def predict(
        self,
        word_lists: Sequence[Sequence[str]],
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        visuals: Sequence[Any] | None = None,
    ) -> list[list[str]]:
        """BIO tags for every word of every post (same lengths as the inputs), in input order."""
        return [p.tags for p in self.run(word_lists, visuals, batch_size, progress, desc)]


class CharCNN(nn.Module):
    """Byte embedding -> one 1-D convolution -> max over the word's bytes: a word vector of
    ``filters`` numbers from its characters. Padding bytes (id 0) never win the max; a word with no
    bytes gets zeros."""

    def __init__(self, dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(257, dim, padding_idx=0)  # 256 byte values + padding
        self.conv = nn.Conv1d(dim, filters, kernel, padding=kernel // 2)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        b, w, c = char_ids.shape  # (batch, words, bytes)
        x = self.emb(char_ids.reshape(b * w, c)).transpose(1, 2)  # shape: (batch*words, dim, bytes)
        y = torch.tanh(self.conv(x))  # shape: (batch*words, filters, bytes)
        keep = (char_ids.reshape(b * w, 1, c) > 0)
        y = y.masked_fill(~keep, -2.0).amax(-1)  # tanh > -1, so a real byte always beats padding
        y = y * keep.any(-1).to(y.dtype)  # no bytes at all: zeros
        return y.reshape(b, w, -1)


@dataclass
class Prediction:
    """One post's tags with what the model saw. ``emissions`` cover the words the encoder read;
    ``relevance`` (r) and ``level_weights`` are None for the text path; ``attention`` holds one
    (words, 1 + visual tokens) map per iteration (the first key is the null token)."""

    tags: list[str]
    emissions: torch.Tensor
    relevance: float | None = None
    level_weights: dict[str, float] | None = None
    attention: list[torch.Tensor] = field(default_factory=list)
    windows: int = 1  # encoder inputs the post was read in (more than one: a post past the budget)
    words_not_read: int = 0  # trailing words past the budget, tagged O (long_posts="truncate" only)


def _drop_pooler(encoder: Any) -> Any:
    """Remove the sentence pooler: unused by a tagger, and unused parameters break DDP."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder
