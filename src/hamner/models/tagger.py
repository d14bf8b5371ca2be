"""The text path: encoder -> first-sub-token word vectors (+ shape channel) -> linear -> CRF."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from hamner.data.encoding import WordEncoder, collate
from hamner.data.shape import SHAPES
from hamner.errors import ConfigError
from hamner.models.config import TaggerConfig
from hamner.models.crf import CRF
from hamner.models.encoder import resolve_encoder_path

log = logging.getLogger(__name__)

CONFIG_FILE = "hamner_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


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
        self.word_encoder = WordEncoder(tokenizer, self.max_subtokens, config.url_placeholder)
        hidden = int(encoder.config.hidden_size)
        self.shape_emb = nn.Embedding(len(SHAPES), config.shape_dim, padding_idx=0) if config.use_shape else None
        width = hidden + (config.shape_dim if config.use_shape else 0)
        self.dropout = nn.Dropout(config.dropout)
        self.emission = nn.Linear(width, len(config.labels))
        self.crf = CRF(len(config.labels))

    # ----- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: TaggerConfig) -> TextTagger:
        """A new tagger whose encoder carries pretrained weights from ``config.encoder``."""
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder_path(config.encoder)
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = _drop_pooler(AutoModel.from_pretrained(path))
        return cls(config, encoder, tokenizer)

    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write config, labels, encoder config, tokenizer files and safetensors weights."""
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
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> TextTagger:
        """Rebuild a tagger from ``save_pretrained`` output alone (no pretrained encoder needed)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        d = Path(directory)
        cfg_file = d / CONFIG_FILE
        if not cfg_file.exists():
            raise ConfigError(f"{d} is not a hamner checkpoint: {CONFIG_FILE} is missing")
        meta = json.loads(cfg_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{cfg_file}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
        config = TaggerConfig.from_dict(meta["tagger"])
        enc_cfg = AutoConfig.from_pretrained(d / "encoder")
        encoder = _drop_pooler(AutoModel.from_config(enc_cfg))
        tokenizer = AutoTokenizer.from_pretrained(d / "tokenizer")
        model = cls(config, encoder, tokenizer)
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
        """Word vectors from the first sub-token of each word, with the shape channel appended."""
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        states = out.last_hidden_state  # shape: (batch, subtokens, hidden)
        idx = batch["first_sub"].unsqueeze(-1).expand(-1, -1, states.size(-1))  # shape: (batch, words, hidden)
        words = torch.gather(states, 1, idx)  # shape: (batch, words, hidden)
        if self.shape_emb is not None:
            words = torch.cat([words, self.shape_emb(batch["shape_ids"])], dim=-1)  # shape: (batch, words, width)
        return words

    def emissions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.dropout(self.word_features(batch))
        return self.emission(h)  # shape: (batch, words, labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        em = self.emissions(batch)
        out = {"emissions": em}
        if "tags" in batch:
            out["loss"] = self.crf.nll(em, batch["tags"], batch["word_mask"])
        return out

    @torch.no_grad()
    def predict_tags(self, batch: dict[str, torch.Tensor], lengths: list[int]) -> list[list[str]]:
        """BIO tags for every word; words past the encoder limit get ``O`` (they still count in scoring)."""
        em = self.emissions(batch)
        paths = self.crf.decode(em, batch["word_mask"])
        labels = self.config.labels
        return [[labels[t] for t in path] + ["O"] * (n - len(path)) for path, n in zip(paths, lengths, strict=True)]

    @torch.no_grad()
    def predict(
        self, word_lists: Sequence[Sequence[str]], batch_size: int = 64, progress: bool = False, desc: str = "predict"
    ) -> list[list[str]]:
        """BIO tags for every word of every post (same lengths as the inputs), in input order."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        encoded = [self.word_encoder.encode(words) for words in word_lists]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # less padding
        out: list[list[str]] = [[] for _ in encoded]
        pad = self.tokenizer.pad_token_id or 0
        for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], pad).items()}
            for i, tags in zip(idx, self.predict_tags(batch, [len(word_lists[i]) for i in idx]), strict=True):
                out[i] = tags
        self.train(was_training)
        return out


def _drop_pooler(encoder: Any) -> Any:
    """Remove the sentence pooler: unused by a tagger, and unused parameters break DDP."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder
