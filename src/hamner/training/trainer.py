"""The training loop: AdamW with per-part learning rates, warm-up and linear decay, clipping,
dev selection, one test evaluation with the best checkpoint, resumable, single process or DDP."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hamner.data.conll import Post
from hamner.data.corpus import entity_counts, label_types, load_posts, warn_unseen
from hamner.data.encoding import EncodedPost
from hamner.data.labels import bio_labels, keep_types
from hamner.data.sampler import BucketBatchSampler
from hamner.env import git_revision, machine_description, package_versions, peak_memory_mb
from hamner.errors import ConfigError
from hamner.evaluation.evaluate import evaluate
from hamner.evaluation.metrics import entity_scores
from hamner.evaluation.predictions import write_predictions
from hamner.models.card import CARD_FILE, model_card
from hamner.models.crf import marginal_kl
from hamner.models.hamlearning import TEXT_VIEW
from hamner.models.tagger import CONFIG_FILE, Prediction, TextTagger
from hamner.precision import autocast, grad_scaler, resolve_precision
from hamner.training.config import ExperimentConfig
from hamner.training.curves import plot_training_curves
from hamner.vision.cache import KEY_SCHEME_CONTENT, FeatureStore, post_feature_keys

log = logging.getLogger(__name__)

STATE_FILE = "last/state.pt"
PREDICTIONS_FILE = "test_predictions.jsonl.gz"  # every test post's gold and predicted tags (dev-chosen checkpoint)
RECORD_BATCHES_ENV = "HAMNER_RECORD_BATCHES"
SHOW_EVERY = 20  # steps between progress-bar loss updates (each one reads the loss from the device)  # debug/test hook: a folder where each rank lists its batches


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> tuple[DistInfo, torch.device]:
    """Read torchrun's environment; gloo on CPUs, NCCL on GPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device_pref == "auto":
        use_cuda = torch.cuda.is_available()
    else:
        use_cuda = device_pref.startswith("cuda")
        if use_cuda and not torch.cuda.is_available():
            raise ConfigError(f"train.device={device_pref} but CUDA is not available")
    if use_cuda:
        index = info.local_rank if world > 1 or ":" not in device_pref else int(device_pref.split(":")[1])
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, device


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


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


JOINT_DIR = "joint"  # <run>/joint/<dataset>/: the checkpoint, final.json and predictions of a joint dataset


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


def teacher_marginals(
    cfg: ExperimentConfig,
    model: TextTagger,
    posts: list[Post],
    visuals: list[Any] | None,
    batch_size: int,
    progress: bool,
) -> list[torch.Tensor]:
    """Each training post's per-word log tag marginals, (words, labels), under the teacher of
    ``train.distill_from`` (an ensemble when it names several checkpoints)."""
    from hamner.models.ensemble import EnsembleTagger

    dirs = list(cfg.train.distill_from)
    teacher: Any = EnsembleTagger.from_pretrained(dirs) if len(dirs) > 1 else TextTagger.from_pretrained(dirs[0]).eval()
    tc = teacher.config
    if tc.labels != model.config.labels:
        raise ConfigError(
            f"train.distill_from: the teacher's labels {tc.labels} differ from the model's {model.config.labels}"
        )
    if tc.multimodal:
        if visuals is None:
            raise ConfigError(
                "train.distill_from: a multimodal teacher needs this run's feature cache (data.features), and this config has none"
            )
        if tc.vision_fingerprint != model.config.vision_fingerprint:
            raise ConfigError(
                "train.distill_from: the teacher was trained on another feature cache (vision fingerprint) than data.features"
            )
    t0 = time.perf_counter()
    preds = teacher.run([p.words for p in posts], visuals if tc.multimodal else None, batch_size, progress, "teacher")
    out = []
    crf = teacher.crf.cpu()
    with torch.no_grad():
        for pred in preds:
            em = pred.emissions.float()[None]  # shape: (1, words read, labels)
            out.append(crf.log_marginals(em, torch.ones(em.shape[:2], dtype=torch.bool))[0])
    log.info(
        "teacher marginals of %d training posts from %d checkpoint(s) in %.0f s",
        len(out),
        len(dirs),
        time.perf_counter() - t0,
    )
    return out


def distill_kl(
    crf: Any, emissions: torch.Tensor, mask: torch.Tensor, teacher: torch.Tensor, teacher_mask: torch.Tensor
) -> torch.Tensor:
    """Mean over words of KL(teacher || student) between the teacher's log tag marginals and those of
    the student's CRF on ``emissions`` (batch, words, labels)."""
    return marginal_kl(teacher, crf.log_marginals(emissions, mask), mask.bool() & teacher_mask.bool())


def _teacher_batch(marginals: list[torch.Tensor], idx: list[int], words: int, labels: int) -> dict[str, torch.Tensor]:
    """The teacher's log marginals of a batch's posts, padded to ``words`` words, and their mask."""
    out = torch.zeros(len(idx), words, labels)
    mask = torch.zeros(len(idx), words, dtype=torch.bool)
    for row, i in enumerate(idx):
        n = min(words, marginals[i].size(0))
        out[row, :n] = marginals[i][:n]
        mask[row, :n] = True
    return {TEACHER_KEY: out, TEACHER_KEY + "_mask": mask}


#: batch keys of the teacher's soft targets (knowledge distillation); the model never sees them
TEACHER_KEY = "teacher_log_marginals"


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_training(
    cfg: ExperimentConfig, resume: bool = False, command: str | None = None, stop_after_epoch: int | None = None
) -> dict[str, Any]:
    """Train, select on dev, evaluate test once; returns the final metrics (rank 0) or {}.

    ``stop_after_epoch`` ends the process after that epoch with a resumable state (for time-boxed
    sessions); ``resume=True`` continues from the last finished epoch.
    """
    dist, device = init_distributed(cfg.train.device)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    spec = cfg.data.corpus()  # fails before anything is written when a file is missing
    for split in ("train", "dev", "test"):
        spec.file(split)
    if spec.preset is not None:  # a benchmark's words are cut the way its files were
        cfg.model.tokenizer_style = spec.tokenizer_style
    run_dir = cfg.run_dir()
    state_path = run_dir / STATE_FILE
    if resume and not state_path.exists() and (run_dir / "final.json").exists():  # every rank sees the same files
        if dist.main:
            log.info("%s is already complete", run_dir)
        if dist.world > 1:
            torch.distributed.destroy_process_group()
        return dict(json.loads((run_dir / "final.json").read_text())) if dist.main else {}
    if dist.main:
        if (run_dir / "run.json").exists() and not resume:
            raise ConfigError(
                f"run directory {run_dir} already holds a run; pass --resume to continue it or choose another train.output_dir/run_name"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to_file(run_dir / "train.log") if dist.main else None
    try:
        return _train(cfg, dist, device, run_dir, resume, command, stop_after_epoch)
    finally:
        if handler is not None:
            logging.getLogger("hamner").removeHandler(handler)
            handler.close()


def _log_to_file(path: Path) -> logging.Handler:
    """Rank 0 also writes the package's log records to the run directory (appending on resume)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    pkg = logging.getLogger("hamner")
    pkg.addHandler(handler)
    if pkg.getEffectiveLevel() > logging.INFO:
        pkg.setLevel(logging.INFO)
    return handler


def _train(
    cfg: ExperimentConfig,
    dist: DistInfo,
    device: torch.device,
    run_dir: Path,
    resume: bool,
    command: str | None,
    stop_after_epoch: int | None,
) -> dict[str, Any]:
    state_path = run_dir / STATE_FILE
    set_seed(cfg.train.seed)
    show = cfg.train.progress and dist.main
    precision = resolve_precision(cfg.train.precision, device)
    eval_batch = cfg.train.eval_batch(device)

    # data
    datasets = [cfg.data.dataset, *cfg.data.joint]
    dropped: list[dict[str, Any]] = []
    if cfg.data.joint:
        by_dataset, dropped = joint_training_posts(cfg)
    else:
        by_dataset = {cfg.data.dataset: load_split_of(cfg, cfg.data.dataset, "train")[: cfg.data.max_train_posts]}
    dev_sets = {d: load_split_of(cfg, d, "dev")[: cfg.data.max_eval_posts] for d in datasets}
    dev_posts = dev_sets[cfg.data.dataset]
    types = set_label_set(cfg, by_dataset)
    # a joint run scores each corpus on the types of its own training split (BTC has no MISC: the
    # model's MISC predictions on BTC posts are neither right nor wrong there)
    scored: dict[str, list[str] | None] = {d: None for d in datasets}
    if cfg.data.joint:
        for d in datasets:
            own = sorted(entity_counts(by_dataset[d]))
            if set(own) != set(types):
                scored[d] = [t for t in types if t in own]
                if dist.main:
                    log.info("%s is scored on its own types %s (the model also predicts %s)", d,
                             ", ".join(scored[d] or []), ", ".join(t for t in types if t not in own))  # fmt: skip
    if dist.main:
        log.info("label set: %s", ", ".join(types))
        for d in datasets:
            log.info("%s: %d train, %d dev posts", d, len(by_dataset[d]), len(dev_sets[d]))
            warn_unseen(types, dev_sets[d], f"{d} dev")
        if dropped:
            log.info(
                "joint training: %d training posts dropped as near-identical to another dataset's dev or test posts",
                len(dropped),
            )

    stores = {d: open_features(cfg, d) for d in datasets}
    store = stores[cfg.data.dataset]
    if store is not None:
        adopt_features(cfg, store)
        for d in cfg.data.joint:
            other = stores[d]
            if other is not None and other.fingerprint != store.fingerprint:
                raise ConfigError(
                    f"data.joint: the feature cache of {d} ({other.directory}) was made with other image-extractor "
                    f"settings than data.features ({store.directory}); make both with the same 'hamner preprocess' options"
                )
    model = TextTagger.from_config(cfg.model).to(device)
    if dist.main:
        log.info("model %s: %d parameters", type(model).__name__, sum(p.numel() for p in model.parameters()))
    train_posts = [p for d in datasets for p in by_dataset[d]]
    train_visuals = (
        None
        if store is None
        else [v for d in datasets for v in split_visuals(cfg, d, "train", by_dataset[d], stores[d]) or []]
    )
    # the entity-type channel's spaCy classes, once for both encodings of the training posts
    train_ents = model.word_encoder.entity_ids_of([p.words for p in train_posts], progress=show)
    # with model.dataset_marker, each training post is marked with the dataset it comes from
    train_marks = [d for d in datasets for _ in by_dataset[d]] if cfg.model.dataset_marker else None
    if train_marks is not None and dist.main:
        log.info("dataset marker: each post's encoder input starts with its dataset's name (%s)", ", ".join(datasets))
    train_enc = encode_posts(model, train_posts, train_visuals, train_ents, train_marks)
    dev_visuals = split_visuals(cfg, cfg.data.dataset, "dev", dev_posts, store)
    joint_dev = {d: (dev_sets[d], split_visuals(cfg, d, "dev", dev_sets[d], stores[d])) for d in cfg.data.joint}
    joint_best: dict[str, list[float]] = {d: [-1.0, -1] for d in cfg.data.joint}  # dataset -> [best dev F1, its epoch]
    p_drop = cfg.train.visual_dropout if store is not None else 0.0
    cross_view = store is not None and cfg.model.cross_view_weight > 0
    # the same posts without visual input (modality dropout, and the text view of cross-view alignment)
    text_enc = encode_posts(model, train_posts, None, train_ents, train_marks) if (p_drop > 0 or cross_view) else None

    p_words = cfg.train.image_word_dropout if store is not None else 0.0
    mask_id = model.tokenizer.mask_token_id
    if mask_id is None:  # a tokenizer without a mask token: the unknown token stands in
        mask_id = model.tokenizer.unk_token_id

    def pick(i: int) -> EncodedPost:
        if text_enc is not None and visual_dropped(cfg.train.seed, sampler.epoch, i, p_drop):
            return text_enc[i]
        return mask_image_words(train_enc[i], cfg.train.seed, sampler.epoch, i, p_words, mask_id)

    teacher = None
    if cfg.train.distill_from:
        with torch.random.fork_rng(devices=[]):  # loading the teacher draws no number from the student's generator
            teacher = teacher_marginals(cfg, model, train_posts, train_visuals, eval_batch, show)

    def make_batch(idx: list[int]) -> tuple[list[int], dict[str, torch.Tensor]]:
        batch = model.collate([pick(i) for i in idx])
        if cross_view and text_enc is not None:  # both views of the same posts, each padded on its own
            batch.update({TEXT_VIEW + k: v for k, v in model.collate([text_enc[i] for i in idx]).items()})
        if teacher is not None:
            batch.update(_teacher_batch(teacher, idx, batch["word_mask"].size(1), len(model.config.labels)))
        return idx, batch

    sampler = BucketBatchSampler(
        [len(e.input_ids) for e in train_enc], cfg.train.batch_size, cfg.train.seed, dist.rank, dist.world
    )
    loader: DataLoader[Any] = DataLoader(
        list(range(len(train_enc))),  # type: ignore[arg-type]
        batch_sampler=sampler,
        collate_fn=make_batch,
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",  # page-locked batches: the copies to the GPU overlap compute
    )
    scaler = grad_scaler(device, precision)
    optimizer = build_optimizer(model, cfg)
    total_steps = cfg.train.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, int(round(cfg.train.warmup_ratio * total_steps)))
    )
    start_epoch, best_f1, best_epoch = 0, -1.0, -1
    if resume and state_path.exists():
        if dist.world > 1:
            torch.distributed.barrier()
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, best_f1, best_epoch = state["epoch"] + 1, state["best_f1"], state["best_epoch"]
        joint_best.update(state.get("joint_best", {}))
        if dist.main:  # drop records of an epoch whose state was never saved (killed in between)
            metrics = run_dir / "metrics.jsonl"
            lines = metrics.read_text().splitlines() if metrics.exists() else []
            kept = [ln for ln in lines if ln.strip() and json.loads(ln)["epoch"] <= start_epoch]
            metrics.write_text("".join(ln + "\n" for ln in kept))
            meta = json.loads((run_dir / "run.json").read_text())
            meta.setdefault("resumed", []).append(
                {"after_epoch": start_epoch, "command": command or " ".join(sys.argv), "git": git_revision(),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            )  # fmt: skip
            (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
            log.info(
                "resuming %s after epoch %d (best dev F1 %.4f at epoch %d)", run_dir, start_epoch, best_f1, best_epoch
            )
    elif dist.main:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        meta = {
            "command": command or " ".join(sys.argv),
            "seed": cfg.train.seed,
            "git": git_revision(),
            "packages": package_versions(),
            "machine": machine_description(device),
            "world_size": dist.world,
            # what reproduces a run bit for bit: the same code, packages, seed, precision and thread count
            "precision": {"requested": cfg.train.precision, "used": precision},
            "torch_threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if cfg.data.joint:
            meta["joint"] = {
                "datasets": datasets,
                "train_posts": {d: len(by_dataset[d]) for d in datasets},
                "dropped_overlap": dropped,
                "scored_types": {d: t for d, t in scored.items() if t is not None},
            }
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    net: nn.Module = model
    if dist.world > 1:
        # a multimodal model's pixel branches get no gradient from a batch without images
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(model.config.multimodal),
        )
    record_dir = os.environ.get(RECORD_BATCHES_ENV)
    seen: dict[int, list[list[int]]] = {}  # epoch -> the batches of post indices this rank trained on

    for epoch in range(start_epoch, cfg.train.epochs):
        sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        # losses are summed on the device and read once per epoch (and every SHOW_EVERY steps for
        # the progress bar): reading a GPU tensor every step would make the host wait for the GPU
        total = torch.zeros((), dtype=torch.float64, device=device)
        steps = 0
        parts: dict[str, torch.Tensor] = {}  # the loss's named parts (tagging, relevance matching), summed
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not show, dynamic_ncols=True)
        for idx, batch in bar:
            if record_dir:
                seen.setdefault(epoch + 1, []).append([int(i) for i in idx])
            on_device = _to(batch, device)
            soft = {k: on_device.pop(k) for k in (TEACHER_KEY, TEACHER_KEY + "_mask") if k in on_device}
            with autocast(device, precision):
                out = net(on_device)
            loss = out["loss"]
            if soft:  # knowledge distillation: the student's CRF marginals pulled towards the teacher's
                out.setdefault("tag_loss", out["loss"])  # the gold part, logged apart (text-only models have no parts)
                out["distill_loss"] = distill_kl(
                    model.crf, out["emissions"], on_device["word_mask"], soft[TEACHER_KEY], soft[TEACHER_KEY + "_mask"]
                )
                loss = loss + cfg.train.distill_weight * out["distill_loss"]
            for key in ("tag_loss", "relevance_loss", "text_tag_loss", "cross_view_loss", "distill_loss"):
                if key in out:
                    part = out[key].detach().double()
                    parts[key] = parts[key] + part if key in parts else part
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:  # fp16: scale the loss so that small gradients do not underflow
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            total += loss.detach().double()
            steps += 1
            if show and steps % SHOW_EVERY == 0:
                bar.set_postfix(loss=f"{float(total) / steps:.3f}")
        epoch_loss = float(total) / max(1, steps)
        train_seconds = time.perf_counter() - t0
        if record_dir:
            Path(record_dir).mkdir(parents=True, exist_ok=True)
            (Path(record_dir) / f"rank{dist.rank}.json").write_text(json.dumps(seen))
        if dist.main:
            with autocast(device, precision):
                report = evaluate(
                    model, dev_posts, device, eval_batch, show, "dev", visuals=dev_visuals, types=scored[cfg.data.dataset]
                )
            f1 = report.micro.f1
            improved = f1 > best_f1
            if improved:
                best_f1, best_epoch = f1, epoch
                extra = {
                    "trained_on": cfg.data.dataset,
                    "type_map": dict(cfg.data.corpus().type_map),
                    "epoch": epoch + 1,
                    "dev_f1": f1,
                }
                save_checkpoint(model, run_dir, {**extra, "joint": datasets} if cfg.data.joint else extra)
            joint_f1 = {}
            for d, (posts_d, visuals_d) in joint_dev.items():
                # a marked model reads this dataset's dev posts, and saves its checkpoint, with its marker
                with model.marked(d) if cfg.model.dataset_marker else contextlib.nullcontext():
                    with autocast(device, precision):
                        f1_d = evaluate(
                            model, posts_d, device, eval_batch, show, f"dev {d}", visuals=visuals_d, types=scored[d]
                        ).micro.f1
                    joint_f1[d] = f1_d
                    if f1_d > joint_best[d][0]:
                        joint_best[d] = [f1_d, epoch]
                        save_checkpoint(
                            model,
                            run_dir / JOINT_DIR / d,
                            {"trained_on": d, "joint": datasets, "epoch": epoch + 1, "dev_f1": f1_d},
                        )
                log.info("epoch %d: dev F1 of %s %.4f%s", epoch + 1, d, f1_d, " *" if joint_best[d][1] == epoch else "")
            record = {
                "epoch": epoch + 1,
                "train_loss": epoch_loss,
                **{f"train_{k}": float(v) / max(1, steps) for k, v in parts.items()},
                "lr_encoder": optimizer.param_groups[0]["lr"],
                "dev": report.to_dict(),
                "dev_f1": f1,
                "best": improved,
                **({"joint_dev_f1": joint_f1} if joint_f1 else {}),
                "epoch_seconds": train_seconds,
                "peak_mem_mb": peak_memory_mb(device),
            }
            with (run_dir / "metrics.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            log.info(
                "epoch %d: loss %.4f, dev F1 %.4f%s (%.0f s)",
                epoch + 1,
                record["train_loss"],
                f1,
                " *" if improved else "",
                train_seconds,
            )
            _atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "epoch": epoch,
                    "best_f1": best_f1,
                    "best_epoch": best_epoch,
                    "joint_best": joint_best,
                },
                state_path,
            )
        if dist.world > 1:
            torch.distributed.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.train.epochs:
            if dist.main:
                log.info("stopping after epoch %d as asked; continue with --resume", epoch + 1)
            if dist.world > 1:
                torch.distributed.destroy_process_group()
            return {}

    result: dict[str, Any] = {}
    if dist.main:
        for d, (f1_d, epoch_d) in joint_best.items():  # before data.dataset's finish, which removes the state
            finish(cfg, run_dir, device, int(epoch_d), f1_d, precision, dataset=d)
        result = finish(cfg, run_dir, device, best_epoch, best_f1, precision)
    if dist.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


def save_checkpoint(model: TextTagger, out_dir: Path, extra: dict[str, Any]) -> None:
    """``model`` as ``out_dir/best`` (written beside it first, then moved in place)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, extra=extra)
    shutil.rmtree(out_dir / "best", ignore_errors=True)
    os.replace(tmp, out_dir / "best")


def finish(
    cfg: ExperimentConfig,
    run_dir: Path,
    device: torch.device,
    best_epoch: int,
    best_f1: float,
    precision: str = "fp32",
    dataset: str | None = None,
) -> dict[str, Any]:
    """Evaluate the test split once, with the checkpoint chosen on dev (in the training precision); write final.json.

    ``dataset``: one of data.joint, whose checkpoint, final.json and predictions are in
    ``run_dir/joint/<dataset>`` (default: data.dataset, in ``run_dir``)."""
    joint = dataset is not None and dataset != cfg.data.dataset
    dataset = dataset or cfg.data.dataset
    out_dir = run_dir / JOINT_DIR / dataset if joint else run_dir
    best = TextTagger.from_pretrained(out_dir / "best").to(device)
    test_posts = load_split_of(cfg, dataset, "test")[: cfg.data.max_eval_posts]
    warn_unseen([label[2:] for label in best.config.labels if label.startswith("B-")], test_posts, f"{dataset} test")
    visuals = split_visuals(cfg, dataset, "test", test_posts, open_features(cfg, dataset))
    with autocast(device, precision):
        preds = best.run(
            [p.words for p in test_posts], visuals, cfg.train.eval_batch(device), cfg.train.progress, "test"
        )
    run_meta = json.loads((run_dir / "run.json").read_text())
    pred_tags = [p.tags for p in preds]
    own = run_meta.get("joint", {}).get("scored_types", {}).get(dataset)
    not_scored: Counter[str] = Counter()
    if own is not None:  # a joint run's corpus that annotates fewer types than the model predicts
        for i, tags in enumerate(pred_tags):
            pred_tags[i], dropped = keep_types(tags, own)
            not_scored.update(dropped)
    report = entity_scores([p.tags for p in test_posts], pred_tags)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epoch_seconds = [r["epoch_seconds"] for r in records]
    final = {
        "dataset": dataset,
        **({"protocol": "joint", "trained_on": run_meta["joint"]["datasets"]} if cfg.data.joint else {}),
        **({"scored_types": own, "predictions_not_scored": dict(sorted(not_scored.items()))} if own is not None else {}),
        "config": cfg.name,
        "seed": cfg.train.seed,
        "best_epoch": best_epoch + 1,
        "dev_f1": best_f1,
        "test": report.to_dict(),
        "test_f1": report.micro.f1,
        "epoch_minutes": (sum(epoch_seconds) / len(epoch_seconds) / 60) if epoch_seconds else math.nan,
        "peak_mem_mb": max(r["peak_mem_mb"] for r in records) if records else math.nan,
        "run": run_meta,
    }
    write_predictions(out_dir / PREDICTIONS_FILE, test_posts, pred_tags, [p.relevance for p in preds])
    if visuals is not None:
        final["relevance"] = relevance_summary(preds, visuals)
        write_relevance(out_dir / "test_relevance.csv", test_posts, preds, visuals)
    (out_dir / "final.json").write_text(json.dumps(final, indent=2) + "\n")
    # the card written with the checkpoint had no test scores (the test split is scored only now)
    best_meta = json.loads((out_dir / "best" / CONFIG_FILE).read_text())
    (out_dir / "best" / CARD_FILE).write_text(model_card(best.config, best_meta, final))
    log.info("%s test (checkpoint of epoch %d): F1 %.4f\n%s", dataset, best_epoch + 1, report.micro.f1, report.table())
    if joint:
        return final
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # optimizer state is large; the run is complete
    try:
        plot_training_curves(run_dir)
    except Exception as exc:  # a plot must never lose a finished run
        log.warning("could not plot the training curves of %s: %s", run_dir, exc)
    return final


def _visual_kind(feats: Any) -> str:
    """pixels (the image was read), words (caption/OCR only) or none."""
    if feats is not None and feats.has_image:
        return "pixels"
    return "words" if feats is not None and len(feats.semantic) else "none"


def relevance_summary(preds: list[Prediction], visuals: list[Any]) -> dict[str, Any]:
    """The distribution of r over the test posts, by what visual input they had."""
    out: dict[str, Any] = {}
    groups: dict[str, list[float]] = {}
    for pred, feats in zip(preds, visuals, strict=True):
        if pred.relevance is not None:
            groups.setdefault(_visual_kind(feats), []).append(pred.relevance)
    for kind, values in sorted(groups.items()):
        arr = np.asarray(values)
        out[kind] = {
            "posts": len(values),
            "mean": float(arr.mean()),
            "std": float(arr.std()),
            **{f"q{int(q * 100):02d}": float(np.quantile(arr, q)) for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)},
        }
    return out


def write_relevance(path: Path, posts: list[Post], preds: list[Prediction], visuals: list[Any]) -> None:
    """One row per test post: IMGID, visual input kind, r and the level weights."""
    import csv

    levels = sorted({k for p in preds for k in (p.level_weights or {})})
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["imgid", "visual", "relevance", *[f"weight_{lvl}" for lvl in levels]])
        for post, pred, feats in zip(posts, preds, visuals, strict=True):
            lw = pred.level_weights or {}
            r = "" if pred.relevance is None else f"{pred.relevance:.4f}"
            w.writerow([post.imgid if post.imgid is not None else post.id, _visual_kind(feats), r, *[f"{lw[k]:.4f}" if k in lw else "" for k in levels]])
