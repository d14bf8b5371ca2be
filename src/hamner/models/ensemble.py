"""Several trained checkpoints read together: the product of their CRFs.

An ensemble of K taggers with the same labels and word tokenisation scores a tag sequence by the
mean of the members' scores (emissions and transitions averaged): the log-linear pooling of the
members' CRF distributions, decoded exactly by one Viterbi pass. Each member reads the post with
its own tokenizer, windows and visual input; only the per-word emissions meet. ``relevance`` and
``level_weights`` are the members' means (HamLearning members); attention maps are not pooled.

Members are all PyTorch checkpoints or all ``hamner export`` models (ONNX Runtime; three int8
members tag batches at 0.69x the speed of one PyTorch model, docs/speed.md); the two kinds are not mixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from hamner.errors import ConfigError
from hamner.models.crf import CRF
from hamner.models.tagger import WEIGHTS_FILE, PostTaggingModel, Prediction, TextTagger

log = logging.getLogger(__name__)


def crf_scores(member: Any) -> dict[str, torch.Tensor]:
    """A member's CRF scores (start, end, transitions) as fp32 CPU tensors: a PyTorch checkpoint's
    CRF, or the scores an exported model carries in its metadata."""
    if isinstance(member, nn.Module):
        crf = cast(Any, member).crf.crf  # a TextTagger's CRF module, its scores inside
        return {a: getattr(crf, a).detach().float().cpu() for a in ("start_transitions", "end_transitions", "transitions")}
    start, end, trans = member.crf_scores()
    return {"start_transitions": torch.as_tensor(start), "end_transitions": torch.as_tensor(end), "transitions": torch.as_tensor(trans)}


class EnsembleTagger(nn.Module):
    """K :class:`TextTagger` checkpoints behind the interface the :class:`hamner.Tagger` uses."""

    def __init__(self, members: Sequence[Any], names: Sequence[str] | None = None) -> None:
        """``members``: TextTagger checkpoints, or OnnxTagger exports (all of one kind)."""
        super().__init__()
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 checkpoints, got {len(members)}")
        names = list(names) if names is not None else [f"member {i}" for i in range(len(members))]
        first = members[0].config
        for name, m in zip(names[1:], members[1:], strict=True):
            c = m.config
            if c.labels != first.labels:
                raise ConfigError(f"{name}: labels {c.labels} differ from {names[0]}'s {first.labels}")
            if c.tokenizer_style != first.tokenizer_style:
                raise ConfigError(f"{name}: tokenizer style {c.tokenizer_style!r} differs from {names[0]}'s {first.tokenizer_style!r}")
            if c.multimodal != first.multimodal:
                raise ConfigError(f"{name} and {names[0]}: a text-only and a multimodal checkpoint cannot share the visual input")
            if c.multimodal and c.vision_fingerprint != first.vision_fingerprint:
                raise ConfigError(f"{name}: trained with another image extractor (fingerprint) than {names[0]}")
        kinds = {isinstance(m, nn.Module) for m in members}
        if len(kinds) > 1:
            which = ", ".join(f"{n} ({'PyTorch' if isinstance(m, nn.Module) else 'exported'})" for n, m in zip(names, members, strict=True))
            raise ConfigError(f"an ensemble's members are all PyTorch checkpoints or all exported (ONNX) models: {which}")
        #: the members run on ONNX Runtime (exported models: CPU only, precision fixed at export)
        self.exported = kinds == {False}
        if self.exported:
            self._exported_members: list[Any] = list(members)  # not torch modules: kept out of the module tree
        else:
            self.members = nn.ModuleList(members)
        self.names = names
        self.config = first
        self.max_subtokens = min(m.max_subtokens for m in members)
        self.crf = CRF(len(first.labels))
        with torch.no_grad():  # the pooled CRF: the members' mean transition scores
            for attr in ("start_transitions", "end_transitions", "transitions"):
                mean = torch.stack([crf_scores(m)[attr] for m in members]).mean(0)
                getattr(self.crf.crf, attr).copy_(mean)
        self.eval()

    @property
    def member_models(self) -> list[PostTaggingModel]:
        """The members, PyTorch modules or exported models."""
        if self.exported:
            return list(self._exported_members)
        return [cast(PostTaggingModel, m) for m in self.members]

    @property
    def precision(self) -> str:
        """An exported ensemble's precision (its members' export precision)."""
        if not self.exported:
            raise AttributeError("precision: only an ensemble of exported models has a fixed precision")
        return "+".join(sorted({str(m.precision) for m in self._exported_members}))

    @property
    def backbone_path(self) -> Path | None:
        """An exported multimodal ensemble's image backbone (the first member's: every member was
        trained on the same image extractor), or None."""
        path: Path | None = self._exported_members[0].backbone_path if self.exported else None
        return path

    def to(self, *args: Any, **kwargs: Any) -> EnsembleTagger:
        if self.exported:
            for m in self._exported_members:  # an exported model refuses any device but the CPU
                m.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    @classmethod
    def from_pretrained(cls, directories: Sequence[str | Path], map_location: str = "cpu") -> EnsembleTagger:
        """The PyTorch checkpoints in ``directories``. Ensembles of ``hamner export`` output are
        loaded by the inference layer, which owns the ONNX Runtime backend
        (:func:`hamner.inference.tagger.load_model`, as ``hamner tag`` and ``Tagger.from_pretrained`` do)."""
        for d in directories:
            if not (Path(d) / WEIGHTS_FILE).is_file():
                raise ConfigError(
                    f"{d}: no {WEIGHTS_FILE}, so not a PyTorch checkpoint; an ensemble of exported models is "
                    "loaded with hamner.inference.tagger.load_model (or Tagger.from_pretrained)"
                )
        return cls([TextTagger.from_pretrained(d, map_location) for d in directories], [str(d) for d in directories])

    @property
    def levels(self) -> list[str]:
        return list(getattr(self.member_models[0], "levels", []))

    @torch.no_grad()
    def run(
        self,
        word_lists: Sequence[Sequence[str]],
        visuals: Sequence[Any] | None = None,
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        long_posts: str = "window",
        between_batches: Callable[[], Any] | None = None,
    ) -> list[Prediction]:
        """Every member's predictions, pooled post by post (see the module docstring)."""
        words = [list(w) for w in word_lists]  # read once: a generator would be used up by the first member
        members = self.member_models
        runs = [
            m.run(
                words, visuals, batch_size, progress, f"{desc} {i + 1}/{len(members)}", long_posts=long_posts,
                between_batches=between_batches,
            )  # fmt: skip
            for i, m in enumerate(members)
        ]
        labels = self.config.labels
        device = self.crf.crf.transitions.device
        out = []
        for i, post in enumerate(words):
            preds = [r[i] for r in runs]
            n = min(p.emissions.size(0) for p in preds)  # words every member read (all, unless truncating)
            emissions = torch.stack([p.emissions[:n].float() for p in preds]).mean(0)  # shape: (words, labels)
            path = self.crf.decode(emissions[None].to(device), torch.ones(1, n, dtype=torch.bool, device=device))[0] if n else []
            rel = [p.relevance for p in preds if p.relevance is not None]
            lws = [p.level_weights for p in preds if p.level_weights is not None]
            out.append(
                Prediction(
                    tags=[labels[t] for t in path] + ["O"] * (len(post) - n),
                    emissions=emissions,
                    relevance=sum(rel) / len(rel) if rel else None,
                    level_weights={k: sum(lw[k] for lw in lws) / len(lws) for k in lws[0]} if lws else None,
                    windows=max(p.windows for p in preds),
                    words_not_read=len(post) - n,
                )
            )
        return out

    def predict(
        self,
        word_lists: Sequence[Sequence[str]],
        batch_size: int = 64,
        progress: bool = False,
        desc: str = "predict",
        visuals: Sequence[Any] | None = None,
    ) -> list[list[str]]:
        return [p.tags for p in self.run(word_lists, visuals, batch_size, progress, desc)]
