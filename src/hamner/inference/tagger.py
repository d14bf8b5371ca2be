"""Tagging new posts: raw text in, entities with types and character offsets out."""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hamner.data.labels import spans_from_bio
from hamner.data.tokenize import PIECE_CHARS, Token, _pieces, load_word_tokenizer, tokenize, utf16_offsets
from hamner.errors import ConfigError, ImageError, PostTooLong, TextError, first_surrogate
from hamner.inference import DEFAULT_MAX_WORDS
from hamner.inference.onnx import OnnxTagger, is_exported, is_exported_model
from hamner.models.config import TaggerConfig
from hamner.models.tagger import Prediction, TextTagger
from hamner.precision import autocast, resolve_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int  # offsets into the post's text in Unicode code points (Python indices): text[start:end]
    end: int


OFFSET_UNITS = ("codepoints", "utf16")


def _invisible(c: str) -> bool:
    """A character with no glyph: whitespace, a control or a format character (U+200B zero width
    space, U+2060 word joiner, U+FEFF, soft hyphen...): the tokenizer makes them words of their own."""
    return c.isspace() or unicodedata.category(c) in ("Cc", "Cf")


def entity_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without invisible characters at either end (an entity's tokens may begin or end
    with a zero-width one); an empty span when the entity is nothing but them."""
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return start, end


@dataclass
class TaggedPost:
    text: str
    entities: list[Entity]
    tokens: list[Token] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    words_past_limit: int = 0  # trailing words the encoder did not read (tagged O): long_posts="truncate" only
    windows: int = 1  # encoder inputs the post was read in: more than 1 for a post longer than one input
    # What a HamLearning model saw (None / empty for a text-only model): text-image relevance r,
    # the weights of the visual levels, and the post's visual inputs (ImageFeatures: status,
    # detected objects, image words).
    relevance: float | None = None
    level_weights: dict[str, float] | None = None
    features: Any = None
    emissions: torch.Tensor | None = None  # (words read, labels): the CRF's input, for checks and analysis

    def visual_summary(self) -> dict[str, Any] | None:
        """The post's visual inputs as plain data: image status, objects with boxes, image words."""
        f = self.features
        if f is None:
            return None
        return {
            "status": f.status,
            "objects": [
                {"label": label, "score": round(float(score), 4), "box": [round(float(x), 4) for x in box]}
                for label, score, box in zip(f.object_labels, f.object_scores.tolist(), f.boxes.tolist(), strict=True)
            ],
            "image_words": f.semantic.to_dict(),
        }

    def to_dict(self, with_tokens: bool = False, offsets: str = "codepoints") -> dict[str, Any]:
        """Plain data; ``offsets`` is the unit of every start/end: ``codepoints`` (Python string
        indices) or ``utf16`` (JavaScript string indices). A post read in several windows says how
        many (``windows``); one truncated says how many trailing words were not read (``words_not_read``)."""
        if offsets not in OFFSET_UNITS:
            raise ValueError(f"offsets must be one of {OFFSET_UNITS}, got {offsets!r}")
        table = utf16_offsets(self.text) if offsets == "utf16" else None

        def at(i: int) -> int:
            return table[i] if table is not None else i

        ents = [{"text": e.text, "type": e.type, "start": at(e.start), "end": at(e.end)} for e in self.entities]
        out: dict[str, Any] = {"text": self.text, "entities": ents}
        if self.windows > 1:
            out["windows"] = self.windows
        if self.words_past_limit:
            out["words_not_read"] = self.words_past_limit
        if self.features is not None or self.relevance is not None:
            out["relevance"] = self.relevance
            out["level_weights"] = self.level_weights
            out["visual"] = self.visual_summary()
        if with_tokens:
            out["tokens"] = [{"text": t.text, "start": at(t.start), "end": at(t.end)} for t in self.tokens]
            out["tags"] = self.tags
        return out


def load_model(directory: str | Path | Sequence[str | Path], threads: int | None = None) -> Any:
    """A checkpoint's model (``hamner export`` output: an ONNX Runtime model, whose sessions use
    ``threads`` threads, by default one per core), or an ensemble of several checkpoints (a list of
    two or more, all PyTorch or all exported)."""
    from hamner.inference.onnx import load_model as load_one

    dirs = [directory] if isinstance(directory, (str, Path)) else list(directory)
    if len(dirs) == 1:
        return load_one(dirs[0], threads)
    from hamner.models.ensemble import EnsembleTagger

    # exported members' sessions take turns: none may spin while another runs
    members = [OnnxTagger(d, threads, spinning=False) if is_exported(d) else TextTagger.from_pretrained(d) for d in dirs]
    return EnsembleTagger(members, [str(d) for d in dirs])


def vision_config_for(config: TaggerConfig, on_bad_image: str = "error") -> Any:
    """The extractor settings a multimodal checkpoint's config records (a VisionConfig)."""
    from hamner.vision.config import VisionConfig

    if not config.multimodal or config.vision is None:
        raise ConfigError("this checkpoint records no image extractor settings (a text-only model?)")
    return VisionConfig(**{**config.vision, "on_bad_image": on_bad_image})


def extractor_for(config: TaggerConfig, on_bad_image: str = "error") -> Any:
    """The image extractor of a multimodal checkpoint's training cache (settings and model files),
    without loading the model (``hamner bulk`` runs it in processes of its own); a different weights
    file (another fingerprint) is refused: its features would not match."""
    from hamner.vision.extractor import VisualExtractor

    extractor = VisualExtractor(vision_config_for(config, on_bad_image))
    check_extractor_fingerprint(extractor.fingerprint, config)
    return extractor


def build_extractor(config: TaggerConfig, onnx_backbone: Path | None = None, on_bad_image: str = "error", threads: int | None = None) -> Any:
    """A multimodal checkpoint's image extractor: its recorded settings and model files, with the
    image backbone on ONNX Runtime when ``onnx_backbone`` (an exported model's) is given, checked
    against the PyTorch backbone it was made from (the same weights file)."""
    from hamner.vision.extractor import VisualExtractor, fingerprint_of

    cfg = vision_config_for(config, on_bad_image)
    if onnx_backbone is None or not cfg.backbone:
        return extractor_for(config, on_bad_image)
    from hamner.vision.backbones import build_backbone
    from hamner.vision.onnx_backbone import OnnxBackbone

    backbone = OnnxBackbone(build_backbone(cfg.backbone, cfg.backbone_weights, cfg.backbone_options), onnx_backbone, threads)
    extractor = VisualExtractor(cfg, backbone=backbone)
    check_extractor_fingerprint(fingerprint_of({**extractor.identity(), "backbone": backbone.source}), config)
    return extractor


def check_extractor_fingerprint(have: str, config: TaggerConfig) -> None:
    """Refuse image models other than those the checkpoint was trained with (their features differ)."""
    want = config.vision_fingerprint
    if want is not None and have != want:
        raise ConfigError(
            f"the image extractor here (fingerprint {have[:12]}) differs from the one the model was "
            f"trained with ({want[:12]}): other backbone/detector weights or settings. Install the same model files."
        )


class Tagger:
    """``Tagger.from_pretrained(dir).tag("...")``: the Python API over a trained checkpoint."""

    def __init__(
        self,
        model: TextTagger | OnnxTagger,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        extractor: Any = None,
        on_bad_image: str = "error",
        precision: str = "auto",
        long_posts: str = "window",
        image_workers: int = 1,
        threads: int | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        max_image_pixels: int | None = None,
    ) -> None:
        for name, value, least in (("batch_size", batch_size, 1), ("max_words", max_words, 0), ("max_image_pixels", max_image_pixels, 1)):
            if value is None and name == "max_image_pixels":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
        if long_posts not in TextTagger.LONG_POSTS:
            raise ConfigError(f"long_posts must be one of {TextTagger.LONG_POSTS}, got {long_posts!r}")
        if isinstance(image_workers, bool) or not isinstance(image_workers, int) or image_workers < 1:
            raise ConfigError(f"image_workers must be a positive integer, got {image_workers!r}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        # auto: bf16 autocast on a GPU that has it, fp32 on a CPU (see hamner.precision)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self._warned_visual = False
        self._extractor = extractor
        # several threads may share this tagger: the extractor is built once, by the first that needs it
        self._extractor_lock = threading.Lock()
        self.on_bad_image = on_bad_image
        self.long_posts = long_posts
        # a multimodal model's images of one call are read by this many threads at once (decoding
        # and both image models release the GIL; the detector lends each thread a net from its pool)
        self.image_workers = image_workers
        self._image_pool: ThreadPoolExecutor | None = None
        # the threads the model runs on: torch's (in the thread that tags) or the ONNX Runtime
        # sessions'; None follows the process's hamner.threads.governor (usable CPUs, fewer while
        # other processes keep them busy), unless hamner.vision.set_threads pinned them
        self.threads = threads
        if isinstance(threads, bool) or (threads is not None and (not isinstance(threads, int) or threads < 1)):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        load_word_tokenizer()  # here, with the model's load, not on the first post
        self.max_words = max_words  # a longer post raises PostTooLong (0: no limit)
        # images with more pixels (header width x height) are refused before decoding; None: the
        # checkpoint's vision config (a runtime limit: it does not change the features of an image it lets through)
        self.max_image_pixels = max_image_pixels

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path | Sequence[str | Path],
        device: str = "cpu",
        batch_size: int = 32,
        on_bad_image: str = "error",
        long_posts: str = "window",
        precision: str = "auto",
        image_workers: int = 1,
        threads: int | None = None,
        max_words: int = DEFAULT_MAX_WORDS,
        max_image_pixels: int | None = None,
    ) -> Tagger:
        """A tagger over one checkpoint directory, over ``hamner export`` output (run on ONNX Runtime,
        same outputs; ``device`` must then be the CPU and ``precision`` is the export's), or over several
        checkpoints read together as an ensemble (:class:`hamner.models.ensemble.EnsembleTagger`: their
        CRF scores averaged). ``threads``: the ONNX Runtime sessions' threads of an exported model
        (PyTorch's are a process setting: :func:`hamner.vision.set_threads`); ``image_workers``: images
        read at once by a multimodal model; ``max_words``: the most words a post may have (a longer one
        raises :class:`PostTooLong`; 0: no limit); ``max_image_pixels``: the largest image (width x height,
        from its header) a multimodal model decodes, instead of the checkpoint's vision setting."""
        model = load_model(directory, threads)
        if is_exported_model(model):  # an exported model, or an ensemble of them
            precision = "fp32" if precision == "auto" else precision
            if precision != "fp32":
                raise ConfigError(f"{directory} is an exported (ONNX) model: its precision is fixed at export ({model.precision}); drop --precision {precision}")
        return cls(
            model, device, batch_size, on_bad_image=on_bad_image, long_posts=long_posts, precision=precision,
            image_workers=image_workers, threads=threads, max_words=max_words, max_image_pixels=max_image_pixels,
        )  # fmt: skip

    @property
    def style(self) -> str:
        return self.model.config.tokenizer_style

    @property
    def multimodal(self) -> bool:
        return bool(self.model.config.multimodal)

    @property
    def vision_config(self) -> Any:
        """The extractor settings the model was trained with (a VisionConfig), for a multimodal model."""
        return vision_config_for(self.model.config, self.on_bad_image)

    @property
    def extractor(self) -> Any:
        """The image extractor of the training cache's settings and model files, built on first use;
        a different weights file (another fingerprint) is refused: its features would not match. Built
        once under a lock, whatever the number of threads asking at the same time."""
        if self._extractor is None:
            with self._extractor_lock:
                if self._extractor is None:
                    self._extractor = self._build_extractor()
        return self._extractor

    def _build_extractor(self) -> Any:
        backbone: Path | None = getattr(self.model, "backbone_path", None)  # an exported model's, else None
        extractor = build_extractor(self.model.config, backbone, self.on_bad_image, self.threads)
        if self.max_image_pixels is not None:  # after the fingerprint check: a limit, not a feature setting
            extractor.config.max_image_pixels = self.max_image_pixels  # the extractor's private copy
        return extractor

    def features(self, image: Any = None, caption: str | None = None, key: str | None = None) -> Any:
        """A post's visual inputs (ImageFeatures), extracted exactly as 'hamner preprocess' does:
        ``image`` is a path, bytes, a decoded :class:`hamner.vision.images.LoadedImage` or None."""
        from hamner.vision.extractor import features_without_image
        from hamner.vision.images import LoadedImage

        if image is None:  # no image: the caption words alone (no model files needed)
            return features_without_image(self.vision_config, key or "<none>", "no_image", None, caption, None)
        if isinstance(image, LoadedImage):
            return self.extractor.extract(image, key=key or image.source, caption=caption)
        return self.extractor.extract_file(image, key=key, caption=caption)

    def _features_of(self, images: Sequence[Any], captions: Sequence[str | None], keys: Sequence[str] | None = None) -> list[Any]:
        """Every post's visual inputs, in order; with ``image_workers`` > 1 several images are read at
        once (the first error, in post order, is raised as without workers). ``keys`` name the posts
        in the log (by default ``post 0``, ``post 1``... their places in the call)."""
        got = self.features_each(images, captions, keys)
        for item in got:
            if isinstance(item, ImageError):
                raise item
        return got

    def features_each(self, images: Sequence[Any], captions: Sequence[str | None], keys: Sequence[str] | None = None) -> list[Any]:
        """Each post's visual inputs (ImageFeatures), or the :class:`ImageError` its image raised (the
        ``error`` policy): one answer per post, so that a caller can keep the posts before a bad image."""
        names = list(keys) if keys is not None else [f"post {i}" for i in range(len(images))]

        workers = 1 if self.image_workers == 1 or sum(im is not None for im in images) < 2 else self.image_workers
        # the image models' torch threads, set in each thread that runs them (a per-thread setting):
        # the tagger's count shared among the image workers
        per_worker = max(1, self._thread_count() // workers) if self.device.type == "cpu" else 0

        def one(image: Any, caption: str | None, key: str) -> Any:
            if per_worker and torch.get_num_threads() != per_worker:
                torch.set_num_threads(per_worker)
            try:
                return self.features(image, caption, key)
            except ImageError as exc:
                return exc

        if workers == 1:
            return [one(im, cap, key) for im, cap, key in zip(images, captions, names, strict=True)]
        _ = self.extractor  # built once, before the threads ask for it
        with self._extractor_lock:
            if self._image_pool is None:
                self._image_pool = ThreadPoolExecutor(self.image_workers, thread_name_prefix="hamner-image")
        return list(self._image_pool.map(one, images, captions, names))

    def _thread_count(self) -> int:
        if self.threads is not None:
            return self.threads
        from hamner.threads import governor

        return governor().threads()

    def use_threads(self) -> int:
        """Set the model's thread count for the next batch, in the calling thread (an OpenMP setting
        is per thread), and return it: this tagger's ``threads``, else the process's governor's."""
        if self.device.type != "cpu":
            return 0
        n = self._thread_count()
        model: Any = self.model
        if is_exported_model(model):
            members = list(model.member_models) if hasattr(model, "member_models") else [model]
            for m in members:
                m.use_threads(n)
        elif torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    def tag(self, text: str, image: str | Path | bytes | None = None, caption: str | None = None) -> TaggedPost:
        """Entities of one post. ``image`` and ``caption`` are used by multimodal checkpoints only."""
        return self.tag_many([text], [image], [caption])[0]

    def tokenize(self, text: str, index: int | None = None) -> list[Token]:
        """The post's words with code-point offsets, cut the way the training data was. Raises
        :class:`TextError` (naming ``index``) for text that cannot be tagged: an unpaired surrogate, a
        text the word tokenizer gives up on, or (:class:`PostTooLong`) more words than ``max_words``."""
        if not isinstance(text, str):
            where = f"post {index}: " if index is not None else ""
            raise TypeError(f"{where}text must be a string, got {type(text).__name__}")
        bad = first_surrogate(text)
        if bad is not None:
            raise TextError(index, f"the text holds an unpaired surrogate (U+{ord(text[bad]):04X}) at character {bad}: not valid Unicode")
        try:
            if not self.max_words or len(text) <= PIECE_CHARS:
                words = tokenize(text, self.style)
            else:  # piece by piece (what tokenize does), so that the count stops soon after the limit
                words = []
                for offset, piece in _pieces(text):
                    try:
                        got = tokenize(piece, self.style)
                    except TextError:
                        raise TextError(index, f"the word tokenizer timed out on the {len(piece)} characters at offset {offset} (a pathological text)") from None
                    words += [Token(t.text, t.start + offset, t.end + offset) for t in got]
                    if len(words) > self.max_words and offset + len(piece) < len(text):
                        raise PostTooLong(index, len(words), self.max_words, chars_read=offset + len(piece))
        except TextError as exc:
            if isinstance(exc, PostTooLong):
                raise
            raise TextError(index, exc.detail) from None
        if self.max_words and len(words) > self.max_words:
            raise PostTooLong(index, len(words), self.max_words)
        return words

    def tag_many(
        self,
        texts: Iterable[str],
        images: Iterable[str | Path | bytes | None] | None = None,
        captions: Iterable[str | None] | None = None,
        progress: bool = False,
        features: Iterable[Any] | None = None,
    ) -> list[TaggedPost]:
        """Tag several posts in batches. An empty or whitespace-only text gives no entities. Any
        iterables (lists, generators) are accepted; they are read once.

        ``features`` (ImageFeatures per post, e.g. from a feature cache) replace ``images`` and
        ``captions`` for a multimodal model. A text that cannot be tagged raises :class:`TextError`
        naming its index, before any post is tagged.
        """
        if isinstance(texts, str):
            raise TypeError("tag_many expects a list of texts; use tag() for one post")
        text_list = list(texts)
        tokens = [self.tokenize(t, i) for i, t in enumerate(text_list)]
        return self.tag_tokenized(
            text_list, tokens,
            list(images) if images is not None else None,
            list(captions) if captions is not None else None,
            progress,
            list(features) if features is not None else None,
        )  # fmt: skip

    def tag_tokenized(
        self,
        texts: Sequence[str],
        tokens: Sequence[list[Token]],
        images: Sequence[str | Path | bytes | None] | None = None,
        captions: Sequence[str | None] | None = None,
        progress: bool = False,
        features: Sequence[Any] | None = None,
    ) -> list[TaggedPost]:
        """:meth:`tag_many` for posts already cut into words by :meth:`tokenize` (a caller that
        handles each post's :class:`TextError` itself, like ``hamner tag``, tokenizes first)."""
        for name, seq in (("tokens", tokens), ("images", images), ("captions", captions), ("features", features)):
            if seq is not None and len(seq) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(seq)} {name}")
        for i, cap in enumerate(captions or []):
            bad = first_surrogate(cap) if isinstance(cap, str) else None
            if bad is not None:
                raise TextError(i, f"the caption holds an unpaired surrogate at character {bad}: not valid Unicode")
        visuals: list[Any] | None = None
        if self.multimodal:
            if features is not None:
                visuals = list(features)
            else:
                imgs = list(images) if images is not None else [None] * len(texts)
                caps = list(captions) if captions is not None else [None] * len(texts)
                visuals = self._features_of(imgs, caps)
        elif not self._warned_visual and any(x is not None for x in [*(images or []), *(captions or []), *(features or [])]):
            log.warning("this checkpoint is a text-only model: image and caption inputs are ignored")
            self._warned_visual = True
        nonempty = [i for i, toks in enumerate(tokens) if toks]
        preds: dict[int, Prediction] = {}
        if nonempty:
            self.use_threads()
            words = [[tok.text for tok in tokens[i]] for i in nonempty]
            vis = [visuals[i] for i in nonempty] if visuals is not None else None
            with autocast(self.device, self.precision):
                got = self.model.run(
                    words, vis, self.batch_size, progress, "tag", long_posts=self.long_posts,
                    between_batches=self.use_threads,  # a long call follows the machine's load batch by batch
                )  # fmt: skip
            preds = dict(zip(nonempty, got, strict=True))
        out = []
        for i, text in enumerate(texts):
            toks = tokens[i]
            pred = preds.get(i)
            tg = pred.tags if pred is not None else []
            ents = []
            for s in spans_from_bio(tg):
                # the entity's characters, without invisible ones at its ends (zero-width space tokens)
                start, end = entity_span(text, toks[s.start].start, toks[s.end - 1].end)
                if start < end:
                    ents.append(Entity(text[start:end], s.type, start, end))
                else:
                    log.debug("post %d: a %s entity of invisible characters only is dropped", i, s.type)
            out.append(
                TaggedPost(
                    text, ents, list(toks), tg, pred.words_not_read if pred is not None else 0,
                    windows=pred.windows if pred is not None else 1,
                    relevance=pred.relevance if pred is not None else (0.0 if visuals is not None else None),
                    level_weights=pred.level_weights if pred is not None else None,
                    features=visuals[i] if visuals is not None else None,
                    emissions=pred.emissions if pred is not None else None,
                )
            )  # fmt: skip
        return out
