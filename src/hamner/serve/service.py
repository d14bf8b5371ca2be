"""The tagging service behind ``hamner serve``: one model, one worker thread, micro-batches.

The model is loaded once. Requests are validated by the web layer, and their images decoded here in a
small pool of ``max_decoding`` threads (off the event loop: at most that many images are in memory at
full size at once, and each within the ``max_image_decoded_mb`` budget); then each request is queued
here and answered through a future.
One worker thread owns the model and the image extractor (neither is shared between threads): it
takes the first waiting request and every other request already queued (up to ``max_batch``;
``batch_wait_ms`` > 0 also waits that long for company), extracts their images one by one and tags
all their texts in one batch, so requests that arrive while a batch runs form the next one. Whether
batching pays is measured by ``benchmarks/serve_latency.py`` (``results/bench_serve.csv``).

A text-only checkpoint tags the text alone; its extractor (``ServeConfig.vision``) only shows what the
image holds. A multimodal (HamLearning) checkpoint reads the image and caption: its extractor is the
tagger's own, built from the settings recorded in the checkpoint (the training cache's), so a served
post is tagged exactly as ``Tagger.tag`` and the cached dataset path tag it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from hamner.errors import ConfigError, PostTooLong, TextError
from hamner.hashing import file_sha256
from hamner.inference.tagger import TaggedPost, Tagger
from hamner.models.card import entity_types
from hamner.vision.config import VisionConfig
from hamner.vision.images import LimitOptions, LoadedImage, load_image, return_freed_memory

MIB = 1024 * 1024
# how a too_large image message tells the user to raise the limit
SERVE_LIMIT_OPTIONS = LimitOptions(
    pixels="--max-image-pixels of hamner serve (ServeConfig.max_image_pixels)",
    decoded="--max-image-decoded-mb of hamner serve (ServeConfig.max_image_decoded_mb)",
)

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Limits and batching of the web service (every limit gives a clear 4xx answer when exceeded)."""

    max_text_chars: int = 2000
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # header width x height; more is refused before decoding
    # estimated memory of decoding one image (hamner.vision.images, step 3), checked before decoding:
    # a 6000 x 6000 RGB PNG takes 137 MiB, an RGBA one 412 MiB; no tweet picture (4096 x 4096 at most) comes near
    max_image_decoded_mb: int = 256
    max_decoding: int = 2  # images decoded at once (each in the decoding pool's own thread)
    max_decode_waiting: int = 16  # uploads waiting for a decoding thread beyond this get 503 + Retry-After
    # words of one post (the tagger's word tokenizer): cost grows with them, and a 2,000-character run
    # of "!" is 2,000 words (0.8 s against 24 ms); 2,000 characters of real text are about 400
    max_words: int = 600
    batching: bool = True
    max_batch: int = 16
    batch_wait_ms: float = 0.0  # 0: a free worker takes every queued request at once (greedy)
    max_queue: int = 256  # requests waiting beyond this get 503 (each holds a decoded image)
    # run the image extractor on attached images (objects, ImageNet words); off for a multimodal
    # model: images are not read and posts are tagged with their text and caption only
    detect_objects: bool = True
    # the extractor of a text-only model; a multimodal model uses the settings its checkpoint records
    vision: VisionConfig = field(default_factory=lambda: VisionConfig(on_bad_image="error"))

    def __post_init__(self) -> None:
        for name in (
            "max_text_chars", "max_image_bytes", "max_image_pixels", "max_image_decoded_mb", "max_decoding",
            "max_decode_waiting", "max_words", "max_batch", "max_queue",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"serve.batch_wait_ms must be >= 0, got {self.batch_wait_ms}")

    @property
    def max_body_bytes(self) -> int:
        """The largest request accepted: an image at the byte limit in base64, plus text and framing."""
        return self.max_image_bytes * 4 // 3 + 4 * self.max_text_chars * 2 + 64 * 1024


class QueueFull(Exception):
    """``max_queue`` requests are already waiting."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} requests are waiting")
        self.waiting = waiting


class DecodersBusy(Exception):
    """``max_decoding`` images are being decoded and ``max_decode_waiting`` more wait for a thread."""

    def __init__(self, decoding: int, waiting: int) -> None:
        super().__init__(f"{decoding} images are being decoded and {waiting} wait")
        self.decoding, self.waiting = decoding, waiting


class TooManyWords(TextError):
    """A post with more words than ``max_words``: its cost is bounded by refusing it (422 ``too_many_words``).
    The tagger counts the words only as far as the limit (:class:`~hamner.errors.PostTooLong`)."""

    def __init__(self, words: int, limit: int, partial: bool = False) -> None:
        counted = f"more than {limit:,} words" if partial else f"{words:,} words"  # partial: counted only so far
        super().__init__(None, f"text has {counted}; the limit is {limit:,} (--max-words of hamner serve)")
        self.words, self.limit = words, limit


@dataclass
class TagJob:
    text: str
    caption: str | None
    image: Any | None  # a decoded hamner.vision.images.LoadedImage
    received: float = field(default_factory=time.perf_counter)
    cancelled: bool = False  # set by the web layer when the client has gone away: the worker skips it


@dataclass
class TagOutcome:
    post: TaggedPost
    # hamner.vision.extractor.ImageFeatures of the attached image (text-only model), or the visual
    # inputs the multimodal model read (also post.features; caption words only without an image)
    features: Any | None
    batch_size: int
    timings_ms: dict[str, float]


class TaggingService:
    """Owns the tagger and the extractor; answers :class:`TagJob`s from a single worker thread."""

    def __init__(self, tagger: Tagger, config: ServeConfig | None = None, extractor: Any | None = None, model_dir: str | None = None) -> None:
        self.tagger = tagger
        self.config = config or ServeConfig()
        self.extractor = extractor
        self.model_dir = model_dir
        self._queue: queue.Queue[tuple[TagJob, asyncio.Future[TagOutcome], asyncio.AbstractEventLoop] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._decoding = 0  # images submitted to the decoding pool and not finished (running or waiting)
        self.batches = 0
        self.requests = 0

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path | Sequence[str | Path],
        config: ServeConfig | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> TaggingService:
        """Serve one checkpoint, or several as an ensemble (a list of directories)."""
        config = config or ServeConfig()
        dirs = [model_dir] if isinstance(model_dir, (str, Path)) else list(model_dir)
        tagger = Tagger.from_pretrained(
            dirs[0] if len(dirs) == 1 else dirs, device=device, precision=precision, max_words=config.max_words
        )
        model_dir = " + ".join(str(d) for d in dirs)
        extractor = None
        if tagger.multimodal:
            settings = tagger.vision_config  # a ConfigError now if the checkpoint records none
            log.info(
                "multimodal model: images are read with the checkpoint's extractor settings (backbone %s, detector %s); "
                "the server's vision settings are not used",
                settings.backbone, settings.detector,
            )
            if config.detect_objects:
                extractor = tagger.extractor  # built now: other model files are refused at start, not per request
            else:
                log.info("object detection is off: images are not read; posts are tagged with their text and caption only")
        elif config.detect_objects:
            from hamner.vision.extractor import VisualExtractor

            extractor = VisualExtractor(config.vision)
        return cls(tagger, config, extractor, str(model_dir))

    @property
    def multimodal(self) -> bool:
        """True for a HamLearning checkpoint: the tags come from the text, the image and the caption."""
        return self.tagger.multimodal

    @property
    def reads_images(self) -> bool:
        """True when attached images are run through the extractor (for a multimodal model: read by the tagger)."""
        return self.extractor is not None

    @property
    def max_image_side(self) -> int:
        """The side images are decoded to: the checkpoint's setting for a multimodal model (as its training cache)."""
        if self.multimodal:
            return int(self.tagger.vision_config.max_image_side)
        return int(self.config.vision.max_image_side)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            if not return_freed_memory():
                log.info("could not set the C allocator's mmap threshold (not glibc?): freed image memory may stay with the process")
            self._decoder = ThreadPoolExecutor(max_workers=self.config.max_decoding, thread_name_prefix="hamner-decode")
            self._thread = threading.Thread(target=self._run, name="hamner-tagger", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self._decoder is not None:
            self._decoder.shutdown(wait=True, cancel_futures=True)
            self._decoder = None

    # -- images ---------------------------------------------------------------------------------
    async def decode(self, data: bytes, name: str = "image") -> LoadedImage:
        """Decode an upload in the decoding pool (``max_decoding`` threads), within the server's limits.

        Raises :class:`DecodersBusy` at once when ``max_decoding + max_decode_waiting`` images are
        already decoding or waiting (the check and the count happen with no await between them), and
        :class:`hamner.errors.ImageError` for a bad or too large image.
        """
        if self._decoder is None:
            raise RuntimeError("TaggingService.start() was not called")
        cfg = self.config
        if self._decoding >= cfg.max_decoding + cfg.max_decode_waiting:
            running = min(self._decoding, cfg.max_decoding)
            raise DecodersBusy(running, self._decoding - running)
        self._decoding += 1
        load = partial(
            load_image, data, max_side=self.max_image_side, max_pixels=cfg.max_image_pixels,
            max_decoded_bytes=cfg.max_image_decoded_mb * MIB, name=name, options=SERVE_LIMIT_OPTIONS,
        )  # fmt: skip
        try:
            return await asyncio.get_running_loop().run_in_executor(self._decoder, load)
        finally:
            self._decoding -= 1

    def decoding(self) -> int:
        """Images being decoded or waiting for a decoding thread now."""
        return self._decoding

    # -- requests -------------------------------------------------------------------------------
    def enqueue(self, job: TagJob) -> asyncio.Future[TagOutcome]:
        """Queue one request (from the event loop); its future is resolved by the worker.

        Raises :class:`QueueFull` when ``max_queue`` requests are already waiting; the check and the
        put happen together, with no await between them.
        """
        if self._thread is None:
            raise RuntimeError("TaggingService.start() was not called")
        waiting = self._queue.qsize()
        if waiting >= self.config.max_queue:
            raise QueueFull(waiting)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[TagOutcome] = loop.create_future()
        self._queue.put((job, fut, loop))
        return fut

    async def submit(self, job: TagJob) -> TagOutcome:
        """Queue one request and wait for its answer without blocking the event loop."""
        return await self.enqueue(job)

    def queued(self) -> int:
        return self._queue.qsize()

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` reports: labels, encoder, fingerprints of the model and extractor."""
        model = self.tagger.model
        cfg = model.config
        multimodal = self.multimodal
        out: dict[str, Any] = {
            "kind": "hamlearning" if multimodal else "text-only",
            "uses_image_for_tagging": multimodal,
            "labels": list(cfg.labels),
            "entity_types": entity_types(cfg),
            "encoder": cfg.encoder,
            "tokenizer_style": cfg.tokenizer_style,
            "max_subtokens": model.max_subtokens,
            "model_dir": self.model_dir,
            "config_fingerprint": _file_fingerprint(Path(self.model_dir) / "hamner_config.json") if self.model_dir else None,
            "object_detection": self.extractor is not None,
            "vision_fingerprint": self.extractor.fingerprint if self.extractor is not None else None,
            "limits": {
                "max_text_chars": self.config.max_text_chars,
                "max_image_bytes": self.config.max_image_bytes,
                "max_image_pixels": self.config.max_image_pixels,
                "max_image_decoded_mb": self.config.max_image_decoded_mb,
                "max_decoding": self.config.max_decoding,
                "max_decode_waiting": self.config.max_decode_waiting,
                "max_words": self.config.max_words,
            },
            "batching": {"enabled": self.config.batching, "max_batch": self.config.max_batch, "wait_ms": self.config.batch_wait_ms},
            "levels": _visual_levels(model) if multimodal else None,
            "switches": {name: getattr(cfg, name) for name in _SWITCHES} if multimodal else None,
        }
        return out

    # -- the worker -----------------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[TagJob, asyncio.Future[TagOutcome], asyncio.AbstractEventLoop]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        if self.config.batching and self.config.max_batch > 1:
            deadline = time.perf_counter() + self.config.batch_wait_ms / 1000
            while len(batch) < self.config.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    item = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # let the loop stop after this batch
                    break
                batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            batch = [item for item in batch if not item[0].cancelled and self._affordable(item)]  # their clients have gone
            if batch:
                self._answer(batch)

    def _affordable(self, item: tuple[TagJob, asyncio.Future[TagOutcome], asyncio.AbstractEventLoop]) -> bool:
        """Whether a post's words are within ``max_words`` (and its text can be cut into words at all);
        if not, its request is answered with the :class:`TextError` (422) and it leaves the batch."""
        job, fut, loop = item
        try:
            try:
                words = len(self.tagger.tokenize(job.text))  # PostTooLong past the tagger's max_words, counted only that far
            except PostTooLong as exc:
                raise TooManyWords(exc.words, exc.limit, partial=exc.chars_read is not None) from None
            if words > self.config.max_words:  # a tagger given to the service with a larger max_words of its own
                raise TooManyWords(words, self.config.max_words)
        except TextError as exc:
            log.info("request refused before tagging: %s", exc)
            loop.call_soon_threadsafe(_set_exception, fut, exc)
            return False
        return True

    def _answer(self, batch: list[tuple[TagJob, asyncio.Future[TagOutcome], asyncio.AbstractEventLoop]]) -> None:
        """Tag a batch; if it fails, tag its requests one by one so that one bad request fails alone."""
        try:
            outcomes = self._process([job for job, _, _ in batch])
        except Exception as exc:  # noqa: BLE001 - reported to the waiting request(s): 4xx for a TextError, else 500
            if len(batch) > 1:
                log.warning("a batch of %d failed (%s); tagging its requests one by one", len(batch), exc)
                for item in batch:
                    self._answer([item])
                return
            if isinstance(exc, TextError):  # the post's own fault (answered 422): no traceback
                log.info("a request's text cannot be tagged: %s", exc)
            else:
                log.exception("tagging a request failed")
            _, fut, loop = batch[0]
            loop.call_soon_threadsafe(_set_exception, fut, exc)
            return
        for (_, fut, loop), outcome in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_set_result, fut, outcome)

    def _process(self, jobs: list[TagJob]) -> list[TagOutcome]:
        """Extract each job's image, then tag all texts in one batch. An exception here (one bad image,
        say) fails the whole batch, which :meth:`_answer` then retries request by request."""
        start = time.perf_counter()
        multimodal = self.multimodal
        features: list[Any | None] = []
        image_ms: list[float] = []
        for i, job in enumerate(jobs):
            t0 = time.perf_counter()
            if multimodal:
                # the tagger's own extraction; no image (or detection off): the caption words only
                image = job.image if self.reads_images else None
                features.append(self.tagger.features(image, job.caption, key=f"request-{i}"))
            elif job.image is not None and self.extractor is not None:
                features.append(self.extractor.extract(job.image, key=f"request-{i}", caption=job.caption))
            else:
                features.append(None)
            image_ms.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        if multimodal:
            posts = self.tagger.tag_many([job.text for job in jobs], features=features)
        else:
            # a text-only checkpoint does not read images or captions: pass none, so it logs nothing
            posts = self.tagger.tag_many([job.text for job in jobs])
        tag_ms = (time.perf_counter() - t1) * 1000
        self.batches += 1
        self.requests += len(jobs)
        return [
            TagOutcome(
                post=post,
                features=feats,
                batch_size=len(jobs),
                timings_ms={
                    "queue": round((start - job.received) * 1000, 2),
                    "image": round(img_ms, 2),
                    "tagging": round(tag_ms, 2),
                },
            )
            for job, post, feats, img_ms in zip(jobs, posts, features, image_ms, strict=True)
        ]


def _set_result(fut: asyncio.Future[TagOutcome], value: TagOutcome) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[TagOutcome], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


_SWITCHES = ("use_global", "use_objects", "use_spatial", "use_semantic", "semantic_mode", "use_relevance", "num_iterations")
_LEVELS = ("global", "objects", "semantic")


def _visual_levels(model: Any) -> list[str]:
    """The visual levels the model fuses (global / objects / semantic), in its order."""
    levels = getattr(model, "levels", None)
    if isinstance(levels, list):
        return [str(level) for level in levels]
    cfg = model.config
    if not cfg.fuses:
        return []
    on = {"global": cfg.use_global, "objects": cfg.use_objects, "semantic": cfg.semantic_sequence}
    return [level for level in _LEVELS if on[level]]


def _file_fingerprint(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return None
