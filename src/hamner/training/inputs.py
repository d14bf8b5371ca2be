"""What a run trains and selects on: the splits of data.dataset and data.joint, the label set, the
feature cache and each post's visual input, the encoded posts, and the per-epoch draws of modality
dropout and image-word masking."""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from hamner.data.conll import Post
from hamner.data.corpus import label_types, load_posts
from hamner.data.encoding import EncodedPost
from hamner.data.labels import bio_labels
from hamner.errors import ConfigError
from hamner.models.tagger import TextTagger
from hamner.training.config import ExperimentConfig
from hamner.vision.cache import KEY_SCHEME_CONTENT, FeatureStore, post_feature_keys

log = logging.getLogger(__name__)

def visual_dropped(seed: int, epoch: int, index: int, p: float) -> bool:
    """Whether training post ``index`` loses its visual input in ``epoch`` (modality dropout): a
    draw fixed by (seed, epoch, index), so that a resumed run drops the same posts."""
    return p > 0 and random.Random(f"{seed}/{epoch}/{index}").random() < p


def mask_image_words(post: EncodedPost, seed: int, epoch: int, index: int, p: float, mask_id: int) -> EncodedPost:
    """Training post ``index`` with each of its image words' sub-tokens replaced by ``mask_id`` with
    probability ``p`` (image-word masking), in the second encoder segment and in the separate
    semantic sequence alike. The draw is fixed by (seed, epoch, index), so a resumed run masks the
    same sub-tokens; the post's own words, the special tokens and the lengths never change. Returns
    ``post`` itself when nothing is masked."""
    if p <= 0:
        return post
    rng = random.Random(f"{seed}/{epoch}/{index}/image-words")
    changes: dict[str, Any] = {}
    for field, positions in (("input_ids", post.segment_positions), ("sem_input_ids", post.sem_positions)):
        ids = getattr(post, field)
        if ids is None or not positions:  # "both" mode: sem_positions point into input_ids, done above
            continue
        hit = [i for i in positions if rng.random() < p]
        if hit:
            new = list(ids)
            for i in hit:
                new[i] = mask_id
            changes[field] = new
    return replace(post, **changes) if changes else post


def open_features(cfg: ExperimentConfig, dataset: str | None = None) -> FeatureStore | None:
    """The feature cache a multimodal config needs for ``dataset`` (default data.dataset; None for
    the text path)."""
    if not cfg.model.multimodal:
        return None
    dataset = dataset or cfg.data.dataset
    path = cfg.data.features_of(dataset)
    if not path:
        field = "data.features" if dataset == cfg.data.dataset else f"data.joint_features.{dataset}"
        spec = cfg.data.corpus(dataset)
        if spec.preset is not None:
            how = f"hamner preprocess --dataset {dataset} --images DIR --captions FILE"
        else:
            where = next(iter(spec.files.values())).parent
            how = f"hamner preprocess --corpus {where} --out features/{spec.name}"
        raise ConfigError(f"config {cfg.name!r} uses visual inputs: set {field} to a feature cache (make one with: {how})")
    return FeatureStore.open(path)


def load_split_of(cfg: ExperimentConfig, dataset: str, split: str) -> list[Post]:
    """One split (train, dev or test) of data.dataset or of a data.joint corpus."""
    return load_posts(cfg.data.corpus(dataset), split)


def set_label_set(cfg: ExperimentConfig, train: dict[str, list[Post]]) -> tuple[str, ...]:
    """The model's labels from the data: data.labels (or a preset's types), else the types of the
    training posts of every corpus of the run; ``cfg.model.labels`` is set to their BIO tags."""
    spec = cfg.data.corpus()
    types = label_types(
        spec.labels, [p for posts in train.values() for p in posts], str(spec.files.get("train", spec.name))
    )
    cfg.model.labels = bio_labels(types)
    return types


def joint_training_posts(cfg: ExperimentConfig) -> tuple[dict[str, list[Post]], list[dict[str, Any]]]:
    """Each dataset's training posts for a joint run (data.joint), without the posts identical or
    near-identical to a dev or test post of another dataset of the run, and the dropped posts
    (where they are and what they match; no text)."""
    from hamner.data.overlap import near_duplicates, relative_source

    datasets = [cfg.data.dataset, *cfg.data.joint]
    train = {d: load_split_of(cfg, d, "train")[: cfg.data.max_train_posts] for d in datasets}
    held = {d: [(split, p) for split in ("dev", "test") for p in load_split_of(cfg, d, split)] for d in datasets}
    dropped: list[dict[str, Any]] = []
    for d in datasets:
        others = [sp for o in datasets if o != d for sp in held[o]]
        matches = near_duplicates(
            [p.words for p in train[d]], [p.words for _, p in others], cfg.data.joint_overlap_threshold
        )
        keep = []
        for post, m in zip(train[d], matches, strict=True):
            if m is None:
                keep.append(post)
                continue
            dropped.append(
                {
                    "post": relative_source(post.source),
                    "matches": relative_source(others[m.other][1].source),
                    "identical": m.identical,
                    "jaccard": round(m.jaccard, 3),
                }
            )
            log.warning(
                "joint training: dropped %s, near-identical (Jaccard %.2f) to %s",
                post.source,
                m.jaccard,
                others[m.other][1].source,
            )
        train[d] = keep
    return train, dropped


def adopt_features(cfg: ExperimentConfig, store: FeatureStore) -> None:
    """Record the cache's extractor settings in the model config (so that inference re-extracts raw
    images the same way) and take the visual channel count from its grids."""
    cfg.model.vision = dict(store.header["identity"]["settings"])
    cfg.model.vision_fingerprint = store.fingerprint
    for key in store.keys():
        rec = store.record(key)
        if rec.get("status") == "ok":
            grid = store[key].grid
            if grid is not None:
                if cfg.model.visual_channels != grid.shape[0]:
                    log.info("model.visual_channels = %d (from the feature cache)", grid.shape[0])
                cfg.model.visual_channels = int(grid.shape[0])
            break


def visual_inputs(
    posts: list[Post], store: FeatureStore | None, file: Path | None = None, images: Path | None = None
) -> list[Any] | None:
    """Each post's ImageFeatures from the cache: by IMGID (a benchmark's or a folder's cache), or by
    the content key of its image and caption (a corpus's cache, ``hamner preprocess --corpus``; the
    post's ``image`` is relative to ``file``, the split file it was read from, its IMGID looked up
    in ``images``). A post the cache does not answer for is an error naming it."""
    if store is None:
        return None
    if store.key_scheme == KEY_SCHEME_CONTENT:
        if file is None:
            raise ValueError("visual_inputs: a content-keyed cache needs the posts' corpus file")
        out = []
        for p, key in zip(posts, post_feature_keys(posts, file, images), strict=True):
            if key not in store:
                made = store.header.get("inputs", {}).get("corpus", {})
                raise ConfigError(
                    f"{p.source}: post {p.id}: its image and caption (key {key}) are not in the feature cache "
                    f"{store.directory} (made from {made.get('path', 'another corpus')}): the post is new, or its "
                    "image or caption changed since (data.images and data.captions must be those given to "
                    "'hamner preprocess'); rebuild it with 'hamner preprocess --corpus ... --overwrite'"
                )
            out.append(store[key])
        return out
    out = []
    for p in posts:
        if p.imgid is None:
            raise ConfigError(
                f"{p.source}: a post without an IMGID line; the feature cache {store.directory} is keyed by IMGID. "
                "For a corpus of your own, make one keyed by image content: hamner preprocess --corpus PATH"
            )
        if p.imgid not in store:
            raise ConfigError(
                f"{p.source}: IMGID {p.imgid} is not in the feature cache {store.directory} (made for another dataset?)"
            )
        out.append(store[p.imgid])
    return out


def split_visuals(cfg: ExperimentConfig, dataset: str, split: str, posts: list[Post], store: FeatureStore | None) -> list[Any] | None:
    """:func:`visual_inputs` of one split of data.dataset or of a data.joint corpus."""
    if store is None:
        return None
    spec = cfg.data.corpus(dataset)
    return visual_inputs(posts, store, spec.file(split), spec.images)


def encode_posts(
    model: TextTagger,
    posts: list[Post],
    visuals: list[Any] | None = None,
    entity_ids: list[list[int]] | None = None,
    markers: list[str] | None = None,
) -> list[EncodedPost]:
    """The posts as model inputs with their gold tags; ``entity_ids``: each post's entity-type
    classes (``model.word_encoder.entity_ids_of``) when already computed, else computed here when
    the model has that channel; ``markers``: each post's dataset marker (None: the model's own)."""
    index = {t: i for i, t in enumerate(model.config.labels)}
    if entity_ids is None:
        entity_ids = model.word_encoder.entity_ids_of([p.words for p in posts])
    out = []
    for i, p in enumerate(posts):
        unknown = [t for t in p.tags if t not in index]
        if unknown:
            raise ConfigError(f"{p.source}: tag {unknown[0]!r} is not in the model's labels {model.config.labels}")
        out.append(
            model.encode_post(
                p.words,
                [index[t] for t in p.tags],
                visuals[i] if visuals is not None else None,
                entity_ids[i] if entity_ids is not None else None,
                markers[i] if markers is not None else None,
            )  # fmt: skip
        )
    return out
