"""The training loop: AdamW with per-part learning rates, warm-up and linear decay, clipping,
dev selection, one test evaluation with the best checkpoint, resumable, single process or DDP.

This module runs a run (:func:`run_training`) and its epochs; the parts it is made of live beside it:
:mod:`~hamner.training.environment` (torchrun, seeds, the log file), :mod:`~hamner.training.inputs`
(splits, labels, visual inputs, encoded posts), :mod:`~hamner.training.optim` (AdamW groups and the
schedule), :mod:`~hamner.training.distill` (the teacher's soft targets) and
:mod:`~hamner.training.results` (checkpoints, state, the test evaluation and final.json). Their
public names are importable from here too, as they were before the split.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hamner.data.conll import Post
from hamner.data.corpus import entity_counts, warn_unseen
from hamner.data.encoding import EncodedPost
from hamner.data.sampler import BucketBatchSampler
from hamner.env import git_revision, machine_description, package_versions, peak_memory_mb
from hamner.errors import ConfigError
from hamner.evaluation.evaluate import evaluate
from hamner.models.hamlearning import TEXT_VIEW
from hamner.models.tagger import TextTagger
from hamner.precision import autocast, grad_scaler, resolve_precision
from hamner.training.config import ExperimentConfig
from hamner.training.distill import TEACHER_KEY, _teacher_batch, distill_kl, teacher_marginals
from hamner.training.environment import DistInfo, _log_to_file, _rng_state, _set_rng_state, init_distributed, set_seed
from hamner.training.inputs import (
    adopt_features,
    encode_posts,
    joint_training_posts,
    load_split_of,
    mask_image_words,
    open_features,
    set_label_set,
    split_visuals,
    visual_dropped,
    visual_inputs,
)
from hamner.training.optim import build_optimizer, encoder_depths, linear_warmup_decay
from hamner.training.results import (
    JOINT_DIR,
    PREDICTIONS_FILE,
    STATE_FILE,
    _atomic_torch_save,
    finish,
    relevance_summary,
    save_checkpoint,
    write_relevance,
)
from hamner.vision.cache import FeatureStore

__all__ = [
    "JOINT_DIR",
    "PREDICTIONS_FILE",
    "RECORD_BATCHES_ENV",
    "SHOW_EVERY",
    "RunData",
    "Selection",
    "STATE_FILE",
    "TEACHER_KEY",
    "DistInfo",
    "adopt_features",
    "build_optimizer",
    "distill_kl",
    "encode_posts",
    "encoder_depths",
    "finish",
    "init_distributed",
    "joint_training_posts",
    "linear_warmup_decay",
    "load_run_data",
    "load_split_of",
    "mask_image_words",
    "open_features",
    "open_run_features",
    "relevance_summary",
    "run_training",
    "save_checkpoint",
    "select_on_dev",
    "set_label_set",
    "set_seed",
    "split_visuals",
    "start_or_resume",
    "teacher_marginals",
    "train_epoch",
    "visual_dropped",
    "visual_inputs",
    "write_relevance",
]

log = logging.getLogger(__name__)

RECORD_BATCHES_ENV = "HAMNER_RECORD_BATCHES"  # debug/test hook: a folder where each rank lists its batches
SHOW_EVERY = 20  # steps between progress-bar loss updates (each one reads the loss from the device)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


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


@dataclass
class RunData:
    """The posts a run trains and selects on, per corpus (data.dataset first, then data.joint)."""

    datasets: list[str]
    train: dict[str, list[Post]]
    dev: dict[str, list[Post]]
    types: tuple[str, ...]  # the model's entity types
    scored: dict[str, list[str] | None]  # the types each corpus is scored on (None: all of them)
    dropped: list[dict[str, Any]]  # joint training posts dropped as near-identical to a held-out post


def load_run_data(cfg: ExperimentConfig, dist: DistInfo) -> RunData:
    """Each corpus's training and dev posts, and the label set they give (``cfg.model.labels``)."""
    datasets = [cfg.data.dataset, *cfg.data.joint]
    dropped: list[dict[str, Any]] = []
    if cfg.data.joint:
        by_dataset, dropped = joint_training_posts(cfg)
    else:
        by_dataset = {cfg.data.dataset: load_split_of(cfg, cfg.data.dataset, "train")[: cfg.data.max_train_posts]}
    dev_sets = {d: load_split_of(cfg, d, "dev")[: cfg.data.max_eval_posts] for d in datasets}
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
    return RunData(datasets, by_dataset, dev_sets, types, scored, dropped)


def open_run_features(cfg: ExperimentConfig, datasets: list[str]) -> dict[str, FeatureStore | None]:
    """Each corpus's feature cache (None for the text path); the model config adopts data.dataset's
    extractor settings, and every joint corpus's cache must have been made with the same ones."""
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
    return stores


@dataclass
class Selection:
    """The dev-chosen epochs so far (0-based; -1: none yet): data.dataset's, and each joint corpus's
    ``[dev F1, epoch]`` (a list: the resumable state stores it as it is)."""

    best_f1: float = -1.0
    best_epoch: int = -1
    joint_best: dict[str, list[float]] = field(default_factory=dict)


def start_or_resume(
    cfg: ExperimentConfig,
    dist: DistInfo,
    device: torch.device,
    run_dir: Path,
    resume: bool,
    command: str | None,
    precision: str,
    data: RunData,
    model: TextTagger,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: Any,
    selection: Selection,
) -> int:
    """Load the last finished epoch's state when resuming (and note the resumption in run.json), or
    write a new run's run.json and config.yaml; returns the first epoch to train."""
    state_path = run_dir / STATE_FILE
    start_epoch = 0
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
        start_epoch, selection.best_f1, selection.best_epoch = state["epoch"] + 1, state["best_f1"], state["best_epoch"]
        selection.joint_best.update(state.get("joint_best", {}))
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
                "resuming %s after epoch %d (best dev F1 %.4f at epoch %d)",
                run_dir, start_epoch, selection.best_f1, selection.best_epoch,
            )  # fmt: skip
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
                "datasets": data.datasets,
                "train_posts": {d: len(data.train[d]) for d in data.datasets},
                "dropped_overlap": data.dropped,
                "scored_types": {d: t for d, t in data.scored.items() if t is not None},
            }
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return start_epoch


def train_epoch(
    cfg: ExperimentConfig,
    net: nn.Module,
    model: TextTagger,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: Any,
    device: torch.device,
    precision: str,
    epoch: int,
    show: bool,
    seen: dict[int, list[list[int]]] | None,
) -> tuple[float, dict[str, float]]:
    """One pass over the training batches; returns the mean loss and the means of its named parts
    (``train_<part>``). ``seen``, when given, gets the batches of post indices this rank trained on."""
    net.train()
    # losses are summed on the device and read once per epoch (and every SHOW_EVERY steps for
    # the progress bar): reading a GPU tensor every step would make the host wait for the GPU
    total = torch.zeros((), dtype=torch.float64, device=device)
    steps = 0
    parts: dict[str, torch.Tensor] = {}  # the loss's named parts (tagging, relevance matching), summed
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not show, dynamic_ncols=True)
    for idx, batch in bar:
        if seen is not None:
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
    return float(total) / max(1, steps), {f"train_{k}": float(v) / max(1, steps) for k, v in parts.items()}


def select_on_dev(
    cfg: ExperimentConfig,
    model: TextTagger,
    device: torch.device,
    precision: str,
    eval_batch: int,
    show: bool,
    run_dir: Path,
    epoch: int,
    datasets: list[str],
    dev: dict[str, tuple[list[Post], list[Any] | None]],
    scored: dict[str, list[str] | None],
    selection: Selection,
) -> dict[str, Any]:
    """Score the epoch on each corpus's dev split; a better epoch's checkpoint replaces ``best/``
    (data.dataset's in the run directory, a joint corpus's in ``joint/<corpus>/``). Returns the
    metrics record's dev fields."""
    dev_posts, dev_visuals = dev[cfg.data.dataset]
    with autocast(device, precision):
        report = evaluate(model, dev_posts, device, eval_batch, show, "dev", visuals=dev_visuals, types=scored[cfg.data.dataset])
    f1 = report.micro.f1
    improved = f1 > selection.best_f1
    if improved:
        selection.best_f1, selection.best_epoch = f1, epoch
        extra = {
            "trained_on": cfg.data.dataset,
            "type_map": dict(cfg.data.corpus().type_map),
            "epoch": epoch + 1,
            "dev_f1": f1,
        }
        save_checkpoint(model, run_dir, {**extra, "joint": datasets} if cfg.data.joint else extra)
    joint_f1 = {}
    for d in cfg.data.joint:
        posts_d, visuals_d = dev[d]
        # a marked model reads this dataset's dev posts, and saves its checkpoint, with its marker
        with model.marked(d) if cfg.model.dataset_marker else contextlib.nullcontext():
            with autocast(device, precision):
                f1_d = evaluate(model, posts_d, device, eval_batch, show, f"dev {d}", visuals=visuals_d, types=scored[d]).micro.f1
            joint_f1[d] = f1_d
            if f1_d > selection.joint_best[d][0]:
                selection.joint_best[d] = [f1_d, epoch]
                save_checkpoint(
                    model,
                    run_dir / JOINT_DIR / d,
                    {"trained_on": d, "joint": datasets, "epoch": epoch + 1, "dev_f1": f1_d},
                )
        log.info("epoch %d: dev F1 of %s %.4f%s", epoch + 1, d, f1_d, " *" if selection.joint_best[d][1] == epoch else "")
    return {"dev": report.to_dict(), "dev_f1": f1, "best": improved, **({"joint_dev_f1": joint_f1} if joint_f1 else {})}


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

    data = load_run_data(cfg, dist)
    datasets, by_dataset = data.datasets, data.train
    stores = open_run_features(cfg, datasets)
    store = stores[cfg.data.dataset]
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
    dev = {d: (data.dev[d], split_visuals(cfg, d, "dev", data.dev[d], stores[d])) for d in datasets}
    selection = Selection(joint_best={d: [-1.0, -1] for d in cfg.data.joint})  # dataset -> [best dev F1, its epoch]
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
    start_epoch = start_or_resume(
        cfg, dist, device, run_dir, resume, command, precision, data, model, optimizer, scheduler, scaler, selection
    )

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
        t0 = time.perf_counter()
        epoch_loss, parts = train_epoch(
            cfg, net, model, loader, optimizer, scheduler, scaler, device, precision, epoch, show, seen if record_dir else None
        )
        train_seconds = time.perf_counter() - t0
        if record_dir:
            Path(record_dir).mkdir(parents=True, exist_ok=True)
            (Path(record_dir) / f"rank{dist.rank}.json").write_text(json.dumps(seen))
        if dist.main:
            scores = select_on_dev(cfg, model, device, precision, eval_batch, show, run_dir, epoch, datasets, dev, data.scored, selection)
            record = {
                "epoch": epoch + 1,
                "train_loss": epoch_loss,
                **parts,
                "lr_encoder": optimizer.param_groups[0]["lr"],
                "dev": scores["dev"],
                "dev_f1": scores["dev_f1"],
                "best": scores["best"],
                **({"joint_dev_f1": scores["joint_dev_f1"]} if "joint_dev_f1" in scores else {}),
                "epoch_seconds": train_seconds,
                "peak_mem_mb": peak_memory_mb(device),
            }
            with (run_dir / "metrics.jsonl").open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            log.info(
                "epoch %d: loss %.4f, dev F1 %.4f%s (%.0f s)",
                epoch + 1,
                record["train_loss"],
                scores["dev_f1"],
                " *" if scores["best"] else "",
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
                    "best_f1": selection.best_f1,
                    "best_epoch": selection.best_epoch,
                    "joint_best": selection.joint_best,
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
        for d, (f1_d, epoch_d) in selection.joint_best.items():  # before data.dataset's finish, which removes the state
            finish(cfg, run_dir, device, int(epoch_d), f1_d, precision, dataset=d)
        result = finish(cfg, run_dir, device, selection.best_epoch, selection.best_f1, precision)
    if dist.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result
