"""The optimiser and schedule: AdamW with per-part learning rates (encoder, by depth with layer-wise
decay; new layers; CRF transitions; the matching head), linear warm-up then linear decay."""

from __future__ import annotations

import re

import torch
from torch import nn

from hamner.models.tagger import TextTagger
from hamner.training.config import ExperimentConfig


def linear_warmup_decay(total_steps: int, warmup_steps: int):  # type: ignore[no-untyped-def]
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


RELEVANCE_PREFIXES = ("relevance.", "rel_")  # HamLearning's text-image matching head


LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")  # an encoder block's index in a parameter name


def encoder_depths(names: list[str]) -> dict[str, int]:
    """Each encoder parameter's distance from the top of the encoder, for layer-wise learning-rate
    decay: 0 for the top block (and parameters outside any block and the embeddings, such as a
    pooler or a final norm), k for the k-th block below it, one more than the lowest block for the
    embeddings."""
    index = {n: int(m.group(1)) for n in names if (m := LAYER_INDEX.search(n))}
    top = max(index.values(), default=-1)
    return {n: top - index[n] if n in index else (top + 1 if ".embeddings." in n else 0) for n in names}


def build_optimizer(model: TextTagger, cfg: ExperimentConfig) -> torch.optim.AdamW:
    """Parameter groups: encoder, new layers (head), CRF transitions, matching head; no decay on
    bias/norms. With ``train.lr_layer_decay`` < 1 the encoder's groups are split by depth, the top
    block first (its rate is what ``metrics.jsonl`` logs as lr_encoder)."""
    t = cfg.train
    groups: dict[str, list[nn.Parameter]] = {
        k: [] for k in ("enc", "enc_nd", "head", "head_nd", "crf", "rel", "rel_nd")
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or p.dim() == 1
        if name.startswith("crf."):
            groups["crf"].append(p)
        elif name.startswith(RELEVANCE_PREFIXES):
            groups["rel_nd" if no_decay else "rel"].append(p)
        elif name.startswith("encoder."):
            groups["enc_nd" if no_decay else "enc"].append(p)
        else:
            groups["head_nd" if no_decay else "head"].append(p)
    names = {id(p): n for n, p in model.named_parameters()}
    depth = encoder_depths([names[id(p)] for p in groups["enc"] + groups["enc_nd"]])
    levels = sorted(set(depth.values())) if t.lr_layer_decay < 1.0 else [None]
    encoder_spec = []
    for level in levels:  # without decay one level, None: every depth in the same two groups
        enc = [p for p in groups["enc"] if level is None or depth[names[id(p)]] == level]
        enc_nd = [p for p in groups["enc_nd"] if level is None or depth[names[id(p)]] == level]
        lr = t.lr_encoder * (t.lr_layer_decay**level if level is not None else 1.0)
        suffix = "" if level is None else f"_depth{level}"
        encoder_spec += [(f"encoder{suffix}", enc, lr, t.weight_decay), (f"encoder_no_decay{suffix}", enc_nd, lr, 0.0)]
    spec = [
        *encoder_spec,
        ("head", groups["head"], t.lr_head, t.weight_decay),
        ("head_no_decay", groups["head_nd"], t.lr_head, 0.0),
        ("crf", groups["crf"], t.lr_crf, 0.0),
        ("relevance", groups["rel"], t.lr_relevance if t.lr_relevance is not None else t.lr_head, t.weight_decay),
        ("relevance_no_decay", groups["rel_nd"], t.lr_relevance if t.lr_relevance is not None else t.lr_head, 0.0),
    ]
    return torch.optim.AdamW([{"name": n, "params": ps, "lr": lr, "weight_decay": wd} for n, ps, lr, wd in spec if ps])
