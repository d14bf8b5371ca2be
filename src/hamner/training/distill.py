"""Knowledge distillation (train.distill_from): the teacher's per-word tag marginals of the training
posts, and the KL term that pulls the student's CRF marginals towards them."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from hamner.data.conll import Post
from hamner.errors import ConfigError
from hamner.models.crf import marginal_kl
from hamner.models.tagger import TextTagger
from hamner.training.config import ExperimentConfig

log = logging.getLogger(__name__)

#: batch keys of the teacher's soft targets (knowledge distillation); the model never sees them
TEACHER_KEY = "teacher_log_marginals"


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
