"""Entity-level precision, recall and F1, returned as data.

Two readings of a BIO sequence:
- ``"conlleval"`` (default): seqeval's default mode, which follows the conlleval script; an
  ``I-`` tag that does not continue an entity of its type starts a new entity. Published
  Twitter-2015/2017 numbers are computed this way.
- ``"strict"``: strict IOB2 (seqeval ``mode="strict", scheme=IOB2``); only ``B-`` starts an entity.

Scores are always computed against the untruncated gold sequences: a prediction shorter than
its gold is an error, never a reason to drop gold entities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from hamner.data.labels import Span, spans_from_bio, spans_from_bio_strict


@dataclass(frozen=True)
class PRF:
    """Precision, recall, F1 (fractions in [0, 1]) and the counts behind them."""

    precision: float
    recall: float
    f1: float
    tp: int
    n_pred: int
    n_gold: int

    @classmethod
    def from_counts(cls, tp: int, n_pred: int, n_gold: int) -> PRF:
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return cls(p, r, f, tp, n_pred, n_gold)


@dataclass(frozen=True)
class EntityReport:
    """Micro-averaged scores over all types plus one :class:`PRF` per entity type."""

    micro: PRF
    per_type: dict[str, PRF] = field(default_factory=dict)
    mode: str = "conlleval"

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "micro": asdict(self.micro),
            "per_type": {k: asdict(v) for k, v in self.per_type.items()},
        }

    def table(self, ordered: bool = False) -> str:
        """A fixed-width per-type table for humans (never parse it: use the fields); types sorted by
        name, or (``ordered``) in ``per_type``'s order. The type column is as wide as the longest name."""
        items = list(self.per_type.items()) if ordered else sorted(self.per_type.items())
        w = max([8, *(len(name) + 2 for name, _ in items)])
        rows = [f"{'type':<{w}}{'prec':>8}{'rec':>8}{'f1':>8}{'gold':>8}{'pred':>8}"]
        for name, s in items + [("micro", self.micro)]:
            rows.append(
                f"{name:<{w}}{100 * s.precision:>8.2f}{100 * s.recall:>8.2f}{100 * s.f1:>8.2f}{s.n_gold:>8d}{s.n_pred:>8d}"
            )
        return "\n".join(rows)


def entity_scores(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    mode: str = "conlleval",
    types: Sequence[str] | None = None,
) -> EntityReport:
    """Score predicted BIO sequences against gold ones, entity by entity (exact span and type).

    ``per_type`` holds the types seen in gold or predictions, sorted; with ``types`` (a model's label
    set), every one of them in that order (a type neither in gold nor predicted: a row of zeros),
    then any other type seen (a gold type the model does not know), sorted."""
    if mode not in ("conlleval", "strict"):
        raise ValueError(f"mode must be 'conlleval' or 'strict', got {mode!r}")
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted ones")
    reader = spans_from_bio if mode == "conlleval" else spans_from_bio_strict
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: gold has {len(g)} tags, prediction {len(p)}")
        gs: set[Span] = set(reader(list(g)))
        ps: set[Span] = set(reader(list(p)))
        for s in gs:
            n_gold[s.type] += 1
        for s in ps:
            n_pred[s.type] += 1
        for s in gs & ps:
            tp[s.type] += 1
    seen = sorted(set(n_gold) | set(n_pred))
    order = seen if types is None else [*dict.fromkeys(types), *(t for t in seen if t not in types)]
    per_type = {t: PRF.from_counts(tp[t], n_pred[t], n_gold[t]) for t in order}
    micro = PRF.from_counts(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return EntityReport(micro=micro, per_type=per_type, mode=mode)
