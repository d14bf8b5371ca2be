"""Is system A better than system B on this test set? A paired bootstrap over posts.

The statistic is the difference of entity-level micro F1, averaged over each system's seeds (the
number the results tables report). Every bootstrap sample draws posts with replacement, the same
posts for every run of both systems, and recomputes each run's micro F1 from the drawn posts'
entity counts; so the interval reflects which posts happened to be in the test set, for the
trained models at hand. It does not cover training randomness: that is the spread over seeds,
reported beside it.

The one-sided p-value for "A is better than B" follows Berg-Kirkpatrick et al. (2012): the share
of samples whose difference is at least twice the observed one (the bootstrap distribution
shifted to the null of no difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hamner.data.labels import spans_from_bio, spans_from_bio_strict


@dataclass(frozen=True)
class BootstrapResult:
    """F1 (fractions) of both systems, their difference and its bootstrap interval and p-value."""

    f1_a: float
    f1_b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_posts: int
    runs_a: int
    runs_b: int
    n_samples: int
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def post_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], mode: str = "conlleval") -> np.ndarray:
    """Per post: (true positive entities, predicted entities, gold entities), shape (posts, 3);
    the same reading of BIO as :func:`hamner.evaluation.metrics.entity_scores`."""
    if mode not in ("conlleval", "strict"):
        raise ValueError(f"mode must be 'conlleval' or 'strict', got {mode!r}")
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted ones")
    reader = spans_from_bio if mode == "conlleval" else spans_from_bio_strict
    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: gold has {len(g)} tags, prediction {len(p)}")
        gs, ps = set(reader(list(g))), set(reader(list(p)))
        out[i] = (len(gs & ps), len(ps), len(gs))
    return out


def _mean_f1(sums: np.ndarray) -> np.ndarray:
    """(..., runs, 3) summed counts -> mean micro F1 over runs, shape (...)."""
    tp, n_pred, n_gold = sums[..., 0], sums[..., 1], sums[..., 2]
    denom = n_pred + n_gold
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)
    return f1.mean(axis=-1)  # type: ignore[no-any-return]


def paired_bootstrap(
    gold: Sequence[Sequence[str]],
    runs_a: Sequence[Sequence[Sequence[str]]],
    runs_b: Sequence[Sequence[Sequence[str]]],
    n_samples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    mode: str = "conlleval",
    chunk: int = 500,
) -> BootstrapResult:
    """Compare system A (one predicted tag list per post, per run/seed) with system B on ``gold``."""
    if not runs_a or not runs_b:
        raise ValueError("each system needs at least one run")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(gold)
    if n == 0:
        raise ValueError("no posts to compare on")
    counts_a = np.stack([post_counts(gold, r, mode) for r in runs_a])  # (runs, posts, 3)
    counts_b = np.stack([post_counts(gold, r, mode) for r in runs_b])
    f1_a = float(_mean_f1(counts_a.sum(axis=1)))
    f1_b = float(_mean_f1(counts_b.sum(axis=1)))
    delta = f1_a - f1_b
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_samples, dtype=np.float64)
    uniform = np.full(n, 1.0 / n)
    for start in range(0, n_samples, chunk):
        k = min(chunk, n_samples - start)
        weights = rng.multinomial(n, uniform, size=k).astype(np.float64)  # how often each post is drawn
        sums_a = np.einsum("kn,snc->ksc", weights, counts_a)
        sums_b = np.einsum("kn,snc->ksc", weights, counts_b)
        deltas[start : start + k] = _mean_f1(sums_a) - _mean_f1(sums_b)
    tail = (1 - confidence) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    p = float(np.mean(deltas >= 2 * delta - 1e-12))
    return BootstrapResult(
        f1_a=f1_a, f1_b=f1_b, delta=delta, ci_low=float(low), ci_high=float(high), p_value=p,
        n_posts=n, runs_a=len(runs_a), runs_b=len(runs_b), n_samples=n_samples, confidence=confidence,
    )  # fmt: skip
