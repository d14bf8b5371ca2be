"""HamLearning: the text path plus hierarchical visual levels, relevance measuring and iterative
cross-modal attention (see docs/method.md for what is the paper's and what is this project's design).

Stage 1 (intra-modality): word vectors come from the text path (:class:`TextTagger`). The visual
levels are sequences at the model width ``d`` (the word vector width):

- global: the backbone grid's ``h*w`` cells, linear to ``d`` plus learned row and column embeddings;
- objects: region vectors, linear to ``d`` plus an embedding of the normalised box, then one
  relation-aware self-attention layer whose per-head bias comes from each pair's geometry (spatial);
- semantic: words describing the image, read by the text encoder, either as a sequence of their
  own, as a second segment of the post's encoder input, or both.

Stage 2 (relevance): ``t`` (attention-pooled words: a plain mean drowns the few words an image can
confirm) and attention-pooled level summaries give
``r = sigmoid(MLP([t; v; t*v; |t-v|]))`` and level weights ``a = softmax(W[t; g; o; s])`` over the
levels the post has. The fused visual sequence is ``[a_l * r * level_l ...]`` plus a learned null
token.

Stage 3 (iterations): ``L`` times, words attend to the visual sequence and (except after the last
iteration, whose result nothing reads) the visual sequence attends to the words. A word-level gate
mixes the text-path vector ``T0`` with the fused one: ``H = T0 + r * g * (T_L - T0)``,
``g = sigmoid(W[T0; T_L])``. A post with no visual input has ``r = 0`` and gets ``H = T0`` exactly:
the text path's emissions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hamner.data.encoding import EncodedPost, collate
from hamner.errors import ConfigError, DataFormatError
from hamner.models.config import TaggerConfig
from hamner.models.crf import CRF, marginal_kl
from hamner.models.registry import register
from hamner.models.text import TextTagger

LEVELS = ("global", "objects", "semantic")
BOX_FEATURES = 7  # x1, y1, x2, y2, w, h, area
GEOMETRY_FEATURES = 5


def _masked_fill_min(scores: Tensor, keep: Tensor) -> Tensor:
    """Mask with the dtype's lowest value (not -inf), so that a row with no key stays finite."""
    return scores.masked_fill(~keep, torch.finfo(scores.dtype).min)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * d, d))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class RelationSelfAttention(nn.Module):
    """Self-attention over objects; with ``spatial`` each head adds a bias learned from the pair's
    geometry (5 numbers) and direction bin: the object's vector then carries its spatial context."""

    def __init__(self, d: int, heads: int, ffn_mult: int, dropout: float, spatial: bool, direction_bins: int) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = FeedForward(d, ffn_mult, dropout)
        self.drop = nn.Dropout(dropout)
        self.spatial = spatial
        if spatial:
            self.direction = nn.Embedding(direction_bins, 16)
            self.geometry = nn.Sequential(nn.Linear(GEOMETRY_FEATURES + 16, 32), nn.GELU(), nn.Linear(32, heads))

    def relation_bias(self, geometry: Tensor, direction: Tensor) -> Tensor:
        feats = torch.cat([geometry, self.direction(direction)], dim=-1)  # shape: (batch, k, k, 5 + 16)
        return self.geometry(feats).permute(0, 3, 1, 2)  # type: ignore[no-any-return]  # shape: (batch, heads, k, k)

    def forward(self, x: Tensor, mask: Tensor, geometry: Tensor | None = None, direction: Tensor | None = None) -> Tensor:
        b, k, d = x.shape
        q, key, v = self.qkv(x).view(b, k, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)  # each (batch, heads, k, dh)
        scores = q @ key.transpose(-1, -2) / math.sqrt(self.dh)  # shape: (batch, heads, k, k)
        if self.spatial:
            if geometry is None or direction is None:
                raise ValueError("spatial attention needs the pair geometry and direction")
            scores = scores + self.relation_bias(geometry, direction)
        attn = _masked_fill_min(scores, mask[:, None, None, :]).softmax(-1)
        ctx = (self.drop(attn) @ v).transpose(1, 2).reshape(b, k, d)
        x = self.norm1(x + self.drop(self.out(ctx)))
        x = self.norm2(x + self.drop(self.ffn(x)))
        return x * mask[..., None]


def keys_to_keep(memory_mask: Tensor) -> Tensor:
    """The keys a cross-attention row attends to: its unmasked ones, and position 0 for a row with no
    key at all (its result is gated off). Written without an in-place ``|=`` so that the ONNX
    exporter can trace it."""
    return torch.cat([memory_mask[:, :1] | ~memory_mask.any(1, keepdim=True), memory_mask[:, 1:]], dim=1)


class CrossBlock(nn.Module):
    """Multi-head attention from ``query`` to ``memory`` plus a feed-forward, residual and LayerNorm."""

    def __init__(self, d: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = FeedForward(d, ffn_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
        keep = keys_to_keep(memory_mask)
        ctx, weights = self.attn(query, memory, memory, key_padding_mask=~keep, need_weights=True, average_attn_weights=True)
        x = self.norm1(query + self.drop(ctx))
        x = self.norm2(x + self.drop(self.ffn(x)))
        return x, weights  # weights shape: (batch, queries, keys), averaged over heads


class AttentionPool(nn.Module):
    """A learned-query summary of a masked sequence; zeros for a row with nothing in it."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Linear(d, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        w = _masked_fill_min(self.score(x).squeeze(-1), mask).softmax(-1)  # shape: (batch, length)
        return (w[..., None] * x).sum(1) * mask.any(1, keepdim=True)


@register("multimodal")
class HamLearningTagger(TextTagger):
    """The multimodal tagger; every part is a switch of :class:`TaggerConfig`."""

    def __init__(self, config: TaggerConfig, encoder: Any, tokenizer: Any) -> None:
        super().__init__(config, encoder, tokenizer)
        c = config
        hidden = int(encoder.config.hidden_size)
        d = self.width = hidden + c.channel_width
        # the image words' sub-token budget: what the encoder's positions leave after the post
        positions = getattr(encoder.config, "max_position_embeddings", None)
        room = (int(positions) - self.max_subtokens - self.word_encoder.pair_overhead) if isinstance(positions, int) else c.max_semantic_subtokens
        self.semantic_budget = max(0, min(c.max_semantic_subtokens, room))
        self.levels: list[str] = []
        self._negatives: Tensor | None = None  # see matching_loss; not part of the checkpoint
        if not c.fuses:
            return
        if d % c.num_heads:
            raise ConfigError(f"model.num_heads={c.num_heads} does not divide the model width {d} (encoder {hidden} + word channels {d - hidden})")
        if c.use_global:
            self.levels.append("global")
            self.grid_proj = nn.Linear(c.visual_channels, d)
            self.grid_row = nn.Embedding(c.max_grid_side, d)
            self.grid_col = nn.Embedding(c.max_grid_side, d)
            self.grid_norm = nn.LayerNorm(d)
        if c.use_objects:
            self.levels.append("objects")
            self.obj_proj = nn.Linear(c.visual_channels, d)
            self.box_proj = nn.Linear(BOX_FEATURES, d)
            self.obj_norm = nn.LayerNorm(d)
            self.obj_attn = RelationSelfAttention(d, c.num_heads, c.ffn_mult, c.fusion_dropout, c.use_spatial, c.direction_bins)
        if c.semantic_sequence:
            self.levels.append("semantic")
            self.sem_proj = nn.Linear(hidden, d)
            self.sem_norm = nn.LayerNorm(d)
        n = len(self.levels)
        self.pools = nn.ModuleDict({lvl: AttentionPool(d) for lvl in self.levels})
        self.text_pool = AttentionPool(d)
        if c.use_relevance:
            self.relevance = nn.Sequential(
                nn.Linear(4 * d, d), nn.GELU(), nn.Dropout(c.fusion_dropout), nn.Linear(d, 1)
            )
            self.rel_norm_t, self.rel_norm_v = nn.LayerNorm(d), nn.LayerNorm(d)
            self.rel_proj_t, self.rel_proj_v = nn.Linear(d, d // 2), nn.Linear(d, d // 2)
        self.level_scorer = nn.Linear((1 + n) * d, n)
        self.null_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.t2v = nn.ModuleList(CrossBlock(d, c.num_heads, c.ffn_mult, c.fusion_dropout) for _ in range(c.num_iterations))
        self.v2t = nn.ModuleList(CrossBlock(d, c.num_heads, c.ffn_mult, c.fusion_dropout) for _ in range(c.num_iterations - 1))
        self.gate = nn.Linear(2 * d, d)

    # ----- inputs ---------------------------------------------------------------------------------
    def encode_post(
        self, words: Sequence[str], tag_ids: list[int] | None = None, visual: Any = None,
        entity_ids: Sequence[int] | None = None, marker: str | None = None,
    ) -> EncodedPost:  # fmt: skip
        """Sub-tokens of the post (with image words as a second segment when so configured) and its
        visual features (a :class:`hamner.vision.ImageFeatures` or None); ``entity_ids`` and
        ``marker`` as for :meth:`TextTagger.encode_post`."""
        c = self.config
        sem_words = list(visual.semantic.words) if (visual is not None and c.use_semantic) else []
        if c.semantic_segment:
            post = self.word_encoder.encode(words, tag_ids, sem_words, self.semantic_budget, entity_ids, marker)
            if c.semantic_mode == "segment":
                post.sem_positions = None
        else:
            post = self.word_encoder.encode(words, tag_ids, entity_ids=entity_ids, marker=marker)
            if c.semantic_sequence and sem_words:
                post.sem_input_ids, post.sem_positions = self.word_encoder.encode_alone(sem_words, self.semantic_budget)
        post.visual = visual
        return post

    def collate(self, posts: Sequence[EncodedPost]) -> dict[str, Tensor]:
        batch = collate(posts, self.tokenizer.pad_token_id or 0)
        if self.config.fuses and self.config.uses_pixels:
            batch.update(self._collate_pixels(posts))
        return batch

    def _collate_pixels(self, posts: Sequence[EncodedPost]) -> dict[str, Tensor]:
        c = self.config
        b = len(posts)
        out: dict[str, Tensor] = {}
        feats = [p.visual if (p.visual is not None and p.visual.has_image) else None for p in posts]
        if c.use_global:
            grids = [(i, f.grid) for i, f in enumerate(feats) if f is not None and f.grid is not None]
            if grids:
                sizes = {tuple(g.shape) for _, g in grids}
                if len(sizes) > 1:
                    raise DataFormatError("feature cache", None, f"feature grids of different shapes in one batch: {sorted(sizes)} (keys {[posts[i].visual.key for i, _ in grids][:4]})")
                ch, h, w = next(iter(sizes))
                if ch != c.visual_channels:
                    raise ConfigError(f"feature grid of {posts[grids[0][0]].visual.key} has {ch} channels; the model expects model.visual_channels={c.visual_channels}")
                if max(h, w) > c.max_grid_side:
                    raise ConfigError(f"feature grid {h}x{w} is larger than model.max_grid_side={c.max_grid_side}")
                grid = torch.zeros(b, ch, h, w)
                mask = torch.zeros(b, dtype=torch.bool)
                for i, g in grids:
                    grid[i] = g.float()
                    mask[i] = True
                out["grid"], out["grid_mask"] = grid, mask
        if c.use_objects:
            ks = [f.num_objects if f is not None else 0 for f in feats]
            k = max(ks, default=0)
            if k:
                obj = torch.zeros(b, k, c.visual_channels)
                box = torch.zeros(b, k, BOX_FEATURES)
                geom = torch.zeros(b, k, k, GEOMETRY_FEATURES)
                direction = torch.zeros(b, k, k, dtype=torch.long)
                mask = torch.zeros(b, k, dtype=torch.bool)
                for i, (f, n) in enumerate(zip(feats, ks, strict=True)):
                    if f is None or n == 0:
                        continue
                    if f.object_vectors is None:
                        raise ConfigError(f"{f.key}: the feature cache has no region vectors (made without a backbone); switch model.use_objects off")
                    if f.object_vectors.shape[-1] != c.visual_channels:
                        raise ConfigError(f"{f.key}: region vectors have {f.object_vectors.shape[-1]} channels; the model expects {c.visual_channels}")
                    obj[i, :n] = f.object_vectors.float()
                    box[i, :n] = f.box_features.float()
                    geom[i, :n, :n] = f.pair_geometry.float()
                    direction[i, :n, :n] = f.pair_direction.clamp(0, c.direction_bins - 1)
                    mask[i, :n] = True
                out.update(objects=obj, boxes=box, geometry=geom, direction=direction, object_mask=mask)
        return out

    # ----- forward --------------------------------------------------------------------------------
    def _encode_text(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Word vectors ``T0`` and the encoder states of the image words (None if not used)."""
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        states = self.encoder(**kwargs).last_hidden_state  # shape: (batch, subtokens, hidden)
        words = self._gather_words(states, batch)
        sem = None
        if self.config.fuses and self.config.semantic_sequence and "sem_positions" in batch:
            source = states
            if self.config.semantic_mode == "sequence":
                source = self.encoder(input_ids=batch["sem_input_ids"], attention_mask=batch["sem_attention_mask"]).last_hidden_state
            idx = batch["sem_positions"].unsqueeze(-1).expand(-1, -1, source.size(-1))
            sem = torch.gather(source, 1, idx)  # shape: (batch, image sub-tokens, hidden)
        return words, sem

    def _gather_words(self, states: Tensor, batch: dict[str, Tensor]) -> Tensor:
        idx = batch["first_sub"].unsqueeze(-1).expand(-1, -1, states.size(-1))  # shape: (batch, words, hidden)
        return self.add_channels(torch.gather(states, 1, idx), batch)

    def word_features(self, batch: dict[str, Tensor]) -> Tensor:
        return self._encode_text(batch)[0]

    def visual_levels(self, batch: dict[str, Tensor], sem: Tensor | None) -> dict[str, tuple[Tensor, Tensor]]:
        """Each enabled level present in the batch: (sequence (batch, m, d), mask (batch, m))."""
        out: dict[str, tuple[Tensor, Tensor]] = {}
        if "global" in self.levels and "grid" in batch:
            grid = batch["grid"]
            b, _, h, w = grid.shape
            cells = self.grid_proj(grid.flatten(2).transpose(1, 2))  # shape: (batch, h*w, d)
            pos = (self.grid_row.weight[:h, None, :] + self.grid_col.weight[None, :w, :]).reshape(h * w, -1)
            out["global"] = (self.grid_norm(cells + pos), batch["grid_mask"][:, None].expand(b, h * w))
        if "objects" in self.levels and "objects" in batch:
            mask = batch["object_mask"]
            x = self.obj_norm(self.obj_proj(batch["objects"]) + self.box_proj(batch["boxes"]))
            x = self.obj_attn(x, mask, batch.get("geometry"), batch.get("direction"))
            out["objects"] = (x, mask)
        if "semantic" in self.levels and sem is not None:
            out["semantic"] = (self.sem_norm(self.sem_proj(sem)), batch["sem_mask"])
        return out

    def fuse(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        """Emissions plus what the model saw: r, level weights and the word-to-image attention maps."""
        t0, sem = self._encode_text(batch)
        word_mask = batch["word_mask"]
        b = t0.size(0)
        result: dict[str, Any] = {"relevance": None, "level_weights": None, "attention": [], "levels": list(self.levels)}
        levels = self.visual_levels(batch, sem) if self.config.fuses else {}
        if not levels:
            result["emissions"] = self.emission(self.dropout(t0))
            if self.config.fuses:
                result["relevance"] = t0.new_zeros(b)
                result["level_weights"] = t0.new_zeros(b, len(self.levels))
            return result
        names = [lvl for lvl in self.levels if lvl in levels]
        avail = torch.stack([levels[lvl][1].any(1) for lvl in names], dim=1)  # shape: (batch, present levels)
        has_visual = avail.any(1)  # shape: (batch,)
        t = self.text_pool(t0, word_mask)  # shape: (batch, d)
        summaries = {lvl: self.pools[lvl](*levels[lvl]) for lvl in names}
        all_summaries = [summaries.get(lvl, t0.new_zeros(b, self.width)) for lvl in self.levels]
        v = sum(summaries[lvl] for lvl in names) / avail.sum(1, keepdim=True).clamp(min=1)  # shape: (batch, d)
        if self.config.use_relevance and self.config.relevance_loss_weight > 0:
            # r as a text-image matching head over stopped-gradient summaries: the tagging loss would
            # pull it towards "always fuse" (saturating it), and the matching loss must not reshape
            # the words the tagger reads
            tr, vr = t.detach(), v.detach()
            logit = self.relevance_logit(tr, vr)
            if self.training:
                result["relevance_loss"] = self.matching_loss(tr, vr, logit, has_visual)
            r = torch.sigmoid(logit).detach()
        elif self.config.use_relevance:
            r = torch.sigmoid(self.relevance_logit(t, v))
        else:
            r = t0.new_ones(b)
        r = r * has_visual
        logits = self.level_scorer(torch.cat([t, *all_summaries], dim=-1))  # shape: (batch, levels)
        present = torch.zeros(b, len(self.levels), dtype=torch.bool, device=t0.device)
        for j, lvl in enumerate(names):
            present[:, self.levels.index(lvl)] = avail[:, j]
        a = _masked_fill_min(logits, present).softmax(-1) * present  # shape: (batch, levels)
        seqs = [self.null_token.expand(b, 1, -1)]
        masks = [torch.ones(b, 1, dtype=torch.bool, device=t0.device)]
        for lvl in names:
            seq, mask = levels[lvl]
            scale = (a[:, self.levels.index(lvl)] * r)[:, None, None]
            seqs.append(seq * scale)
            masks.append(mask)
        vis, vis_mask = torch.cat(seqs, 1), torch.cat(masks, 1)  # shape: (batch, 1 + visual tokens, d)
        text = t0
        for i, block in enumerate(self.t2v):
            text, attn = block(text, vis, vis_mask)
            result["attention"].append(attn)
            if i < len(self.v2t):
                vis, _ = self.v2t[i](vis, text, word_mask)
        g = torch.sigmoid(self.gate(torch.cat([t0, text], dim=-1)))
        h = t0 + (r[:, None, None] * g) * (text - t0)
        result.update(emissions=self.emission(self.dropout(h)), relevance=r, level_weights=a, gate=g)
        result["visual_spans"] = {lvl: levels[lvl][1].size(1) for lvl in names}
        return result

    def relevance_logit(self, t: Tensor, v: Tensor) -> Tensor:
        """The pre-sigmoid relevance of text summaries ``t`` to visual summaries ``v`` (both (batch, d)):
        an MLP over [t; v; t*v; |t-v|] plus a bilinear agreement of the two (standardised) summaries."""
        t, v = self.rel_norm_t(t), self.rel_norm_v(v)
        mlp = self.relevance(torch.cat([t, v, t * v, (t - v).abs()], dim=-1)).squeeze(-1)
        agree = (self.rel_proj_t(t) * self.rel_proj_v(v)).sum(-1) / math.sqrt(self.rel_proj_t.out_features)
        return mlp + agree  # type: ignore[no-any-return]

    NEGATIVE_BANK = 128  # visual summaries of recent training posts kept as negatives

    def matching_loss(self, t: Tensor, v: Tensor, logit: Tensor, has_visual: Tensor) -> Tensor:
        """Binary cross-entropy teaching r to tell each post's own visual input (positive) from
        another post's (negative). Negatives are drawn from the visual summaries of recent training
        batches (kept detached): length-bucketed batches hold similar posts, so in-batch negatives
        would be biased. Identical summaries (two posts with the same caption) are not negatives."""
        idx = has_visual.nonzero().squeeze(-1)
        bce = nn.functional.binary_cross_entropy_with_logits
        if idx.numel() == 0:
            return logit.sum() * 0.0
        pos = logit[idx]
        loss = bce(pos, torch.ones_like(pos))
        bank = self._negatives
        if bank is not None and bank.size(0) > 0 and bank.size(-1) == v.size(-1):
            pick = torch.randint(bank.size(0), (idx.numel(),), device=v.device)
            other = bank.to(v.device)[pick]
            distinct = (v[idx].detach() - other).abs().sum(-1) > 1e-6
            neg = self.relevance_logit(t[idx][distinct], other[distinct])
            if neg.numel():
                loss = (loss + bce(neg, torch.zeros_like(neg))) / 2
        fresh = v[idx].detach()
        self._negatives = fresh if bank is None else torch.cat([fresh, bank.to(fresh.device)])[: self.NEGATIVE_BANK]
        return loss

    def emissions(self, batch: dict[str, Tensor]) -> Tensor:
        return self.fuse(batch)["emissions"]  # type: ignore[no-any-return]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        parts = self.fuse(batch)
        out = {"emissions": parts["emissions"]}
        if "tags" in batch:
            out["tag_loss"] = self.crf.nll(parts["emissions"], batch["tags"], batch["word_mask"])
            out["loss"] = out["tag_loss"]
            if "relevance_loss" in parts:
                out["relevance_loss"] = parts["relevance_loss"]
                out["loss"] = out["loss"] + self.config.relevance_loss_weight * parts["relevance_loss"]
            text = {k[len(TEXT_VIEW) :]: v for k, v in batch.items() if k.startswith(TEXT_VIEW)}
            if text:  # cross-view alignment: the same posts as text alone (see TaggerConfig.cross_view_weight)
                text_em = self.fuse(text)["emissions"]
                out["text_tag_loss"] = self.crf.nll(text_em, text["tags"], text["word_mask"])
                out["cross_view_loss"] = cross_view_kl(
                    self.crf, parts["emissions"], batch["word_mask"], text_em, text["word_mask"]
                )
                out["loss"] = out["loss"] + out["text_tag_loss"] + self.config.cross_view_weight * out["cross_view_loss"]
        return out


# batch keys with this prefix hold the text-only view of the same posts (cross-view alignment)
TEXT_VIEW = "text_view."


def cross_view_kl(crf: CRF, teacher: Tensor, teacher_mask: Tensor, student: Tensor, student_mask: Tensor) -> Tensor:
    """Mean over words of KL(p_teacher || p_student) between the CRF's per-word tag marginals of two
    views of the same posts (emissions (batch, words, tags) each). The teacher gets no gradient, CRF
    included. Words are compared where both views have them (a view may truncate a long post)."""
    n = min(teacher.size(1), student.size(1))
    mask = teacher_mask[:, :n].bool() & student_mask[:, :n].bool()
    with torch.no_grad():
        log_p = crf.log_marginals(teacher.detach(), teacher_mask)[:, :n]
    log_q = crf.log_marginals(student, student_mask)[:, :n]
    return marginal_kl(log_p, log_q, mask)
